"""Loss landscapes: Li, Xu, Taylor, Studer, Goldstein 2018 ("Visualizing the Loss Landscape of Neural Nets"),
Fig. 1 and Fig. 5, drawn from landscape.csv alone (pandas, numpy, matplotlib; never torch).

- `landscape_1d`           (1D rows): training loss (log axis, +- its standard error) and training error against
  the step x along one filter-normalised direction (or the interpolation coefficient alpha), all runs on one pair
  of axes, twins side by side in the legend; plain nets dashed, residual nets solid.
- `landscape_2d_contour`   (2D rows, Li et al. Fig. 5, top): one panel per run, twins side by side, contour lines of
  the training loss at log-spaced levels shared by every panel, so that the same line means the same loss.
- `landscape_2d_surface`   (2D rows, Li et al. Fig. 1 and Fig. 5, bottom): the same surfaces in 3D, on one shared
  z range (clipped at the 99th percentile of all runs' losses, so that one plain net's spikes do not flatten the
  others).

The numbers that tell a smooth surface from a chaotic one are resx.studies.landscape.metrics (`surface_metrics`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from resx.plots import style
from resx.plots.csvs import read_csv
from resx.studies.landscape.declare import CSV_NAME, REQUIRED_COLUMNS


# --- reading ------------------------------------------------------------------------------------------------------
def read_landscape(folder: str | Path) -> pd.DataFrame | None:
    """landscape.csv of `folder` (None when absent or without rows), with `residual` as bool, `y` filled with 0.0
    where empty (1D rows) and `run` as text."""
    path = Path(folder) / CSV_NAME
    frame = read_csv(path, REQUIRED_COLUMNS)
    if frame is None:
        return None
    frame["y"] = pd.to_numeric(frame["y"], errors="coerce").fillna(0.0) if "y" in frame.columns else 0.0
    if "loss_se" not in frame.columns:
        frame["loss_se"] = np.nan
    for column in ("x", "y", "train_loss", "train_error", "loss_se", "dims"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=["dims", "x"]).reset_index(drop=True)  # a row without its place cannot be drawn
    frame["dims"] = frame["dims"].astype(int)
    return frame if len(frame) else None


def text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def ordered_runs(frame: pd.DataFrame) -> list[str]:
    """The runs with twins side by side: grouped by depth (the digits of the model's name, e.g. 56 for resnet56
    and plain56; the run's own name where the CSV has no model column), plain before residual inside a group,
    groups in the order they first appear."""
    firsts = frame.drop_duplicates("run")
    groups: dict[str, list[tuple[bool, str]]] = {}
    for row in firsts.itertuples(index=False):
        name = text(getattr(row, "model", "")) if "model" in frame.columns else ""
        name = name or str(row.run)
        digits = re.findall(r"\d+", name)
        key = digits[0] if digits else name
        groups.setdefault(key, []).append((bool(row.residual), str(row.run)))
    return [run for members in groups.values() for _, run in sorted(members, key=lambda m: m[0])]


def surface_grid(part: pd.DataFrame, value: str = "train_loss") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, Z) with Z[i, j] the `value` at (xs[i], ys[j]); NaN where a point is missing (an unfinished shard).
    1D rows give ys = [0.0] and Z of shape [len(xs), 1]."""
    xs = np.unique(np.round(part["x"].to_numpy(dtype=float), 12))
    ys = np.unique(np.round(part["y"].to_numpy(dtype=float), 12))
    z = np.full((len(xs), len(ys)), np.nan)
    i = np.searchsorted(xs, np.round(part["x"].to_numpy(dtype=float), 12))
    j = np.searchsorted(ys, np.round(part["y"].to_numpy(dtype=float), 12))
    z[i, j] = part[value].to_numpy(dtype=float)
    return xs, ys, z


# --- figures -------------------------------------------------------------------------------------------------------
def _x_label(frame: pd.DataFrame) -> str:
    directions = set(frame["directions"].dropna().astype(str)) if "directions" in frame.columns else set()
    if directions == {"interpolate"}:
        return r"$\alpha$ in $(1-\alpha)\,\theta_0 + \alpha\,\theta_1$"
    norm = set(frame["norm"].dropna().astype(str)) if "norm" in frame.columns else set()
    what = {"filter": "filter-normalised", "layer": "layer-normalised", "none": "unnormalised"}.get(
        next(iter(norm)), "random") if len(norm) == 1 else "random"
    return f"step along a {what} random direction"


def _label(run: str, residual: bool) -> str:
    return f"{run} ({'residual' if residual else 'plain'})"


def _colors(frame: pd.DataFrame, runs: Sequence[str]) -> dict[str, str]:
    """Plain orange and residual blue when there is one of each, else one colour per run."""
    residual = {r: bool(frame.loc[frame["run"] == r, "residual"].iloc[0]) for r in runs}
    if len(runs) == 2 and sorted(residual.values()) == [False, True]:
        return {r: style.variant_color(residual[r]) for r in runs}
    return style.run_colors(list(runs))


def draw_1d(frame: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Li et al. 2018 Fig. 1-style 1D slices: loss (log) and error against the step, every run on one axes."""
    runs = ordered_runs(frame)
    colors = _colors(frame, runs)
    with style.rc():
        fig, (ax_loss, ax_err) = style.new_figure(width=style.PAGE_WIDTH, height=2.4, ncols=2)
        for run in runs:
            part = frame[frame["run"] == run].sort_values("x")
            residual = bool(part["residual"].iloc[0])
            line = "-" if residual else "--"
            x, loss = part["x"].to_numpy(), part["train_loss"].to_numpy()
            ax_loss.plot(x, loss, color=colors[run], linestyle=line, marker="o", markersize=2,
                         label=_label(run, residual))
            se = part["loss_se"].to_numpy(dtype=float)
            if np.isfinite(se).any():
                se = np.nan_to_num(se)
                ax_loss.fill_between(x, np.clip(loss - se, loss * 0.5, None), loss + se, color=colors[run],
                                     alpha=0.2, linewidth=0)
            ax_err.plot(x, 100 * part["train_error"].to_numpy(), color=colors[run], linestyle=line, marker="o",
                        markersize=2, label=_label(run, residual))
        losses = frame["train_loss"].to_numpy(dtype=float)
        if (losses > 0).all():
            ax_loss.set_yscale("log")
            if losses.max() < 10 * losses.min():  # within a decade: plain numbers read better than 2.2 x 10^0
                from matplotlib.ticker import FuncFormatter

                plain = FuncFormatter(lambda v, _: f"{v:.3g}")
                ax_loss.yaxis.set_major_formatter(plain)
                ax_loss.yaxis.set_minor_formatter(plain)
        for ax in (ax_loss, ax_err):
            ax.set_xlabel(_x_label(frame))
        ax_loss.set_ylabel("training loss (cross-entropy)")
        ax_err.set_ylabel("training error (%)")
        ax_err.set_ylim(0, 100)
        ax_loss.set_title("training loss along the line")
        ax_err.set_title("training error along the line")
        style.put_legend(ax_loss, style.drawn_entries(ax_loss, ax_err)[0], loc="best")
        return style.save_figure(fig, folder, "landscape_1d", formats)


def _log_levels(frame: pd.DataFrame, count: int = 20) -> np.ndarray:
    """Log-spaced contour levels over every run's positive losses (shared, so panels compare)."""
    values = frame["train_loss"].to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return np.array([])
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo * (1 + 1e-9):
        hi = lo * 1.01
    return np.geomspace(lo, hi, count)


def _panel_title(part: pd.DataFrame, run: str) -> str:
    residual = bool(part["residual"].iloc[0])
    model = text(part["model"].iloc[0]) if "model" in part.columns else ""
    name = run if not model or model in run else f"{run} ({model})"
    return f"{name}\n{'with shortcuts' if residual else 'no shortcuts'}"


def draw_2d_contour(frame: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Li et al. 2018 Fig. 5 (top): contour lines of the training loss at shared log-spaced levels, one panel
    per run, twins side by side; the centre (the trained weights) marked."""
    from matplotlib.colors import LogNorm

    runs = ordered_runs(frame)
    levels = _log_levels(frame)
    n = len(runs)
    with style.rc():
        fig, axes = style.new_figure(width=min(style.PAGE_WIDTH, 0.5 + 2.2 * n), height=2.4, ncols=n)
        axes = axes if isinstance(axes, list) else [axes]
        mappable = None
        for ax, run in zip(axes, runs):
            part = frame[frame["run"] == run]
            xs, ys, z = surface_grid(part)
            ax.set_title(_panel_title(part, run))
            ax.set_xlabel("x (direction 1)")
            ax.set_ylabel("y (direction 2)")
            ax.set_aspect("equal")
            ax.grid(False)
            if min(z.shape) < 2 or np.isfinite(z).sum() < 4 or len(levels) < 2:
                ax.text(0.5, 0.5, "too few points", ha="center", va="center", transform=ax.transAxes)
                continue
            masked = np.ma.masked_invalid(np.where(z > 0, z, np.nan)).T  # contour wants Z[y, x]
            mappable = ax.contour(xs, ys, masked, levels=levels, norm=LogNorm(levels[0], levels[-1]),
                                  cmap="viridis", linewidths=0.7)
            ax.plot([0], [0], marker="+", color="black", markersize=6)
        if mappable is not None:
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

            bar = fig.colorbar(mappable, ax=axes, shrink=0.85)
            bar.set_label("training loss (log-spaced levels)")
            bar.ax.yaxis.set_major_locator(FixedLocator(levels[::max(1, len(levels) // 5)]))
            bar.ax.yaxis.set_minor_locator(NullLocator())
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        return style.save_figure(fig, folder, "landscape_2d_contour", formats)


def draw_2d_surface(frame: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Li et al. 2018 Fig. 1 and Fig. 5 (bottom): the loss surfaces in 3D on one z range, twins side by side."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    runs = ordered_runs(frame)
    values = frame["train_loss"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    cap = float(np.percentile(values, 99)) if len(values) else 1.0
    clipped = bool(len(values) and values.max() > cap)
    n = len(runs)
    with style.rc():
        fig = Figure(figsize=(min(style.PAGE_WIDTH, 0.3 + 2.4 * n), 2.6))
        for k, run in enumerate(runs):
            ax = fig.add_subplot(1, n, k + 1, projection="3d")
            part = frame[frame["run"] == run]
            xs, ys, z = surface_grid(part)
            ax.set_title(_panel_title(part, run))
            if min(z.shape) < 2 or np.isfinite(z).sum() < 4:
                ax.text2D(0.5, 0.5, "too few points", ha="center", va="center", transform=ax.transAxes)
                continue
            gx, gy = np.meshgrid(xs, ys, indexing="ij")
            ax.plot_surface(gx, gy, np.ma.masked_invalid(np.minimum(z, cap)), cmap="coolwarm", vmin=0,
                            vmax=cap, linewidth=0, antialiased=True, rstride=1, cstride=1)
            ax.set_zlim(0, cap)
            for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
                axis.set_major_locator(MaxNLocator(4))
            ax.set_xlabel("x", labelpad=-8)
            ax.set_ylabel("y", labelpad=-8)
            ax.set_zlabel(f"loss{' (clipped)' if clipped else ''}", labelpad=-6, fontsize=6)
            ax.tick_params(pad=-3, labelsize=5)
            ax.view_init(elev=30, azim=-60)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.05, top=0.85, wspace=0.05)
        return style.save_figure(fig, folder, "landscape_2d_surface", formats)


def plot_landscape(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw Li et al. 2018 Fig. 1/5-style figures from `folder`/landscape.csv: `landscape_1d` from its 1D rows,
    `landscape_2d_contour` and `landscape_2d_surface` from its 2D rows (a kind without rows is skipped).
    Writes into `out` or `folder` and returns the paths written."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    frame = read_landscape(folder)
    if frame is None:
        return []
    written: list[Path] = []
    one = frame[frame["dims"] == 1]
    two = frame[frame["dims"] == 2]
    if len(one):
        written += draw_1d(one, out, formats)
    if len(two):
        written += draw_2d_contour(two, out, formats)
        written += draw_2d_surface(two, out, formats)
    return written
