"""The training-speed benchmark (`resx bench`): the common recipe (DataLoader + per-sample PIL transforms, eager
fp32) against resx's engine on this machine, with achieved GFLOP/s beside a measured peak. The measurement is
resx.bench; the figure resx.plots.bench; this module declares it. It is no paper's study and has no reproduce stage.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

from resx import reference
from resx.markdown import DASH, figures, heading, markdown_table
from resx.studies.registry import OutputFile, Study, figure_files, lazy, register

BENCH_COLUMNS = (
    "model", "method", "batch_size", "images_per_second", "peak_memory_mb", "concurrency", "device_name", "seconds",
    "images_per_second_min", "images_per_second_max", "rounds", "precision", "threads", "workers",
    "gflop_per_image", "gflops", "peak_gflops", "fraction_of_peak",
)
ROUND_COLUMNS = ("model", "method", "round", "position", "images_per_second", "steps", "seconds")


# --- the command ---------------------------------------------------------------------------------------------------
def bench_command() -> Callable[..., Any]:
    """`resx bench`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import DataDirOpt, DataOpt, DeviceOpt, SeedOpt, console, user_errors
    from resx.options import check_numbers

    @user_errors
    def command(
        models: Annotated[str, typer.Option(help="Models to measure, comma-separated.")] = "resnet20,resnet56,resnet110,plain56",
        batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 128,
        seconds: Annotated[float, typer.Option(help="Timed seconds per model, method and round (after warm-up).")] = 10.0,
        rounds: Annotated[int, typer.Option(help="Interleaved rounds per method; the median is reported.")] = 3,
        concurrency: Annotated[Optional[int], typer.Option(
            help="Runs at once for resx-concurrent (default: 4 on CUDA, one per core on a CPU).")] = None,
        methods: Annotated[str, typer.Option(help="common-recipe,resx-eager-fp32,resx,resx-concurrent")] = "common-recipe,resx-eager-fp32,resx,resx-concurrent",
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
        from resx.bench import BenchSettings, run_bench

        check_numbers(locals())
        check_output_folder(out)
        settings = BenchSettings(models=[m for m in models.split(",") if m], batch_size=batch_size, seconds=seconds,
                                 concurrency=concurrency, methods=tuple(m for m in methods.split(",") if m),
                                 workers=workers, rounds=rounds, threads=threads).validate()
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
    from rich.table import Table

    from resx.cli_common import console

    table = Table(title=f"training images/s, batch {batch_size}\n{frame['device_name'].iloc[0]}")
    for col in ("model", "method", "img/s", "spread", "GFLOP/s", "% peak", "vs common"):
        table.add_column(col, justify="left" if col in ("model", "method") else "right")
    common = frame[frame["method"] == "common-recipe"].set_index("model")["images_per_second"]
    for r in frame.itertuples():
        method = r.method.replace("resx-concurrent", "resx x") + (f"{r.concurrency}" if r.concurrency > 1 else "")
        ratio = f"{r.images_per_second / common[r.model]:.2f}x" if r.model in common.index else ""
        table.add_row(r.model, method, f"{r.images_per_second:,.0f}",
                      f"±{50 * (r.images_per_second_max - r.images_per_second_min) / r.images_per_second:.0f}%",
                      f"{r.gflops:,.0f}",
                      f"{100 * r.fraction_of_peak:.1f}", ratio)
    console.print(table)
    console.print("GFLOP/s: 6 x forward multiply-accumulates per image; % peak: of a large matmul in the method's "
                  "precision on this device.", style="dim")


# --- REPORT.md -----------------------------------------------------------------------------------------------------
def bench_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    import pandas as pd
    from resx.plots import bench as bench_plots

    frame = bench_plots.read_bench(folder)
    if frame is None:
        return []
    lines = [heading(folder, results_dir, "Training speed", several), ""]
    has_memory = "peak_memory_mb" in frame.columns
    agg = frame.groupby(["model", "method", "batch_size"], sort=False).agg(
        images_per_second=("images_per_second", "mean"),
        **({"peak_memory_mb": ("peak_memory_mb", "max")} if has_memory else {}))
    rows = [[m, method, int(b), f"{r['images_per_second']:,.0f}",
             f"{r['peak_memory_mb']:,.0f}" if has_memory and not pd.isna(r["peak_memory_mb"]) else DASH]
            for (m, method, b), r in agg.iterrows()]
    lines += [markdown_table(["model", "method", "batch", "images/s", "peak memory (MB)"], rows, align="llrrr"), ""]
    ref_rows = [[model, *[v for v in methods.values()]]
                for model, methods in reference.BENCH_H100_IMAGES_PER_SECOND.items()]
    lines += ["For comparison, reference runs of the same nets outside resx (one H100, batch 128, images/s):", "",
              markdown_table(["model", *reference.BENCH_H100_METHODS.values()], ref_rows, align="lrrrr"), ""]
    lines += figures(folder, ["bench"], report_dir, {"bench": "Training throughput per model and method"})
    return lines


STUDY = register(Study(
    name="bench",
    title="Training speed",
    outputs=(
        OutputFile("bench.csv", BENCH_COLUMNS, "median images/s per model and method, with min and max"),
        OutputFile("bench_rounds.csv", ROUND_COLUMNS, "every timed round", marks_study=False),
        OutputFile("bench_info.json", about="machine, settings, the common recipe's worker counts tried"),
        *figure_files("bench"),
    ),
    plot=lazy("resx.plots.bench", "plot_bench"),
    report=bench_section,
    command=bench_command,
))
