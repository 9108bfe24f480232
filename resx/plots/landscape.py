"""Loss landscapes: Li, Xu, Taylor, Studer, Goldstein 2018 ("Visualizing the Loss Landscape of Neural Nets"),
Fig. 1 and Fig. 5, drawn from landscape.csv, and the numbers that tell a smooth surface from a chaotic one.

- `landscape_1d`           (1D rows): training loss (log axis, +- its standard error) and training error against
  the step x along one filter-normalised direction (or the interpolation coefficient alpha), all runs on one pair
  of axes, twins side by side in the legend; plain nets dashed, residual nets solid.
- `landscape_2d_contour`   (2D rows, Li et al. Fig. 5, top): one panel per run, twins side by side, contour lines of
  the training loss at log-spaced levels shared by every panel, so that the same line means the same loss.
- `landscape_2d_surface`   (2D rows, Li et al. Fig. 1 and Fig. 5, bottom): the same surfaces in 3D, on one shared
  z range (clipped at the 99th percentile of all runs' losses, so that one plain net's spikes do not flatten the
  others).

`surface_metrics(frame)` reduces each surface to two numbers (defined in its docstring): the share of interior grid
points where the surface is locally convex, and the roughness ratio. Torch-free (pandas, numpy, matplotlib).
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

CSV_NAME = "landscape.csv"
# The contract with users' scripts: these columns, in this order; extra columns follow them.
EXTRA_COLUMNS = ("model", "point", "samples", "bn_recalibrate", "directions", "norm", "seconds")
# What a figure needs (y and loss_se may be empty: y for 1D rows written by others, loss_se with one batch).
REQUIRED_COLUMNS = ("run", "residual", "dims", "x", "train_loss", "train_error")
# A local curvature within this share of the surface's whole range (max - min loss) of zero counts as flat, i.e.
# convex. 0 by default (the discrete Hessian must be positive semi-definite): a tolerance scaled by the range
# lets a chaotic surface's huge corners (plain-56 rises to about 300 at the corners of a 21 x 21 grid over -1:1,
# measured) declare its whole low plateau "flat", which made the plain net look the more convex of a pair whose
# contours show the opposite. The landscape is measured in fp32 by default, so rounding does not decide signs.
CONVEX_TOLERANCE = 0.0
METRIC_COLUMNS = ("run", "model", "residual", "dims", "points", "grid_points", "centre_loss", "edge_loss",
                  "min_loss", "convex_share", "roughness_ratio", "bowl_ratio")


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


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def ordered_runs(frame: pd.DataFrame) -> list[str]:
    """The runs with twins side by side: grouped by depth (the digits of the model's name, e.g. 56 for resnet56
    and plain56; the run's own name where the CSV has no model column), plain before residual inside a group,
    groups in the order they first appear."""
    firsts = frame.drop_duplicates("run")
    groups: dict[str, list[tuple[bool, str]]] = {}
    for row in firsts.itertuples(index=False):
        name = _text(getattr(row, "model", "")) if "model" in frame.columns else ""
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


# --- the smooth-vs-chaotic numbers -----------------------------------------------------------------------------------
def local_convexity(z: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """For each interior point of the grid Z (both neighbours present along every axis with more than one
    point), whether the discrete Hessian there is positive semi-definite up to `tol`; NaN where it cannot be
    computed (a missing neighbour, the border).

    Second differences in grid steps (no division by the step h: both axes have the same step, and the sign tests
    below do not change under a positive rescaling of the axes):
      D_xx = f(i+1, j) - 2 f(i, j) + f(i-1, j)              D_yy likewise along j
      D_xy = (f(i+1, j+1) - f(i+1, j-1) - f(i-1, j+1) + f(i-1, j-1)) / 4
    2D: convex when the smallest eigenvalue of [[D_xx, D_xy], [D_xy, D_yy]] is >= -tol (with tol = 0 exactly
    D_xx >= 0, D_yy >= 0 and D_xx D_yy - D_xy^2 >= 0). 1D (one column): D_xx >= -tol."""
    z = np.asarray(z, dtype=float)
    out = np.full(z.shape, np.nan)
    nx, ny = z.shape
    if nx < 3:
        return out
    c = z[1:-1, :]
    dxx = z[2:, :] - 2 * c + z[:-2, :]
    if ny == 1:
        with np.errstate(invalid="ignore"):
            out[1:-1, :] = np.where(np.isnan(dxx), np.nan, dxx >= -tol)
        return out
    if ny < 3:
        return out
    dxx = dxx[:, 1:-1]
    dyy = z[1:-1, 2:] - 2 * z[1:-1, 1:-1] + z[1:-1, :-2]
    dxy = (z[2:, 2:] - z[2:, :-2] - z[:-2, 2:] + z[:-2, :-2]) / 4
    smallest = (dxx + dyy) / 2 - np.sqrt(((dxx - dyy) / 2) ** 2 + dxy ** 2)
    with np.errstate(invalid="ignore"):
        out[1:-1, 1:-1] = np.where(np.isnan(smallest), np.nan, smallest >= -tol)
    return out


def mean_abs_second_difference(z: np.ndarray) -> float:
    """The mean of |f(k+1) - 2 f(k) + f(k-1)| over every interior point along every axis with 3 or more points
    (both axes' second differences pooled), in loss units; NaN where there is none."""
    z = np.asarray(z, dtype=float)
    parts = []
    if z.shape[0] >= 3:
        parts.append((z[2:, :] - 2 * z[1:-1, :] + z[:-2, :]).ravel())
    if z.shape[1] >= 3:
        parts.append((z[:, 2:] - 2 * z[:, 1:-1] + z[:, :-2]).ravel())
    values = np.abs(np.concatenate(parts)) if parts else np.array([])
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def centre_and_edge(xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """(the loss at the grid point nearest (0, 0), the mean loss over the grid's border: the two ends of a 1D
    line, the outer ring of a 2D grid), missing points left out."""
    i, j = int(np.argmin(np.abs(xs))), int(np.argmin(np.abs(ys)))
    mask = np.zeros(z.shape, dtype=bool)
    mask[[0, -1], :] = True
    if z.shape[1] > 1:
        mask[:, [0, -1]] = True
    edge = z[mask]
    edge = edge[np.isfinite(edge)]
    return float(z[i, j]), (float(edge.mean()) if len(edge) else float("nan"))


def roughness_ratio(xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> float:
    """(edge loss - centre loss) / mean |second difference between neighbours| (see `surface_metrics`)."""
    centre, edge = centre_and_edge(xs, ys, z)
    rough = mean_abs_second_difference(z)
    if not (math.isfinite(rough) and math.isfinite(centre) and math.isfinite(edge)):
        return float("nan")
    if rough == 0:
        return float("inf") if edge != centre else float("nan")
    return (edge - centre) / rough


def bowl_ratio(xs: np.ndarray, ys: np.ndarray) -> float:
    """The roughness ratio of the bowl x^2 (+ y^2) on the same grid: what a perfectly smooth convex surface
    scores (for 1D on n points over [-1, 1]: (n - 1)^2 / 8, i.e. 50 for n = 21)."""
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    return roughness_ratio(xs, ys, gx ** 2 + (gy ** 2 if len(ys) > 1 else 0.0))


def surface_metrics(frame: pd.DataFrame, tol: float = CONVEX_TOLERANCE) -> pd.DataFrame:
    """One row per run (and per dims, should a CSV hold both) with the two numbers that tell a smooth,
    nearly convex surface (Li et al. 2018 Fig. 5, ResNet-56) from a chaotic one (the same net without shortcuts).

    Both are computed on the training loss itself, not its log: convexity is a property of the loss (Li et al.
    2018 §6 measure it through the Hessian of the loss) and is not kept by a log, under which even the perfect
    bowl x^2 + y^2 + c turns concave away from its centre; the log is used only to draw the contours.

    convex_share   the share of interior grid points (both neighbours along each axis measured) where the surface
                   is locally convex: the discrete Hessian from central second differences is positive
                   semi-definite, f_xx >= 0, f_yy >= 0, f_xx f_yy - f_xy^2 >= 0 (1D: the second difference
                   f(k+1) - 2 f(k) + f(k-1) >= 0), see `local_convexity`. A curvature within `tol` x (max - min
                   loss of the surface, default 0) of zero counts as flat, hence convex. A convex bowl scores 1.0; a surface
                   whose second differences are noise scores about a half, or less.
    roughness_ratio  the rise of the loss from the centre (the grid point nearest 0) to the edge (the mean over
                   the grid's border) divided by the mean absolute second difference between neighbours along
                   either axis (`mean_abs_second_difference`). A smooth bowl rises by much more than its local
                   wiggle: the bowl x^2 (+ y^2) on the same grid scores `bowl_ratio` (50 for 21 points in 1D, 66.75
                   on a 21 x 21 grid); a rough surface scores far less (about 1 or below once its wiggles are as
                   large as its rise; negative when the edge lies below the centre).
    Also: points (measured) and grid_points (expected), centre_loss, edge_loss, min_loss. Missing points (an
    unfinished shard) are left out of every number."""
    rows = []
    for (run, dims), part in frame.groupby(["run", "dims"], sort=False):
        xs, ys, z = surface_grid(part)
        finite = z[np.isfinite(z)]
        span = float(finite.max() - finite.min()) if len(finite) else 0.0
        convex = local_convexity(z, tol * span)
        judged = convex[np.isfinite(convex)]
        centre, edge = centre_and_edge(xs, ys, z)
        rows.append({
            "run": run,
            "model": _text(part["model"].iloc[0]) if "model" in part.columns else "",
            "residual": bool(part["residual"].iloc[0]),
            "dims": int(dims),
            "points": int(np.isfinite(z).sum()),
            "grid_points": int(z.size),
            "centre_loss": centre,
            "edge_loss": edge,
            "min_loss": float(finite.min()) if len(finite) else float("nan"),
            "convex_share": float(judged.mean()) if len(judged) else float("nan"),
            "roughness_ratio": roughness_ratio(xs, ys, z),
            "bowl_ratio": bowl_ratio(xs, ys),
        })
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


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
        ax_loss.legend(loc="best")
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
    model = _text(part["model"].iloc[0]) if "model" in part.columns else ""
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
