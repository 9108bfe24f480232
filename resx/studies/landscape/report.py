"""The loss-landscape study's section of REPORT.md, from landscape.csv (and landscape_info.json's settings), and the
check of Li et al. 2018 Fig. 5 on each pair of twins (a net with shortcuts and the same net without). Every
sentence that states a result is computed from the CSV here (resx.studies.landscape.metrics), so that it cannot
drift from it. Torch-free.
"""

import math
import re
from pathlib import Path
from typing import Any

from resx.markdown import DASH, computed_with, duration, figures, heading, markdown_table, pct, read_info
from resx.studies.landscape.declare import CSV_NAME, FIGURE_STEMS, INFO_NAME, TITLE


def number(value: Any, digits: int = 4) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return DASH
    if not math.isfinite(value):
        return DASH if math.isnan(value) else ("∞" if value > 0 else "-∞")
    return f"{value:.{digits}g}"


def share(value: Any) -> str:
    return DASH if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.2f}"


def _depth(metric_row: Any) -> int | None:
    digits = re.findall(r"\d+", str(metric_row.model or metric_row.run))
    return int(digits[0]) if digits else None


def twin_pairs(metrics: Any) -> list[tuple[Any, Any]]:
    """(plain row, residual row) for each depth group holding one of each (same dims), in the figure's order."""
    pairs = []
    for dims, part in metrics.groupby("dims", sort=False):
        groups: dict[Any, dict[bool, Any]] = {}
        for row in part.itertuples():
            groups.setdefault(_depth(row) or row.run, {}).setdefault(bool(row.residual), row)
        pairs += [(g[False], g[True]) for g in groups.values() if False in g and True in g]
    return pairs


CONVEX_MARGIN = 0.05  # convex shares closer than this are "as convex"
SMOOTH_FACTOR = 1.25  # roughness ratios within this factor of each other are "as smooth"


def compare_twins(plain: Any, residual: Any) -> tuple[int, int]:
    """(convexity, smoothness) of the residual surface against the plain one: +1 more, 0 as much, -1 less
    (convex shares within CONVEX_MARGIN, roughness ratios within a factor SMOOTH_FACTOR count as equal; a ratio
    that is not positive is rougher than any positive one)."""
    diff = residual.convex_share - plain.convex_share
    convex = 0 if not abs(diff) > CONVEX_MARGIN else (1 if diff > 0 else -1)
    r, p = residual.roughness_ratio, plain.roughness_ratio
    if math.isnan(r) or math.isnan(p):
        smooth = 0
    elif r > 0 and p > 0:
        smooth = 1 if r > SMOOTH_FACTOR * p else (-1 if p > SMOOTH_FACTOR * r else 0)
    else:
        smooth = 1 if r > 0 >= p else (-1 if p > 0 >= r else 0)
    return convex, smooth


def twin_verdict(plain: Any, residual: Any) -> str:
    """Li et al. 2018 Fig. 5, checked for one pair: the surface with shortcuts should be the more convex (higher
    convex share) or the smoother (higher roughness ratio), and neither less convex nor rougher."""
    convex, smooth = compare_twins(plain, residual)
    numbers = (f"{residual.run} (with shortcuts): convex share {share(residual.convex_share)}, roughness ratio "
               f"{number(residual.roughness_ratio)}; {plain.run} (without): {share(plain.convex_share)} and "
               f"{number(plain.roughness_ratio)}")
    words = {(1, 1): "both the more convex and the smoother", (1, 0): "the more convex and as smooth",
             (0, 1): "as convex and the smoother"}
    if (convex, smooth) in words:
        verdict = f"the measurement shows it: the surface with shortcuts is {words[convex, smooth]}."
    elif (convex, smooth) == (0, 0):
        verdict = ("the measurement shows no difference between the twins: their surfaces are about as convex and "
                   "as smooth.")
    else:
        parts = [w for w, v in (("less convex", convex), ("rougher", smooth)) if v < 0]
        verdict = f"the measurement does NOT show it: the surface with shortcuts is {' and '.join(parts)}."
    depth = _depth(residual)
    shallow = (f" (Li et al. see the difference grow with depth: at 20 layers the net without shortcuts is still "
               f"smooth; these nets have {depth})") if depth is not None and depth < 56 else ""
    incomplete = (" Not every grid point is measured yet (an unfinished shard)."
                  if plain.points < plain.grid_points or residual.points < residual.grid_points else "")
    return (f"Li et al. 2018 Fig. 5 find ResNet-56 smooth and nearly convex, the same net without shortcuts "
            f"chaotic{shallow}. Here {numbers}: {verdict}{incomplete}")


def metric_lines(metrics: Any) -> list[str]:
    """One line per pair of twins (for `resx reproduce`'s log)."""
    return [twin_verdict(p, r) for p, r in twin_pairs(metrics)] if metrics is not None and len(metrics) else []


METRIC_DEFINITION = (
    "**How smooth and how convex.** Both numbers are computed on the training loss itself (convexity is a "
    "property of the loss, and a log would turn even a perfect bowl concave away from its centre; the log is only "
    "for the contour levels). *Convex share*: the share of interior grid points where the discrete Hessian from "
    "central second differences is positive semi-definite (f_xx ≥ 0, f_yy ≥ 0, f_xx f_yy − f_xy² ≥ 0; in 1D "
    "the second difference ≥ 0), strictly; a "
    "convex bowl scores 1.0, noise about a half or less. *Roughness ratio*: the rise of the loss from the centre "
    "(the unperturbed net) to the edge (the mean over the grid's border) divided by the mean absolute second "
    "difference between neighbours; the bowl x² + y² on the same grid scores the value in brackets, a rough "
    "surface far less (about 1 or below once its wiggles are as large as its rise)."
)


def _settings_line(info: dict[str, Any], frame: Any) -> str:
    if not info:
        return f"{len(frame)} points in {CSV_NAME} (no {INFO_NAME} beside it)."
    span = info.get("span") or [None, None]
    grid = f"{info.get('points')} x {info.get('points')}" if info.get("dims") == 2 else f"{info.get('points')}"
    if info.get("directions") == "interpolate":
        along = "the line (1 − a) θ0 + a θ1 between two nets"
    else:
        along = (f"{'two' if info.get('dims') == 2 else 'one'} {info.get('norm')}-normalised random "
                 f"direction{'s' if info.get('dims') == 2 else ''} (seed {info.get('seed')}; twins get the same raw "
                 "directions)")
    if info.get("bn_recalibrate"):
        bn = "BatchNorm statistics recalibrated at every point"
    elif info.get("directions") == "interpolate":
        bn = ("BatchNorm running statistics interpolated between the two nets (recalibrated at every point when "
              "one end is a freshly initialised net); on this line the centre is a = 0 (θ0), the edge the mean of "
              "the two ends")
    else:
        bn = "BatchNorm in eval mode with the trained statistics (fresh nets recalibrated at every point)"
    return (f"Training loss and error on {info.get('samples')} training images (a fixed seeded subset, no "
            f"augmentation) at {grid} points with steps from {span[0]} to {span[1]} along {along}; {bn}; "
            f"{info.get('device_name', info.get('device'))}, {info.get('precision')}.")


def landscape_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    """REPORT.md's section: settings, one table row per run, the twins against Li et al. Fig. 5, the figures."""
    from resx.studies.landscape.draw import ordered_runs, read_landscape
    from resx.studies.landscape.metrics import surface_metrics

    folder = Path(folder)
    frame = read_landscape(folder)
    if frame is None:
        return []
    info = read_info(folder / INFO_NAME)
    runs_info = info.get("runs") or {}
    metrics = surface_metrics(frame)
    order = {run: i for i, run in enumerate(ordered_runs(frame))}
    metrics = metrics.assign(_order=metrics["run"].map(order)).sort_values(["dims", "_order"])
    lines = [heading(folder, results_dir, TITLE, several), ""]
    provenance = computed_with(info)
    if provenance:
        lines += [provenance, ""]
    lines += [_settings_line(info, frame), ""]
    rows = []
    for row in metrics.itertuples():
        entry = runs_info.get(row.run) or {}
        seconds = entry.get("seconds_per_point")
        if seconds is None and "seconds" in frame.columns:
            seconds = frame.loc[frame["run"] == row.run, "seconds"].mean()
        trained = entry.get("trained")
        rows.append([row.run, row.model or DASH, "yes" if row.residual else "no",
                     DASH if trained is None else ("yes" if trained else "no (fresh)"), f"{row.dims}D",
                     f"{row.points}/{row.grid_points}", number(row.centre_loss), number(row.edge_loss),
                     share(row.convex_share), f"{number(row.roughness_ratio)} ({number(row.bowl_ratio)})",
                     DASH if seconds is None or seconds != seconds else f"{float(seconds):.3f}"])
    lines += [markdown_table(["run", "model", "residual", "trained", "grid", "points", "centre loss", "edge loss",
                              "convex share", "roughness ratio (bowl)", "s / point"], rows, align="llllllrrrrr"), ""]
    pairs = twin_pairs(metrics)
    if pairs:
        lines += [twin_verdict(p, r) for p, r in pairs] + [""]
    else:
        lines += ["No pair of twins (a net with shortcuts and the same net without, e.g. resnet56 and plain56) was "
                  "measured with the same settings, so Li et al.'s Fig. 5 comparison cannot be made here.", ""]
    errors = [f"{r}: {pct(e)}%" for r, e in ((r, (runs_info.get(r) or {}).get("centre_error")) for r in order)
              if e is not None]
    if errors:
        where = "at a = 0 (θ0)" if info.get("directions") == "interpolate" else "of the unperturbed nets"
        lines += [f"Training error {where} on the subset: " + ", ".join(errors) + ".", ""]
    lines += [METRIC_DEFINITION, ""]
    total = sum(float((runs_info.get(r) or {}).get("evaluated_seconds") or 0) for r in order)
    if total:
        lines += [f"Measuring took {duration(total)} of evaluation in all.", ""]
    lines += figures(folder, list(FIGURE_STEMS), report_dir, {
        "landscape_1d": "Training loss (log) and error along one direction, plain vs residual; cf. Li et al. 2018 "
                        "Fig. 1",
        "landscape_2d_contour": "Contours of the training loss at log-spaced levels, twins side by side; cf. Li et al. "
                                "2018 Fig. 5",
        "landscape_2d_surface": "The same surfaces in 3D; cf. Li et al. 2018 Fig. 1 and Fig. 5",
    })
    return lines
