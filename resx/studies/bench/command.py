"""`resx bench`: the benchmark's command line and its table. typer and rich are imported when the CLI builds the
command."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

from resx.studies.bench.declare import DEFAULT_MODELS, METHODS


def bench_command() -> Callable[..., Any]:
    """`resx bench`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import DataDirOpt, DataOpt, DeviceOpt, SeedOpt, console, user_errors
    from resx.options import check_numbers

    @user_errors
    def command(
        models: Annotated[str, typer.Option(help="Models to measure, comma-separated.")] = DEFAULT_MODELS,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 128,
        seconds: Annotated[float, typer.Option(help="Timed seconds per model, method and round (after warm-up).")] = 10.0,
        rounds: Annotated[int, typer.Option(help="Interleaved rounds per method; the median is reported.")] = 3,
        concurrency: Annotated[Optional[int], typer.Option(
            help="Runs at once for resx-concurrent (default: 4 on CUDA, one per core on a CPU).")] = None,
        methods: Annotated[str, typer.Option(help=",".join(METHODS))] = ",".join(METHODS),
        workers: Annotated[Optional[int], typer.Option(
            help="DataLoader workers of the common recipe (default: the fastest of 0, 1, 2 on a CPU; 4 on CUDA).")] = None,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads of the single-run methods (default: all cores).")] = None,
        data: DataOpt = None,
        data_dir: DataDirOpt = None,
        device: DeviceOpt = "auto",
        seed: SeedOpt = None,
        out: Annotated[Path, typer.Option(help="Folder for bench.csv and bench.png.")] = Path("results/bench"),
    ) -> None:
        """Training images/s: the common recipe (DataLoader + PIL, eager fp32) vs resx's engine, on this device."""
        from resx.studies.bench.compute import BenchSettings, run_bench
        from resx.studies.resume import starts_over

        check_numbers(locals())
        check_output_folder(out)
        settings = BenchSettings(models=[m for m in models.split(",") if m], batch_size=batch_size, seconds=seconds,
                                 concurrency=concurrency, methods=tuple(m for m in methods.split(",") if m),
                                 workers=workers, rounds=rounds, threads=threads).validate()
        with starts_over("bench"):  # its timings are written at the end, all together
            frame = run_bench(settings, data=data, data_dir=str(data_dir) if data_dir else None, device=device,
                              seed=seed or 0, out=out, say=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
                              on_row=lambda r: console.print(f"{r['model']:>10} {r['method']:<16} "
                                                             f"{r['images_per_second']:>8,.0f} img/s", highlight=False))
        show_bench_table(frame, batch_size)
        console.print(f"results in [bold]{out}[/] (bench.csv, bench_rounds.csv, bench_info.json, bench.png)")

    return command


def show_bench_table(frame: Any, batch_size: int) -> None:
    """bench.csv as a table that fits 80 columns: median images/s, the rounds' spread (half the range, in % of the
    median), GFLOP/s and the ratio to the common recipe."""
    from resx.cli_common import Column, console, fitted_table

    columns = [Column("model", justify="left"), Column("method", justify="left"), Column("img/s"),
               Column("spread", drop=3), Column("GFLOP/s", drop=4), Column("% peak", drop=2),
               Column("vs common", "vs rec.", drop=1)]
    common = frame[frame["method"] == "common-recipe"].set_index("model")["images_per_second"]
    rows = []
    for r in frame.itertuples():
        method = r.method.replace("resx-concurrent", "resx x") + (f"{r.concurrency}" if r.concurrency > 1 else "")
        ratio = f"{r.images_per_second / common[r.model]:.2f}x" if r.model in common.index else ""
        rows.append([r.model, method, f"{r.images_per_second:,.0f}",
                     f"±{50 * (r.images_per_second_max - r.images_per_second_min) / r.images_per_second:.0f}%",
                     f"{r.gflops:,.0f}", f"{100 * r.fraction_of_peak:.1f}", ratio])
    console.print(fitted_table(f"training images/s, batch {batch_size}\n{frame['device_name'].iloc[0]}", columns,
                               rows))
    console.print("GFLOP/s: 6 x forward multiply-accumulates per image; % peak: of a large matmul in the method's "
                  "precision on this device.", style="dim")
