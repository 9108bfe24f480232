"""`resx landscape`: the study's command line and its console summary. typer and rich are imported when the CLI
builds the command; the computation (resx.studies.landscape.compute, torch) when the command runs."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

from resx.studies.landscape.report import metric_lines, number, share


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
        shard: Annotated[Optional[str], typer.Option("--shard", help="Measure only slice I of N of the grid: I/N, or auto (a SLURM array task: SLURM_ARRAY_TASK_ID, _COUNT, _MIN).")] = None,
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
        from resx.studies.landscape.compute import run_landscape

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
    from resx.cli_common import Column, console, fitted_table

    info = result.info
    # narrow terminals keep each run with its centre loss and convex share; the rest goes, timings first
    columns = [Column("run", justify="left"), Column("shortcuts", "res", justify="left", drop=3),
               Column("points", drop=4), Column("centre"), Column("edge", drop=2), Column("convex"),
               Column("roughness", "rough", drop=1), Column("s/point", drop=5)]
    runs = info.get("runs") or {}
    rows = []
    for row in result.metrics.itertuples():
        seconds = (runs.get(row.run) or {}).get("seconds_per_point")
        rows.append([row.run, "yes" if row.residual else "no", f"{row.points}/{row.grid_points}",
                     number(row.centre_loss), number(row.edge_loss), share(row.convex_share),
                     number(row.roughness_ratio), f"{seconds:.3f}" if seconds is not None else "-"])
    console.print(fitted_table(f"loss landscape (Li et al. 2018): {info.get('samples')} training images per point, "
                               f"{info.get('device_name', info.get('device'))}, {info.get('precision')}", columns, rows))
    bowls = sorted({number(b) for b in result.metrics["bowl_ratio"]}) if len(result.metrics) else []
    console.print("centre, edge: training loss at the unperturbed net and mean over the grid's border; convex: share "
                  "of interior points where the surface is locally convex; roughness: rise from centre to edge / mean "
                  f"|second difference| (a bowl on this grid: {', '.join(bowls) or '-'})", highlight=False)
    for line in metric_lines(result.metrics):
        console.print(line, highlight=False)
    console.print(f"measured {result.evaluated} point(s), {result.skipped} already done; results in "
                  f"[bold]{result.out}[/]: " + ", ".join(p.name for p in result.figures if p.suffix == ".png"))
