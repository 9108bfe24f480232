"""`resx variants`: the study's command line, and its summary table on the terminal. typer and rich are imported
when the CLI builds the command, the computation (torch) when it runs."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

from resx.studies.variants.declare import DEFAULT_BLOCKS, DEFAULT_SHORTCUTS


def variants_command() -> Callable[..., Any]:
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import (ConfigOpt, DataDirOpt, DataOpt, DeviceOpt, LogEveryOpt, QuietOpt, RunProgress, SeedOpt,
                                 user_errors)
    from resx.options import check_numbers

    @user_errors
    def command(
        base: Annotated[Optional[str], typer.Option("--base", help="The residual net whose block is varied (the paper: resnet110; also resnet20, mlp_res, ...).")] = None,
        shortcuts: Annotated[Optional[str], typer.Option("--shortcuts", help=f"Shortcut variants, comma list ('' for none; default {DEFAULT_SHORTCUTS}); `resx models` lists them.")] = None,
        blocks: Annotated[Optional[str], typer.Option("--blocks", help=f"Activation placements, comma list ('' for none; default {DEFAULT_BLOCKS}).")] = None,
        cardinalities: Annotated[Optional[str], typer.Option("--cardinalities", help="ResNeXts of --budget-of's parameter count with these numbers of groups, e.g. 1,2,4,8 (Xie et al. 2017, Table 3).")] = None,
        budget_of: Annotated[Optional[str], typer.Option("--budget-of", help="The model whose parameter count the --cardinalities nets match (default: --base).")] = None,
        seeds: Annotated[Optional[int], typer.Option(help="Seeds per variant (default 1; the paper: median of 5).")] = None,
        data: DataOpt = None,
        config: ConfigOpt = None,
        epochs: Annotated[Optional[int], typer.Option(help="Train each net for N epochs.")] = None,
        iterations: Annotated[Optional[int], typer.Option(help="Train each net for N iterations (batches; default 64,000).")] = None,
        depth: Annotated[Optional[int], typer.Option(help="Depth of an MLP base (mlp_res).")] = None,
        width: Annotated[Optional[int], typer.Option(help="Width of an MLP base (mlp_res).")] = None,
        out: Annotated[Optional[Path], typer.Option(help="Output folder (default results/variants).")] = None,
        shard: Annotated[Optional[str], typer.Option(help="Run only slice I of N: I/N, or auto (a SLURM array task).")] = None,
        concurrency: Annotated[Optional[int], typer.Option(help="Runs trained at once: on CUDA streams of one GPU (default 4), on a CPU worker processes (default one per core).")] = None,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads of each run (default: the cores shared out evenly).")] = None,
        lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 0.1).")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default 128).")] = None,
        gains_batch: Annotated[Optional[int], typer.Option("--gains-batch", help="Training images for the gains at initialisation (0: skip them; default 128).")] = None,
        seed: SeedOpt = None,
        device: DeviceOpt = "auto",
        data_dir: DataDirOpt = None,
        quiet: QuietOpt = False,
        log_every: LogEveryOpt = 1,
    ) -> None:
        """Shortcut and activation variants of the residual block side by side, with the paper's numbers (He et al. 2016, Tables 1 and 2)."""
        from resx.studies.variants.compute import VariantsOptions, run_variants

        check_numbers(locals())
        options = VariantsOptions.resolve(config, dict(
            base=base, shortcuts=shortcuts, blocks=blocks, cardinalities=cardinalities, budget_of=budget_of, seeds=seeds, out=str(out) if out else None, shard=shard,
            concurrency=concurrency, gains_batch=gains_batch,
        ), dict(
            data=data, epochs=epochs, iterations=iterations, depth=depth, width=width, lr=lr, batch_size=batch_size,
            seed=seed, device=device if device != "auto" else None, data_dir=str(data_dir) if data_dir else None,
            threads=threads,
        ))
        check_output_folder(options.out)
        with RunProgress(quiet=quiet, log_every=log_every) as progress:
            result = run_variants(options, progress=progress, on_status=progress.say)
        show_variants(result)

    return command


def show_variants(result: Any) -> None:
    from resx.cli_common import Column, console, fitted_table

    def pm(mean, std):
        return "-" if mean != mean or mean is None else f"{100 * mean:.2f}±{100 * (std if std == std else 0):.2f}"

    columns = [Column("variant", justify="left"), Column("kind", justify="left", drop=3), Column("train", drop=2),
               Column("test"), Column("failed", drop=1), Column("paper", drop=4)]
    rows = []
    for row in result.summary.itertuples():
        paper = row.paper_result if isinstance(row.paper_result, str) and row.paper_result else "-"
        rows.append([row.variant, row.kind, pm(row.final_train_error_mean, row.final_train_error_std),
                     pm(row.final_test_error_mean, row.final_test_error_std), row.failed_runs, paper])
    console.print(fitted_table("Variants: final error %, mean±std over seeds", columns, rows))
    groups = result.summary[result.summary["kind"] == "cardinality"]
    for row in groups.itertuples():  # the matched budget, printed (Xie et al. compare at preserved complexity)
        macs = f", {row.macs / 1e6:.1f}M multiply-accumulates" if row.macs == row.macs and row.macs else ""
        console.print(f"C={row.variant}: {row.model}, {int(row.params):,} parameters{macs}", highlight=False)
    console.print(f"results in [bold]{result.out}[/]: " + ", ".join(p.name for p in result.files if p.exists()))
