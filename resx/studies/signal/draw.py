"""Signal propagation and block Jacobians, drawn from the signal study's CSVs (resx.studies.signal.compute).

- `signal_layers`: per weighted layer (conv/linear, numbered from the input side), the forward activation RMS,
  the gradient RMS at the layer's input and at its weights, log scale: plain vs residual (colour, marker), at
  initialisation (dashed) vs trained (solid; earlier checkpoints thin and faint).
- `signal_blocks`: per block, the RMS of its output and of the gradient at its input: the signal along the
  residual stream (He et al. 2016, "Identity mappings", §3).
- `block_jacobians`: per block, the largest singular value of its input-output Jacobian, the estimate of the
  smallest, and ||J - I||_F / ||I||_F (blocks whose shape changes have none).

Torch-free (matplotlib and pandas), like every figure module: `resx plot` redraws these from the CSVs alone.
`summarise` (one row per net and checkpoint: gradient gain across the blocks, median distance from the identity, ...)
and the cell formatters (`number`, `state`, `max_rel_error`) are shared by the command's table and the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from resx.errors import ResxError
from resx.markdown import DASH
from resx.plots import style
from resx.plots.csvs import as_bool, read_csv
from resx.studies.signal.declare import INFO_NAME, JACOBIAN_COLUMNS, LAYER_COLUMNS

WEIGHTED_KINDS = ("conv", "linear")
# read_csv checks these as numbers unless they are text; the text ones are checked for presence only.
_LAYER_TEXT = ("checkpoint", "layer", "kind")


def read_layers(folder: str | Path) -> pd.DataFrame | None:
    """signal_layers.csv, or None when absent or empty; ResxError when a column is missing or malformed."""
    path = Path(folder) / "signal_layers.csv"
    frame = read_csv(path, [c for c in LAYER_COLUMNS if c not in _LAYER_TEXT and c != "grad_weight_rms"])
    if frame is None:
        return None
    missing = [c for c in LAYER_COLUMNS if c not in frame.columns]
    if missing:
        raise ResxError(f"{path}: missing column {missing[0]!r} (needs {', '.join(LAYER_COLUMNS)})")
    return _tidy(frame)


def read_jacobians(folder: str | Path) -> pd.DataFrame | None:
    """block_jacobians.csv, or None when absent or empty."""
    path = Path(folder) / "block_jacobians.csv"
    frame = read_csv(path, ("run", "residual", "trained", "block", "sigma_max"))
    if frame is None:
        return None
    missing = [c for c in JACOBIAN_COLUMNS if c not in frame.columns]
    if missing:
        raise ResxError(f"{path}: missing column {missing[0]!r} (needs {', '.join(JACOBIAN_COLUMNS)})")
    if "checkpoint" not in frame.columns:
        frame["checkpoint"] = np.where(frame["trained"], "checkpoint.pt", "init")
    return _tidy(frame)


def read_info(folder: str | Path) -> dict:
    """signal_info.json, or {} when absent or unreadable (the figures and tables need only the CSVs)."""
    try:
        return json.loads((Path(folder) / INFO_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    frame["checkpoint"] = frame["checkpoint"].fillna("").astype(str)
    for column in frame.columns:
        if column.endswith("_rms") or column in ("sigma_max", "sigma_min_est", "dist_identity"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


# --- one row per net and checkpoint ------------------------------------------------------------------------------
def _final(frame: pd.DataFrame) -> pd.Series:
    """Rows of a run's last checkpoint (the trained net) or of a fresh net; not the intermediate checkpoints. From
    the `final` column, or else from the name (a run folder's last checkpoint is its checkpoint.pt)."""
    if "final" in frame.columns:
        return as_bool(frame["final"], "", "final")
    if "checkpoint" not in frame.columns:
        return pd.Series(True, index=frame.index)
    name = frame["checkpoint"].astype(str)
    return ~frame["trained"] | (name.str.rsplit("/", n=1).str[-1] == "checkpoint.pt")


def summarise(layers: pd.DataFrame | None, jacobians: pd.DataFrame | None, info: dict | None = None) -> pd.DataFrame:
    """Per (run, checkpoint): the gradient gain across the blocks (RMS of the gradient at the first block's input over
    that at the last block's output: above 1 it grows towards the input, below 1 it vanishes), the forward gain (last
    block's output RMS over the first block's input RMS), the ratio of the weight gradients of the first and last
    weighted layers inside the blocks, the median over blocks of sigma_max and of ||J - I||_F / ||I||_F, and the whole
    block stack's sigma_max (from signal_info.json)."""
    keys = ["run", "checkpoint"]
    rows: dict[tuple[str, str], dict] = {}
    if layers is not None:
        for (run, checkpoint), part in layers.groupby(keys, sort=False):
            row = rows.setdefault((run, checkpoint), _identity(part))
            blocks = part[part["kind"] == "block"]
            if "block" in blocks.columns and len(blocks):
                blocks = blocks.sort_values("block")
                first, last = blocks.iloc[0], blocks.iloc[-1]
                if "grad_output_rms" in blocks.columns:
                    row["gradient_gain"] = _ratio(first["grad_input_rms"], last["grad_output_rms"])
                if "input_rms" in blocks.columns:
                    row["forward_gain"] = _ratio(last["activation_rms"], first["input_rms"])
                row["blocks"] = len(blocks)
            inner = part[part["kind"].isin(WEIGHTED_KINDS)]
            if "block" in inner.columns:
                inner = inner[inner["block"].notna()]
            if "index" in inner.columns:
                inner = inner[inner["index"].notna()].sort_values("index")
            if len(inner) >= 2:
                row["weight_grad_ratio"] = _ratio(inner["grad_weight_rms"].iloc[0], inner["grad_weight_rms"].iloc[-1])
    if jacobians is not None:
        for (run, checkpoint), part in jacobians.groupby(keys, sort=False):
            row = rows.setdefault((run, checkpoint), _identity(part))
            row["median_sigma_max"] = float(part["sigma_max"].median())
            row["median_sigma_min_est"] = float(part["sigma_min_est"].median())
            dist = part["dist_identity"].dropna()
            row["median_dist_identity"] = float(dist.median()) if len(dist) else float("nan")
            row.setdefault("blocks", len(part))
    for entry in (info or {}).get("whole_net", []):
        row = rows.get((str(entry.get("run")), str(entry.get("checkpoint"))))
        if row is not None:
            row["whole_sigma_max"] = entry.get("sigma_max")
            row["whole_sigma_min_est"] = entry.get("sigma_min_est")
    return pd.DataFrame(list(rows.values()))


def _identity(part: pd.DataFrame) -> dict:
    first = part.iloc[0]
    row = {"run": first["run"], "checkpoint": first.get("checkpoint", ""), "residual": bool(first["residual"]),
           "trained": bool(first["trained"])}
    for column in ("model", "depth", "epoch", "init_scheme", "scale"):
        if column in part.columns:
            row[column] = first[column]
    row["final"] = bool(_final(part).iloc[0])
    return row


def _ratio(a, b) -> float:
    a, b = float(a), float(b)
    return a / b if b else float("nan")


def twin_groups(frame: pd.DataFrame) -> pd.Series:
    """A key per row naming its twin pair (nets that differ only by the shortcut): depth, scale and init scheme."""
    parts = []
    for column in ("depth", "scale", "init_scheme"):
        if column in frame.columns:
            parts.append(frame[column].astype(str).where(frame[column].notna(), ""))
    if not parts:
        return pd.Series("", index=frame.index)
    key = parts[0]
    for p in parts[1:]:
        key = key + "/" + p
    return key


# --- table cells (the command's table and the report) ---------------------------------------------------------------
def number(value) -> str:
    """Three significant digits, or a dash for a missing value."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return DASH
    return DASH if math.isnan(value) else f"{value:.3g}"


def state(row) -> str:
    """'init', 'trained', or the epoch of an intermediate checkpoint, for a row of `summarise`."""
    if not row["trained"]:
        return "init"
    if row.get("final", True):
        return "trained"
    epoch = row.get("epoch")
    return f"epoch {int(epoch)}" if epoch is not None and not pd.isna(epoch) else str(row["checkpoint"])


def max_rel_error(row) -> float:
    """The largest relative error of a deep linear net's measured gains against the exact factor."""
    errors = [row.get(k) for k in ("rel_error_forward", "rel_error_gradient", "rel_error_sigma_max")]
    errors = [float(e) for e in errors if e is not None and not pd.isna(e)]
    return max(errors) if errors else float("nan")


# --- the figures ------------------------------------------------------------------------------------------------
def _curves(frame: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame, dict]]:
    """One curve per (run, checkpoint), with its matplotlib style: colour by shortcut (or by twin pair when there are
    several pairs), marker by shortcut, dashed at initialisation, thin and faint for intermediate checkpoints."""
    frame = frame.assign(_group=twin_groups(frame), _final=_final(frame))
    groups = list(dict.fromkeys(frame["_group"]))
    group_colors = style.run_colors(groups)
    curves = []
    for (run, checkpoint), part in frame.groupby(["run", "checkpoint"], sort=False):
        residual, trained, final = bool(part["residual"].iloc[0]), bool(part["trained"].iloc[0]), bool(part["_final"].iloc[0])
        color = style.variant_color(residual) if len(groups) <= 1 else group_colors[part["_group"].iloc[0]]
        state = "trained" if trained else "at init"
        if trained and not final:
            epoch = part["epoch"].iloc[0] if "epoch" in part.columns else None
            state = f"epoch {int(epoch)}" if epoch is not None and pd.notna(epoch) else checkpoint
        kwargs = dict(color=color, marker="o" if residual else "s", markersize=2 if final else 1.2,
                      linestyle="-" if trained else "--", linewidth=(1.2 if trained else 0.9) if final else 0.6,
                      alpha=1.0 if final else 0.4,
                      label=f"{run} ({'residual' if residual else 'plain'}), {state}")
        curves.append(((run, checkpoint), part, kwargs))
    return curves


def _draw_panels(frame: pd.DataFrame, x: str, panels: list[tuple[str, str, str]], xlabel: str, title: str,
                 folder: Path, stem: str, formats: Iterable[str], unit_line: tuple[str, ...] = ()) -> list[Path]:
    with style.rc():
        fig, axes = style.new_figure(width=style.PAGE_WIDTH, height=2.5, ncols=len(panels))
        axes = axes if isinstance(axes, list) else [axes]
        curves = _curves(frame)
        for ax, (column, ylabel, panel_title) in zip(axes, panels):
            for _, part, kwargs in curves:
                part = part.sort_values(x)  # NaN (a downsampling block's distance) leaves a gap in the line
                if np.isfinite(part[column].to_numpy(dtype=float)).any():
                    ax.plot(part[x], part[column], **kwargs)
            if column in unit_line:
                ax.axhline(1.0, color=style.REFERENCE_COLOR, linestyle=":", linewidth=0.8)
            ax.set_yscale("log", nonpositive="mask")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(panel_title)
        handles, labels = style.drawn_entries(*axes)  # a net drawn in any panel
        style.put_legend(fig, handles, labels, loc="outside lower center", ncols=max(1, min(3, len(handles))))
        fig.suptitle(title, fontsize=8)
        return style.save_figure(fig, folder, stem, formats)


def draw_layers(layers: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    weighted = layers[layers["kind"].isin(WEIGHTED_KINDS)]
    if "index" in weighted.columns:
        weighted = weighted[weighted["index"].notna()]
        x = "index"
    else:
        weighted = weighted.assign(_index=weighted.groupby(["run", "checkpoint"]).cumcount() + 1)
        x = "_index"
    if weighted.empty:
        return []
    return _draw_panels(weighted, x, [
        ("activation_rms", "activation RMS", "(a) forward: layer output"),
        ("grad_input_rms", "gradient RMS", "(b) backward: at the layer's input"),
        ("grad_weight_rms", "gradient RMS", "(c) at the layer's weights"),
    ], "weighted layer (from the input)", "signal per layer: vanishing or exploding with depth",
        folder, "signal_layers", formats)


def draw_blocks(layers: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    blocks = layers[layers["kind"] == "block"]
    if blocks.empty or "block" not in blocks.columns:
        return []
    return _draw_panels(blocks, "block", [
        ("activation_rms", "RMS", "(a) forward: block output"),
        ("grad_input_rms", "gradient RMS", "(b) backward: at the block's input"),
    ], "block (from the input)", "signal along the blocks (He et al. 2016 §3)",
        folder, "signal_blocks", formats)


def draw_jacobians(jacobians: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    return _draw_panels(jacobians, "block", [
        ("sigma_max", "largest singular value", "(a) sigma_max per block"),
        ("sigma_min_est", "smallest singular value (est.)", "(b) sigma_min estimate"),
        ("dist_identity", "||J - I||_F / ||I||_F", "(c) distance from the identity"),
    ], "block (from the input)", "block Jacobians: residual blocks near the identity?",
        folder, "block_jacobians", formats, unit_line=("sigma_max", "sigma_min_est"))


def plot_signal(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw `signal_layers`, `signal_blocks` and `block_jacobians` from a signal study folder (those whose CSV is
    there); writes into `out` or `folder` and returns the paths written."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    written: list[Path] = []
    layers = read_layers(folder)
    if layers is not None:
        written += draw_layers(layers, out, formats)
        written += draw_blocks(layers, out, formats)
    jacobians = read_jacobians(folder)
    if jacobians is not None:
        written += draw_jacobians(jacobians, out, formats)
    return written
