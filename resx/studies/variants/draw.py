"""The variants study's figures, from its CSVs alone (pandas and matplotlib; no torch):

- `variants_curves`    training (dashed) and test (solid) error against iterations, one line per variant (mean over
                       seeds), shortcut variants and block variants side by side (He et al. 2016 Figs. 3 and 6)
- `variants_vs_paper`  each variant's final test error (mean ± std over seeds) beside the paper's (Tables 1 and 2;
                       "fail" where the paper's net did not train, x where resx's runs diverged)
- `variants_gains`     forward and backward gain over the blocks at initialisation, with the shortcut path alone
                       (dashed) and lambda^l where the shortcut is a constant scale (dotted): the paper's eqs. 4-6
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from resx.errors import ResxError
from resx.plots import style
from resx.plots.csvs import read_csv
from resx.studies.variants.declare import (CURVES_NAME, GAINS_NAME, KINDS, ORIGINAL, SUMMARY_NAME)

PAPER = "He et al. 2016"


def _read(path: Path, text: tuple[str, ...], numbers: tuple[str, ...]) -> pd.DataFrame | None:
    frame = read_csv(path, list(numbers))
    if frame is None:
        return None
    missing = [c for c in text if c not in frame.columns]
    if missing:
        raise ResxError(f"{path}: missing column {missing[0]!r} (needs {', '.join(text + numbers)})")
    for column in text:
        frame[column] = frame[column].astype(str)
    return frame


def read_summary(folder: str | Path) -> pd.DataFrame | None:
    return _read(Path(folder) / SUMMARY_NAME, ("variant", "kind", "model"), ("seeds", "failed_runs"))


def read_curves(folder: str | Path) -> pd.DataFrame | None:
    return _read(Path(folder) / CURVES_NAME, ("variant", "kind"), ("seed", "iteration", "train_error", "test_error"))


def read_gains(folder: str | Path) -> pd.DataFrame | None:
    return _read(Path(folder) / GAINS_NAME, ("variant", "kind"), ("block", "forward_gain", "backward_gain"))


def _kinds(frame: pd.DataFrame) -> list[str]:
    return [k for k in KINDS if (frame["kind"] == k).any()]


def _colors(frame: pd.DataFrame, kind: str) -> dict[str, str]:
    names = list(dict.fromkeys(frame.loc[frame["kind"] == kind, "variant"]))
    names.sort(key=lambda n: n != ORIGINAL[kind])  # the unmodified net first, in the first colour
    return style.run_colors(names)


def draw_curves(curves: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    kinds = _kinds(curves)
    with style.rc():
        fig, axes = style.new_figure(style.PAGE_WIDTH, 2.6, ncols=len(kinds), sharey=True)
        axes = axes if isinstance(axes, list) else [axes]
        for ax, kind in zip(axes, kinds):
            part = curves[curves["kind"] == kind]
            for name, color in _colors(curves, kind).items():
                mean = part[part["variant"] == name].groupby("iteration")[["train_error", "test_error"]].mean()
                ax.plot(mean.index, 100 * mean["train_error"], "--", color=color, lw=0.9)
                ax.plot(mean.index, 100 * mean["test_error"], "-", color=color, lw=1.3, label=name)
            ax.set_title(f"{kind} variants" + (" (Table 1, Fig. 3)" if kind == "shortcut" else " (Table 2, Fig. 6)"))
            ax.set_xlabel("iteration")
            style.put_legend(ax, style.drawn_entries(ax)[0], loc="upper right", ncol=1)
        axes[0].set_ylabel("error (%)")
        fig.suptitle("Training (dashed) and test (solid) error, mean over seeds; cf. " + PAPER)
        return style.save_figure(fig, folder, "variants_curves", formats)


def draw_vs_paper(summary: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    kinds = _kinds(summary)
    with style.rc():
        height = 1.2 + 0.28 * max(int((summary["kind"] == k).sum()) for k in kinds)
        fig, axes = style.new_figure(style.PAGE_WIDTH, height, ncols=len(kinds))
        axes = axes if isinstance(axes, list) else [axes]
        for ax, kind in zip(axes, kinds):
            part = summary[summary["kind"] == kind].reset_index(drop=True)
            y = np.arange(len(part))[::-1]
            ours = 100 * pd.to_numeric(part["final_test_error_mean"], errors="coerce")
            std = 100 * pd.to_numeric(part["final_test_error_std"], errors="coerce").fillna(0)
            paper = 100 * pd.to_numeric(part.get("paper_test_error"), errors="coerce")
            ax.barh(y + 0.2, ours, 0.38, xerr=std, color=style.RESIDUAL_COLOR, label=f"resx ({part['model'].iloc[0]})")
            ax.barh(y - 0.2, paper, 0.38, color=style.REFERENCE_COLOR, label=PAPER + " (ResNet-110)")
            for yi, (_, row), value in zip(y, part.iterrows(), ours):
                if str(row.get("paper_result")) == "fail":
                    ax.text(0.5, yi - 0.2, "paper: fail", va="center", fontsize=6, color=style.REFERENCE_COLOR)
                if int(row["failed_runs"]) > 0:
                    ax.text(0.5 if np.isnan(value) else value + 0.5, yi + 0.2,
                            f"x {int(row['failed_runs'])} diverged", va="center", fontsize=6, color=style.PLAIN_COLOR)
            ax.set_yticks(y, part["variant"])
            ax.set_ylim(-0.75, len(part) - 0.35)  # room for the lowest row's note
            ax.set_xlabel("final test error (%)")
            ax.set_title(f"{kind} variants")
        style.put_legend(fig, *style.drawn_entries(*axes), loc="outside lower center", ncol=2)
        return style.save_figure(fig, folder, "variants_vs_paper", formats)


def relative_to_identity(gains: pd.DataFrame) -> pd.DataFrame:
    """The shortcut-path columns divided, block by block, by the identity net's (when it is there): what is left is
    the product of the variant's own shortcut maps (the CIFAR nets' zero-padding, common to all, drops out)."""
    identity = gains[(gains["kind"] == "shortcut") & (gains["variant"] == ORIGINAL["shortcut"])]
    if identity.empty:
        return gains
    out = gains.copy()
    for column in ("shortcut_forward_gain", "shortcut_backward_gain"):
        if column in gains.columns:
            base = identity.set_index("block")[column]
            out[column] = gains[column] / gains["block"].map(base)
    return out


def _plain_log_axis(ax) -> None:
    """A log y axis labelled 0.01, 0.1, 1, 10 (and 2, 3, ... where the data span less than a decade)."""
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g" if high / max(low, 1e-300) < 10 else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def draw_gains(gains: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    kinds = _kinds(gains)
    gains = relative_to_identity(gains)
    with style.rc():
        fig = Figure(figsize=(style.PAGE_WIDTH, 2.4 * len(kinds) + 0.3), layout="constrained")
        grid = fig.subplots(len(kinds), 2, squeeze=False)
        for row_axes, kind in zip(grid, kinds):
            part = gains[gains["kind"] == kind]
            for ax, (column, shortcut, predicted, what) in zip(row_axes, (
                    ("forward_gain", "shortcut_forward_gain", "predicted_forward_gain", "forward: RMS(x_l) / RMS(x_0)"),
                    ("backward_gain", "shortcut_backward_gain", "predicted_backward_gain",
                     "backward: RMS(dE/dx_l) / RMS(dE/dx_last block's input)"))):
                for name, color in _colors(gains, kind).items():
                    v = part[part["variant"] == name].sort_values("block")
                    ax.plot(v["block"], v[column], "-", color=color, label=name)
                    if shortcut in v.columns and kind == "shortcut":
                        ax.plot(v["block"], v[shortcut], "--", color=color, lw=0.8)
                    if predicted in v.columns and pd.to_numeric(v[predicted], errors="coerce").notna().any():
                        ax.plot(v["block"], pd.to_numeric(v[predicted], errors="coerce"), ":", color=color, lw=1.2)
                _plain_log_axis(ax)
                ax.set_xlabel("block l")
                ax.set_title(f"{kind} variants, {what}")
            style.put_legend(row_axes[0], style.drawn_entries(*row_axes)[0], loc="best")
        fig.suptitle("Gain over depth at initialisation (solid); dashed: the shortcut path alone (branches removed), "
                     f"relative to the identity's;\ndotted: lambda^l for a constant scale lambda ({PAPER}, eqs. 4-6)")
        return style.save_figure(fig, folder, "variants_gains", formats)


def plot_variants(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw the study's figures from the CSVs in `folder` into `out` (default: the same folder)."""
    folder = Path(folder)
    target = Path(out) if out is not None else folder
    formats = style.check_formats(formats)
    written: list[Path] = []
    curves, summary, gains = read_curves(folder), read_summary(folder), read_gains(folder)
    if curves is not None:
        written += draw_curves(curves, target, formats)
    if summary is not None:
        written += draw_vs_paper(summary, target, formats)
    if gains is not None:
        written += draw_gains(gains, target, formats)
    return written
