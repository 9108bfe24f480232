"""Training speed: images per second of each model under each training method (`resx bench`).

Grouped horizontal bars, one group per model (and batch size, when several were measured), one bar per method.
The shape to expect (reference runs on an H100): at batch 128 these small CIFAR nets are bound by per-kernel
launch and Python overhead, so capturing the whole step as one CUDA graph helps far more than bf16 does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from resx.plots import style
from resx.plots.csvs import read_csv
from resx.studies.bench.declare import BENCH_NAME

REQUIRED_COLUMNS = ("model", "method", "batch_size", "images_per_second")  # of bench.csv; the others where present


def read_bench(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / BENCH_NAME, REQUIRED_COLUMNS)


def _group_label(frame: pd.DataFrame) -> pd.Series:
    several_batches = frame.groupby("model")["batch_size"].nunique().max() > 1
    if several_batches:
        return frame["model"] + " (batch " + frame["batch_size"].astype(int).astype(str) + ")"
    return frame["model"]


def draw_bench(frame: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Grouped horizontal bars of images/s per model and method (mean over repeated measurements)."""
    frame = frame.assign(group=_group_label(frame))
    table = frame.groupby(["group", "method"], sort=False)["images_per_second"].mean().unstack("method")
    groups = list(table.index)
    methods = list(table.columns)
    colors = style.run_colors(methods)
    bar = 0.8 / len(methods)
    with style.rc():
        height = max(1.6, 0.35 + 0.16 * len(groups) * len(methods) + 0.25 * len(groups))
        fig, ax = style.new_figure(width=style.PAGE_WIDTH * 0.7, height=height)
        top = float(table.max().max())
        for j, method in enumerate(methods):
            positions = [i + (j - (len(methods) - 1) / 2) * bar for i in range(len(groups))]
            values = table[method].to_numpy()
            ax.barh(positions, values, height=bar * 0.92, color=colors[method], label=method)
            for y, v in zip(positions, values):
                if v == v:  # not NaN
                    ax.text(v + top * 0.01, y, f"{v:,.0f}", va="center", fontsize=6)
        ax.set_yticks(range(len(groups)), groups)
        ax.invert_yaxis()  # first model on top
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel("training speed (images / s)")
        ax.grid(axis="y", visible=False)
        style.put_legend(ax, style.drawn_entries(ax)[0], loc="lower right", title="method", title_fontsize=7)
        batches = sorted(frame["batch_size"].dropna().astype(int).unique())
        if len(batches) == 1:
            ax.set_title(f"training throughput, batch {batches[0]}")
        return style.save_figure(fig, folder, "bench", formats)


def plot_bench(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw `bench` (images/s per model and method) from `bench.csv` in `folder`; nothing if it is absent."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    frame = read_bench(folder)
    return draw_bench(frame, out, formats) if frame is not None else []
