"""Paths through a residual network: Veit, Wilber, Belongie 2016, Fig. 6, and gradient norms per block.

Unraveled, n residual blocks are 2^n paths; C(n, k) of them pass through k residual branches, so path lengths are
Binomial(n, 1/2), centred at n/2 (panel a). The gradient that reaches the input through one path of length k falls
exponentially with k (panel b, log scale). Their product, the total gradient per length (panel c), comes almost all
from short paths: 5 to 17 blocks of 54 in the paper, the "effective" paths; `effective_window` computes that range
(declare.py, shared with the study and REPORT.md).

- `paths`: the three panels of Fig. 6 from path_distribution.csv, path_gradients.csv and path_total_gradient.csv.
- `block_gradients`: the gradient norm reaching each block, log scale, plain vs residual (colour), at
  initialisation vs trained (dashed vs solid): a plain net's gradient shrinks towards the input, a ResNet's does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from resx import reference
from resx.plots import style
from resx.plots.csvs import read_csv
from resx.studies.paths.declare import distribution_centre, effective_window

# the columns each reader needs (the files' full columns are declared in declare.py)
NEEDED_DISTRIBUTION = ("k", "fraction")
NEEDED_GRADIENT = ("k", "grad_norm_mean")
NEEDED_TOTAL = ("k", "total")
NEEDED_BLOCK = ("run", "residual", "trained", "block", "grad_norm")


def read_distribution(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / "path_distribution.csv", NEEDED_DISTRIBUTION)


def read_gradients(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / "path_gradients.csv", NEEDED_GRADIENT)


def read_total(folder: str | Path) -> pd.DataFrame | None:
    frame = read_csv(Path(folder) / "path_total_gradient.csv", NEEDED_TOTAL)
    if frame is not None and "fraction" not in frame.columns:
        frame["fraction"] = frame["total"] / frame["total"].sum()
    return frame


def read_block_gradients(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / "block_gradients.csv", NEEDED_BLOCK)


def _corner_note(ax, text: str) -> None:
    # upper right: the long-path tail, which is nearly empty in panels (a) and (c) for any n
    ax.text(0.98, 0.97, text, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.2")


def draw_paths(distribution: pd.DataFrame | None, gradients: pd.DataFrame | None, total: pd.DataFrame | None,
               folder: Path, formats: Iterable[str]) -> list[Path]:
    """Veit et al. 2016 Fig. 6 (a) path-length distribution, (b) gradient per path length, (c) total per length."""
    panels = [(name, frame) for name, frame in (("a", distribution), ("b", gradients), ("c", total))
              if frame is not None]
    with style.rc():
        fig, axes = style.new_figure(width=style.PAGE_WIDTH * len(panels) / 3, height=2.2, ncols=len(panels))
        axes = axes if isinstance(axes, list) else [axes]
        for ax, (name, frame) in zip(axes, panels):
            frame = frame.sort_values("k")
            if name == "a":
                ax.bar(frame["k"], frame["fraction"], width=0.8, color=style.RESIDUAL_COLOR)
                centre = distribution_centre(frame["k"], frame["fraction"])
                ax.axvline(centre, color="0.3", linestyle=":", linewidth=0.8)
                _corner_note(ax, f"mean length {centre:.3g}")
                ax.set_ylabel("fraction of paths")
                ax.set_title("(a) distribution of path lengths")
            elif name == "b":
                mean = frame["grad_norm_mean"].to_numpy(dtype=float)
                ax.plot(frame["k"], mean, color=style.RESIDUAL_COLOR, marker="o", markersize=2.5)
                if "grad_norm_std" in frame.columns:
                    std = frame["grad_norm_std"].fillna(0).to_numpy(dtype=float)
                    floor = np.where(mean - std > 0, mean - std, mean * 0.5)  # keep the band on a log axis
                    ax.fill_between(frame["k"], floor, mean + std, color=style.RESIDUAL_COLOR, alpha=0.18,
                                    linewidth=0)
                ax.set_yscale("log")
                ax.set_ylabel("gradient norm at the input")
                ax.set_title("(b) gradient per path")
            else:
                ax.plot(frame["k"], frame["fraction"], color=style.RESIDUAL_COLOR, marker="o", markersize=2.5)
                lo, hi, captured = effective_window(frame["k"], frame["total"])
                ax.axvspan(lo - 0.5, hi + 0.5, color="0.5", alpha=0.15, linewidth=0)
                _corner_note(ax, f"shaded: k = {lo} to {hi},\n{100 * captured:.0f}% of the gradient")
                ax.set_ylabel("share of total gradient")
                ax.set_title("(c) total gradient per length")
            ax.set_xlabel("path length k (blocks)")
            ax.set_xlim(frame["k"].min() - 0.8, frame["k"].max() + 0.8)
        if len(panels) == 3 and distribution is not None:
            n = int(distribution["k"].max())
            lo, hi = reference.VEIT_EFFECTIVE_WINDOW
            fig.suptitle(f"n = {n} blocks (Veit et al. 2016, n = {reference.VEIT_BLOCKS}: "
                         f"effective paths {lo} to {hi}, distribution centred at {reference.VEIT_PATH_LENGTH_CENTRE})",
                         fontsize=7, color="0.3")
        return style.save_figure(fig, folder, "paths", formats)


def draw_block_gradients(frame: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Gradient norm per block (log scale): plain vs residual by colour, init (dashed) vs trained (solid)."""
    runs = list(dict.fromkeys(frame["run"]))
    run_residual = frame.groupby("run")["residual"].first()
    one_per_kind = run_residual.value_counts().max() <= 1
    colors = ({run: style.variant_color(bool(run_residual[run])) for run in runs} if one_per_kind
              else style.run_colors(runs))
    with style.rc():
        fig, ax = style.new_figure(width=style.COLUMN_WIDTH * 1.3, height=2.4)
        for run in runs:
            for trained in (False, True):
                part = frame[(frame["run"] == run) & (frame["trained"] == trained)].sort_values("block")
                if part.empty:
                    continue
                kind = "residual" if run_residual[run] else "plain"
                ax.plot(part["block"], part["grad_norm"], color=colors[run], marker="o", markersize=2,
                        linestyle="-" if trained else "--", linewidth=1.2 if trained else 0.9,
                        label=f"{run} ({kind}), {'trained' if trained else 'at init'}")
        ax.set_yscale("log")
        ax.set_xlabel("block (input side to output side)")
        ax.set_ylabel("gradient norm at the block")
        ax.set_title("gradient reaching each block")
        style.put_legend(ax, style.drawn_entries(ax)[0], loc="best")
        return style.save_figure(fig, folder, "block_gradients", formats)


def plot_paths(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw Veit et al. 2016 Fig. 6 (`paths`) and `block_gradients` from a paths study folder.

    A panel of `paths` whose CSV is absent is left out (and the figure skipped when all three are); writes into
    `out` or `folder` and returns the paths written."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    written: list[Path] = []
    distribution, gradients, total = read_distribution(folder), read_gradients(folder), read_total(folder)
    if any(frame is not None for frame in (distribution, gradients, total)):
        written += draw_paths(distribution, gradients, total, out, formats)
    blocks = read_block_gradients(folder)
    if blocks is not None:
        written += draw_block_gradients(blocks, out, formats)
    return written
