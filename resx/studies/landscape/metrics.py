"""The numbers that tell a smooth, nearly convex loss surface (Li et al. 2018 Fig. 5, ResNet-56) from a chaotic one
(the same net without shortcuts): the convex share and the roughness ratio of each surface in landscape.csv
(`surface_metrics`, defined in its docstring). numpy and pandas only (never torch): the computation, the figures'
console summary and the report section all use it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from resx.studies.landscape.draw import surface_grid, text

# A local curvature within this share of the surface's whole range (max - min loss) of zero counts as flat, i.e.
# convex. 0 by default (the discrete Hessian must be positive semi-definite): a tolerance scaled by the range
# lets a chaotic surface's huge corners (plain-56 rises to about 300 at the corners of a 21 x 21 grid over -1:1,
# measured) declare its whole low plateau "flat", which made the plain net look the more convex of a pair whose
# contours show the opposite. The landscape is measured in fp32 by default, so rounding does not decide signs.
CONVEX_TOLERANCE = 0.0
METRIC_COLUMNS = ("run", "model", "residual", "dims", "points", "grid_points", "centre_loss", "edge_loss",
                  "min_loss", "convex_share", "roughness_ratio", "bowl_ratio")


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
            "model": text(part["model"].iloc[0]) if "model" in part.columns else "",
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
