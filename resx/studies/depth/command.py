"""`resx depth`: the study's command line. typer and rich are imported when the CLI builds the command, the
computation (torch) when the command runs."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

from resx.studies.depth.declare import (DEFAULT_DEPTHS, DEFAULT_K, DEFAULT_LR, DEFAULT_PARAMS, DEFAULT_SEEDS,
                                        DEFAULT_STEPS, DEFAULT_TRAIN_FRACTION)


def depth_command() -> Callable[..., Any]:
    """`resx depth`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import CountingProgress, DeviceOpt, SeedOpt, console, user_errors
    from resx.options import check_numbers

    @user_errors
    def command(
        target: Annotated[str, typer.Option("--target", help="sawtooth (Telgarsky's m^k on [0, 1]) or parity (of n bits).")] = "sawtooth",
        k: Annotated[Optional[str], typer.Option("--k", help=f"sawtooth: k, the compositions of the tent map (2^k pieces); parity: n, the number of bits. A range 1..8, a list 2,4,6 or a mix (default {DEFAULT_K['sawtooth']} for the sawtooth, {DEFAULT_K['parity']} for parity).")] = None,
        params: Annotated[str, typer.Option("--params", help="Parameter budgets; each net gets the width whose parameter count is nearest.")] = DEFAULT_PARAMS,
        depths: Annotated[str, typer.Option("--depths", help="Depths (ReLU layers) of the trained nets: depth 1 is the shallow net; residual nets at each depth above 1.")] = DEFAULT_DEPTHS,
        seeds: Annotated[int, typer.Option("--seeds", help="Seeds per net (--seed, --seed + 1, ...), trained side by side.")] = DEFAULT_SEEDS,
        steps: Annotated[int, typer.Option("--steps", help="Full-batch Adam steps per net.")] = DEFAULT_STEPS,
        lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate (cosine-annealed to 0).")] = DEFAULT_LR,
        train_fraction: Annotated[float, typer.Option("--train-fraction", help="Parity: the fraction of the 2^n inputs trained on (a seeded split per seed, tested on the rest); 1: train and test on all of them.")] = DEFAULT_TRAIN_FRACTION,
        threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default 1: the nets are tiny).")] = None,
        device: DeviceOpt = "auto",
        seed: SeedOpt = None,
        out: Annotated[Path, typer.Option("--out", help="Folder for depth_*.csv, depth_info.json and the figures (both targets may share it).")] = Path("results/depth"),
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier depth study in --out, both targets (else it is resumed when its settings match).")] = False,
    ) -> None:
        """Depth separation: Telgarsky's sawtooth built exactly and trained, and parity, deep against shallow nets at
        matched parameter counts (Telgarsky 2016; Håstad 1986; Bengio 2009). Resumable: rerun the same command."""
        from resx.studies.depth.compute import run_depth

        check_numbers(locals())
        check_output_folder(out)
        with CountingProgress(transient=True) as progress:
            result = run_depth(target, k=k, params=params, seeds=seeds, depths=depths, steps=steps, lr=lr,
                               train_fraction=train_fraction, seed=seed, device=device, out=out, overwrite=overwrite,
                               progress=progress, say=lambda line: console.print(line, highlight=False),
                               threads=threads)
        _show(result, target)

    return command


def _show(result: Any, target: str) -> None:
    from resx.cli_common import Column, console, fitted_table
    from resx.studies.depth import draw, summary
    from resx.studies.depth.declare import FOUND_RELATIVE_MSE, PARITY_SOLVED_ERROR

    built = summary.constructed(draw.read_pieces(result.out)) if target == "sawtooth" else None
    if built is not None and len(built):
        console.print(f"constructed sawtooth nets (2 units x k layers): {int(built['matches'].sum())} of "
                      f"{len(built)} have exactly 2^k pieces (k = {built['k'].min()}..{built['k'].max()})")
    fit = draw.read_fit(result.out)
    nets = summary.per_net(fit[fit["target"] == target]) if fit is not None else None
    if nets is not None and len(nets):
        what = "k" if target == "sawtooth" else "n"
        columns = [Column("net", justify="left"), Column("budget", drop=2), Column("params", drop=1),
                   Column("found"), Column(f"largest {what}", f"max {what}", drop=3)]
        console.print(fitted_table(f"depth: {target}, nets that found it (over {what} and seeds)", columns, [
            [r.label, r.budget, r.params, f"{r.found}/{r.nets}", r.largest or "-"] for r in nets.itertuples()]))
        rule = (f"test MSE <= {FOUND_RELATIVE_MSE:g} x Var(target)" if target == "sawtooth"
                else f"test error <= {100 * PARITY_SOLVED_ERROR:g}%")
        console.print(f"[dim]found: {rule}; largest {what}: the largest {what} found by most seeds, every smaller "
                      f"one too.[/]", highlight=False)
    console.print(f"{result.trained} nets trained, {result.skipped} done before; "
                  f"{result.info.get('seconds', 0):.1f} s in all on {result.info.get('device_name', '?')}; results "
                  f"in [bold]{result.out}[/]")
