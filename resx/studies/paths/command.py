"""`resx paths`: the study's command line. typer and rich are imported when the CLI builds the command."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional


def paths_command() -> Callable[..., Any]:
    """`resx paths`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import (Column, CountingProgress, DataDirOpt, DataOpt, DeviceOpt, ForceOpt, SeedOpt, console,
                                  fitted_table, pct, user_errors)
    from resx.options import check_numbers

    @user_errors
    def command(
        checkpoints: Annotated[Optional[list[Path]], typer.Argument(
            help="Run folders or checkpoint.pt files; the first residual one is analysed, all get block gradients "
                 "(e.g. runs/resnet56 runs/plain56).", show_default=False)] = None,
        model: Annotated[Optional[str], typer.Option("--model", help="Analyse a freshly initialised net of this name instead.")] = None,
        init: Annotated[bool, typer.Option("--init", help="Analyse the checkpoint's model freshly initialised (seeded).")] = False,
        data: DataOpt = None,
        samples: Annotated[int, typer.Option("--samples", help="Measurements per path length k = 0..n.")] = 1000,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per batch: bounds memory (default 500 on CUDA, 128 on CPU).")] = None,
        out: Annotated[Path, typer.Option("--out", help="Folder for the CSVs and paths_info.json.")] = Path("results/paths"),
        no_tf32: Annotated[bool, typer.Option("--no-tf32", help="Strict fp32 on CUDA (default allows TF32).")] = False,
        data_dir: DataDirOpt = None,
        device: DeviceOpt = "auto",
        seed: SeedOpt = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier paths study in --out (by default an unfinished one of the same settings is continued).")] = False,
        force: ForceOpt = False,
    ) -> None:
        """Gradient per path length and per block: which paths of a residual net carry the gradient."""
        from resx.studies.paths.compute import run_paths

        check_numbers(locals())
        check_output_folder(out)

        with CountingProgress(transient=True) as progress:
            result = run_paths(checkpoints or (), model, init=init, data=data, data_dir=data_dir, samples=samples,
                               batch_size=batch_size, seed=seed, device=device, tf32=not no_tf32, out=out, progress=progress,
                               overwrite=overwrite, force=force, resume=not overwrite,
                               say=lambda line: progress.bar.console.print(line, highlight=False))
        info = result.info
        lo, hi = info["window"]
        window = f"{100 * info['window_fraction']:.0f}%"
        columns = [Column("blocks n", "n", drop=3), Column("centre", drop=4), Column(f"{window} gradient window",
                   f"{window} window"), Column("paths in window", "paths in it"), Column("gradient peak k", "peak k", drop=2),
                   Column("seconds", "s", drop=5)]
        console.print(fitted_table(
            f"paths of {info['model']} ({'trained' if info['trained'] else 'at initialisation'}, {info['data']})",
            columns, [[info["blocks"], f"{info['centre']:g}", f"{lo} to {hi}", pct(info["window_paths_fraction"]),
                       info["gradient_peak_k"], f"{info['seconds_path_gradients']:.1f}"]]))
        columns = [Column("run", justify="left"), Column("residual", "res", drop=1), Column("trained", drop=2),
                   Column("first / last", "first/last")]
        console.print(fitted_table("block gradient norm, first block / last block", columns, [
            [entry["run"], "yes" if entry["residual"] else "no", "yes" if entry["trained"] else "no",
             f"{info['first_last_block_gradient_ratio'][entry['run']]:.3g}"] for entry in info["nets"]]))
        console.print(f"[dim]{info['note']}[/]", highlight=False)
        console.print(f"{info['samples']} samples per k, batch {info['batch_size']}; path gradients in "
                      f"{info['seconds_path_gradients']:.1f} s on {info['device_name']}; results in [bold]{out}[/]")

    return command
