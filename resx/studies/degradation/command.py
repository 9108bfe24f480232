"""`resx compare-plain`: the degradation study's command line, and its summary table on the terminal (also shown
by `resx demo`). typer and rich are imported when the CLI builds the command or prints the table."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional


def degradation_command() -> Callable[..., Any]:
    """`resx compare-plain`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import (ConfigOpt, DataDirOpt, DataOpt, DeviceOpt, LogEveryOpt, QuietOpt, RunProgress, SeedOpt,
                                 int_list, user_errors)
    from resx.options import check_numbers

    @user_errors
    def command(
        depths: Annotated[Optional[str], typer.Option(help="Depths of the plain/residual pairs (default 20,32,44,56).")] = None,
        residual_depths: Annotated[Optional[str], typer.Option("--residual-depths", help="Residual-only depths, e.g. 110 (He Fig. 6 shows ResNet-110 without its plain twin). Residual nets of depth 110 and more get He's warm-up: lr 0.01 until training error < 80%.")] = None,
        seeds: Annotated[Optional[int], typer.Option(help="Seeds per model (default 3).")] = None,
        data: DataOpt = None,
        config: ConfigOpt = None,
        epochs: Annotated[Optional[int], typer.Option(help="Train each net for N epochs.")] = None,
        iterations: Annotated[Optional[int], typer.Option(help="Train each net for N iterations (batches).")] = None,
        shortcut: Annotated[Optional[str], typer.Option(help="Residual shortcut: A (identity + zero-pad, same params as plain) or B.")] = None,
        family: Annotated[Optional[str], typer.Option(help="cifar | preact | mlp")] = None,
        out: Annotated[Optional[Path], typer.Option(help="Output folder (default results/degradation).")] = None,
        shard: Annotated[Optional[str], typer.Option(help="Run only slice I of N: I/N, or auto (a SLURM array task: SLURM_ARRAY_TASK_ID, _COUNT, _MIN).")] = None,
        concurrency: Annotated[Optional[int], typer.Option(help="Runs trained at once: on CUDA streams of one GPU (default 4), on a CPU worker processes (default one per core).")] = None,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads of each run (default: the cores shared out evenly).")] = None,
        lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 0.1).")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default 128).")] = None,
        seed: SeedOpt = None,
        device: DeviceOpt = "auto",
        data_dir: DataDirOpt = None,
        quiet: QuietOpt = False,
        log_every: LogEveryOpt = 1,
    ) -> None:
        """Plain vs residual nets across depths: the degradation problem (He et al. 2015, Fig. 6)."""
        from resx.studies.degradation.compare import CompareOptions, compare_plain

        check_numbers(locals())
        options = CompareOptions.resolve(config, dict(
            depths=int_list(depths, "--depths"), residual_depths=int_list(residual_depths, "--residual-depths"),
            seeds=seeds, family=family, out=str(out) if out else None, shard=shard, concurrency=concurrency,
        ), dict(
            data=data, epochs=epochs, iterations=iterations, shortcut=shortcut, lr=lr, batch_size=batch_size, seed=seed,
            device=device if device != "auto" else None, data_dir=str(data_dir) if data_dir else None, threads=threads,
        ))
        check_output_folder(options.out)
        with RunProgress(quiet=quiet, log_every=log_every) as progress:
            result = compare_plain(options, progress=progress, on_status=progress.say, announce=True)
        show_degradation(result)

    return command


def show_degradation(result: Any) -> None:
    """The grid's summary table and verdicts on the console (`resx compare-plain`, `resx demo`)."""
    from resx.cli_common import Column, console, fitted_table

    # narrow terminals keep each net and its final training error (the degradation problem's number)
    columns = [Column("model", justify="left"), Column("depth", drop=3), Column("params", drop=4),
               Column("seeds", drop=5), Column("train err %", "train %"), Column("test err %", "test %", drop=1),
               Column("best test %", "best %", drop=2)]
    console.print(fitted_table("Degradation: final error, mean±std over seeds (plain nets first)", columns, [
        [row.model, row.depth, f"{row.params / 1e6:.2f}M", row.seeds,
         f"{100 * row.final_train_error_mean:.2f}±{100 * row.final_train_error_std:.2f}",
         f"{100 * row.final_test_error_mean:.2f}±{100 * row.final_test_error_std:.2f}",
         f"{100 * row.best_test_error_mean:.2f}"] for row in result.summary.itertuples()]))
    for line in result.verdict:
        console.print(line)
    info = result.info
    if info.get("trained"):
        console.print(f"trained {info['trained']} run(s), skipped {info['skipped']} finished, in {info['wall_seconds']:.1f} s "
                      f"({info['images_per_second']:,.0f} images/s in all, {info.get('concurrency', 1)} at a time)")
    console.print(f"one iteration = one batch of {result.batch_size}; results in [bold]{result.out}[/]: "
                  + ", ".join(p.name for p in result.files))
