"""The loss-landscape study (Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets",
Fig. 1 and Fig. 5): its files, figures, report section, command, profile section and reproduce stage.

The computation is resx.studies.landscape (torch, imported inside the command and the stage only); the figures and
the smooth-vs-chaotic numbers are resx.plots.landscape (torch-free), so this module stays torch-free at import.
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

from resx.markdown import DASH, duration, figures, heading, markdown_table, pct
from resx.studies.registry import OutputFile, StageContext, Study, figure_files, lazy, register

# The study's files (users' scripts rely on the CSVs' columns, in this order; extra columns follow them).
INFO_NAME = "landscape_info.json"
CSV_COLUMNS = ("run", "residual", "dims", "x", "y", "train_loss", "train_error", "loss_se")
FIGURE_STEMS = ("landscape_1d", "landscape_2d_contour", "landscape_2d_surface")

TITLE = "Loss landscape (Li et al. 2018)"



# --- the reproduce profile's `landscape:` section ---------------------------------------------------------------------
@dataclass
class LandscapeSettings:
    """The surfaces `resx reproduce` measures around the grid's trained twins (reproduce.twin_models)."""

    dims: int = 2
    points: int = 21  # per axis: 21 x 21 = 441 points per net
    samples: int | None = None  # training images per point (None: 1024 on CPU, 8192 on CUDA)
    norm: str = "filter"
    bn_recalibrate: bool = False
    span: str = "-1:1"
    batch_size: int | None = None
    # fp32 by default: near a minimum the loss differences between neighbouring points are small, and bf16's
    # rounding of the logits shows up as roughness that is not the surface's (Li et al. computed in fp32)
    precision: str = "fp32"


def landscape_stage(ctx: StageContext) -> None:
    """Li et al. 2018 Fig. 5 on the grid's trained plain/residual twins (those that were trained), resumable."""
    from resx.studies.guards import run_status
    from resx.studies.landscape import run_landscape

    settings: LandscapeSettings = ctx.settings or LandscapeSettings()
    wanted = list(dict.fromkeys(ctx.grid_run(m) for m in ctx.reproduce.twin_models))
    found = [run for run in wanted if (run / "checkpoint.pt").exists() and run_status(run) in (None, "finished")]
    for run in wanted:
        if run not in found and (run / "checkpoint.pt").exists():
            ctx.say(f"landscape: {run} is not finished (run_info.json says {run_status(run)!r}); left out")
    if not found:
        ctx.say(f"landscape: none of {', '.join(map(str, wanted))} was trained; nothing to measure")
        return
    result = run_landscape(found, dims=settings.dims, span=settings.span, points=settings.points,
                           samples=settings.samples, norm=settings.norm, bn_recalibrate=settings.bn_recalibrate,
                           batch_size=settings.batch_size, precision=settings.precision, data=ctx.train.data, data_dir=ctx.train.data_dir,
                           device=ctx.device, seed=ctx.train.seed, out=ctx.study_out("landscape"), say=ctx.say)
    for line in metric_lines(result.metrics):
        ctx.say(line)


# --- the command ------------------------------------------------------------------------------------------------------
def landscape_command() -> Callable[..., Any]:
    """`resx landscape`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import CountingProgress, DataDirOpt, DataOpt, DeviceOpt, ForceOpt, SeedOpt, user_errors
    from resx.options import check_numbers

    @user_errors
    def command(
        runs: Annotated[Optional[list[Path]], typer.Argument(
            help="Run folders or checkpoint.pt files, one surface each (e.g. runs/resnet56 runs/plain56); with "
                 "--directions interpolate two runs, or one with --init.", show_default=False)] = None,
        model: Annotated[Optional[str], typer.Option("--model", help="Measure a freshly initialised net of this name instead (with --init).")] = None,
        init: Annotated[bool, typer.Option("--init", help="Start from freshly initialised nets (seeded): --model's, or the runs' models; with interpolate, the line from the run's fresh net to it.")] = False,
        dims: Annotated[Optional[int], typer.Option("--dims", help="1 (a line) or 2 (a plane). Default 2, or 1 with --directions interpolate.")] = None,
        span: Annotated[str, typer.Option("--span", help="LO:HI, the steps along each direction (write --span=-1:1 for a negative LO).")] = "-1:1",
        points: Annotated[int, typer.Option("--points", help="Grid points per axis (21 x 21 in 2D).")] = 21,
        samples: Annotated[Optional[int], typer.Option("--samples", help="Training images per point (default 1024 on CPU, 8192 on CUDA).")] = None,
        directions: Annotated[str, typer.Option("--directions", help="random (Li et al. §4) | interpolate (between two nets).")] = "random",
        norm: Annotated[str, typer.Option("--norm", help="filter (Li et al.'s filter normalisation) | layer | none.")] = "filter",
        bn_recalibrate: Annotated[bool, typer.Option("--bn-recalibrate", help="Recompute BatchNorm statistics at every point (always done for fresh nets).")] = False,
        shard: Annotated[Optional[str], typer.Option("--shard", help="Measure only slice I of N of the grid (I/N, e.g. a SLURM array index).")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per batch (default: samples / 8, at most 256 on CPU, 2048 on CUDA).")] = None,
        precision: Annotated[str, typer.Option("--precision", help="fp32 (default: bf16 rounding shows as roughness near a minimum) | bf16 | auto (bf16 where the device computes it natively).")] = "fp32",
        data: DataOpt = None,
        data_dir: DataDirOpt = None,
        device: DeviceOpt = "auto",
        seed: SeedOpt = None,
        out: Annotated[Path, typer.Option("--out", help="Folder for landscape.csv, landscape_info.json and the figures.")] = Path("results/landscape"),
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier landscape study in --out (by default it is resumed when its settings match).")] = False,
        force: ForceOpt = False,
    ) -> None:
        """Loss surfaces around trained nets along filter-normalised random directions (Li et al. 2018, Fig. 1 and 5)."""
        from resx.studies.landscape import run_landscape

        check_numbers(locals())
        check_output_folder(out)
        with CountingProgress(transient=True) as bar:
            say = lambda message: bar.bar.console.print(f"[dim]{message}[/]", highlight=False)  # noqa: E731
            result = run_landscape(runs or (), model, init=init, dims=dims if dims is not None else
                                   (1 if directions == "interpolate" else 2), span=span, points=points, samples=samples,
                                   directions=directions, norm=norm, bn_recalibrate=bn_recalibrate, shard=shard,
                                   data=data, data_dir=data_dir, device=device, seed=seed if seed is not None else 0,
                                   batch_size=batch_size, precision=precision, out=out, overwrite=overwrite,
                                   force=force, progress=bar, say=say)
        show_result(result)

    return command


def show_result(result: Any) -> None:
    """The surfaces' numbers on the console (`resx landscape`)."""
    from rich.table import Table

    from resx.cli_common import console

    info = result.info
    table = Table(title=f"loss landscape (Li et al. 2018): {info.get('samples')} training images per point, "
                        f"{info.get('device_name', info.get('device'))}, {info.get('precision')}")
    for col in ("run", "shortcuts", "points", "centre", "edge", "convex", "roughness", "s/point"):
        table.add_column(col, justify="left" if col in ("run", "shortcuts") else "right", no_wrap=col == "run")
    runs = info.get("runs") or {}
    for row in result.metrics.itertuples():
        seconds = (runs.get(row.run) or {}).get("seconds_per_point")
        table.add_row(row.run, "yes" if row.residual else "no", f"{row.points}/{row.grid_points}",
                      _number(row.centre_loss), _number(row.edge_loss), _share(row.convex_share),
                      _number(row.roughness_ratio), f"{seconds:.3f}" if seconds is not None else "-")
    console.print(table)
    bowls = sorted({_number(b) for b in result.metrics["bowl_ratio"]}) if len(result.metrics) else []
    console.print("centre, edge: training loss at the unperturbed net and mean over the grid's border; convex: share "
                  "of interior points where the surface is locally convex; roughness: rise from centre to edge / mean "
                  f"|second difference| (a bowl on this grid: {', '.join(bowls) or '-'})", highlight=False)
    for line in metric_lines(result.metrics):
        console.print(line, highlight=False)
    console.print(f"measured {result.evaluated} point(s), {result.skipped} already done; results in "
                  f"[bold]{result.out}[/]: " + ", ".join(p.name for p in result.figures if p.suffix == ".png"))


# --- the report section -----------------------------------------------------------------------------------------------
def _number(value: Any, digits: int = 4) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return DASH
    if not math.isfinite(value):
        return DASH if math.isnan(value) else ("∞" if value > 0 else "-∞")
    return f"{value:.{digits}g}"


def _share(value: Any) -> str:
    return DASH if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.2f}"


def _read_info(folder: Path) -> dict[str, Any]:
    try:
        info = json.loads((folder / INFO_NAME).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


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
    numbers = (f"{residual.run} (with shortcuts): convex share {_share(residual.convex_share)}, roughness ratio "
               f"{_number(residual.roughness_ratio)}; {plain.run} (without): {_share(plain.convex_share)} and "
               f"{_number(plain.roughness_ratio)}")
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
        return f"{len(frame)} points in landscape.csv (no {INFO_NAME} beside it)."
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
    folder = Path(folder)
    from resx.plots.landscape import ordered_runs, read_landscape, surface_metrics

    frame = read_landscape(folder)
    if frame is None:
        return []
    info = _read_info(folder)
    runs_info = info.get("runs") or {}
    metrics = surface_metrics(frame)
    order = {run: i for i, run in enumerate(ordered_runs(frame))}
    metrics = metrics.assign(_order=metrics["run"].map(order)).sort_values(["dims", "_order"])
    lines = [heading(folder, results_dir, TITLE, several), "", _settings_line(info, frame), ""]
    rows = []
    for row in metrics.itertuples():
        entry = runs_info.get(row.run) or {}
        seconds = entry.get("seconds_per_point")
        if seconds is None and "seconds" in frame.columns:
            seconds = frame.loc[frame["run"] == row.run, "seconds"].mean()
        trained = entry.get("trained")
        rows.append([row.run, row.model or DASH, "yes" if row.residual else "no",
                     DASH if trained is None else ("yes" if trained else "no (fresh)"), f"{row.dims}D",
                     f"{row.points}/{row.grid_points}", _number(row.centre_loss), _number(row.edge_loss),
                     _share(row.convex_share), f"{_number(row.roughness_ratio)} ({_number(row.bowl_ratio)})",
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


STUDY = register(Study(
    name="landscape",
    title=TITLE,
    outputs=(
        OutputFile("landscape.csv", columns=CSV_COLUMNS,
                   about="one row per run and grid point: training loss, error and the loss's standard error"),
        OutputFile("landscape_info.json", about="the settings, per run the centre loss and seconds per point"),
        *figure_files("landscape_*"),
    ),
    plot=lazy("resx.plots.landscape", "plot_landscape"),
    report=landscape_section,
    command=landscape_command,
    command_name="landscape",
    settings=LandscapeSettings,
    stage=landscape_stage,
    stage_order=50,
))
