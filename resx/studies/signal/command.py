"""`resx signal`: the study's command line. typer and rich are imported when the CLI builds the command, the
computation (torch) when the command runs."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

if TYPE_CHECKING:  # pandas comes with the computation
    import pandas as pd


def signal_command() -> Callable[..., Any]:
    """`resx signal`, built when the CLI asks for it: typer and rich are imported by the command line only."""
    import typer

    from resx.atomic import check_output_folder
    from resx.cli_common import CountingProgress, DataDirOpt, DataOpt, DeviceOpt, ForceOpt, SeedOpt, console, int_list, user_errors
    from resx.options import check_numbers, float_list

    @user_errors
    def command(
        runs: Annotated[Optional[list[Path]], typer.Argument(
            help="Run folders (their checkpoint.pt and every checkpoint saved in checkpoints/) or checkpoint files; "
                 "each run's model and its plain/residual twin are also analysed at initialisation.",
            show_default=False)] = None,
        model: Annotated[Optional[str], typer.Option("--model", help="Analyse freshly initialised nets of this name (and their twins) instead: resnet56, linear_plain, or with --depths a family: resnet, plain, preresnet.")] = None,
        init: Annotated[bool, typer.Option("--init", help="With run folders: only their models at initialisation (seeded), not the trained weights.")] = False,
        depths: Annotated[Optional[str], typer.Option("--depths", help="With --model: depths to analyse, e.g. 20,56 (CIFAR: 6n+2; linear nets: the number of blocks).")] = None,
        scale: Annotated[Optional[str], typer.Option("--scale", help="Linear nets: the scale a of W = a B, one or a comma list (default 0.5,1,1.5).")] = None,
        init_scheme: Annotated[Optional[str], typer.Option("--init-scheme", help="Linear nets: scaled-identity (default), he or orthogonal.")] = None,
        width: Annotated[Optional[int], typer.Option("--width", help="MLPs and linear nets: units per layer.")] = None,
        samples: Annotated[int, typer.Option("--samples", help="Training images (or Gaussian vectors) in the measured batch.")] = 256,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per forward pass: bounds memory, changes no number (default 128 on CPU, 500 on CUDA).")] = None,
        jacobian_examples: Annotated[int, typer.Option("--jacobian-examples", help="Examples whose block Jacobians are estimated (mean over them).")] = 8,
        lanczos_steps: Annotated[int, typer.Option("--lanczos-steps", help="Lanczos steps per Jacobian (each one jvp and one vjp).")] = 20,
        probes: Annotated[int, typer.Option("--probes", help="Random probes per example for ||J - I||_F (Hutchinson).")] = 8,
        data: DataOpt = None,
        data_dir: DataDirOpt = None,
        device: DeviceOpt = "auto",
        seed: SeedOpt = None,
        out: Annotated[Path, typer.Option("--out", help="Folder for the CSVs, signal_info.json and the figures.")] = Path("results/signal"),
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier signal study in --out (by default an unfinished one of the same settings is continued).")] = False,
        force: ForceOpt = False,
    ) -> None:
        """Vanishing/exploding signals per layer, and how near the identity each block's Jacobian is (He et al. 2016 §3)."""
        from resx.studies.signal.compute import run_signal

        check_numbers(locals())
        check_output_folder(out)
        depth_list = int_list(depths, "--depths")
        scales = float_list(scale, "--scale")

        with CountingProgress(transient=True) as progress:
            result = run_signal(runs or (), model, init=init, depths=depth_list, samples=samples, data=data,
                                data_dir=data_dir, device=device, seed=seed, out=out, overwrite=overwrite, force=force,
                                resume=not overwrite,
                                progress=progress, say=lambda line: console.print(line, highlight=False),
                                batch_size=batch_size, jacobian_examples=jacobian_examples,
                                lanczos_steps=lanczos_steps, probes=probes, scale=scales, init_scheme=init_scheme,
                                width=width)
        console.print(_summary_table(result.summary(), result.info))
        if len(result.linear):
            console.print(_linear_table(result.linear))
        console.print("[dim]n: blocks; grad: gradient gain, gradient RMS at the first block's input / at the last block's "
                      "output (above 1: grows towards the input); fwd: forward gain, last block's output RMS / first block's "
                      "input RMS; σmax and ‖J−I‖ (/‖I‖): medians over the blocks of each block Jacobian's (estimates: "
                      "see signal_info.json); stack σ: σmax of the product of the block Jacobians.[/]", highlight=False)
        console.print(f"{result.info['seconds']:.1f} s on {result.info['device_name']}; results in [bold]{result.out}[/]")

    return command


def _summary_table(summary: "pd.DataFrame", info: dict):
    from resx.cli_common import Column, fitted_table
    from resx.studies.signal.draw import number, state

    # narrow terminals keep each net and its gradient gain; the rest goes, least telling first
    columns = [Column("run", justify="left"), Column("net", justify="left", drop=3), Column("n", drop=5),
               Column("grad"), Column("fwd", drop=2), Column("σmax", drop=4), Column("‖J−I‖", drop=1),
               Column("stack σ", drop=6)]
    rows = [[str(r["run"]), f"{'res' if r['residual'] else 'plain'} {state(r)}", number(r.get("blocks")),
             number(r.get("gradient_gain")), number(r.get("forward_gain")), number(r.get("median_sigma_max")),
             number(r.get("median_dist_identity")), number(r.get("whole_sigma_max"))] for _, r in summary.iterrows()]
    return fitted_table(f"signal and block Jacobians ({info['data']}, {info['precision']})", columns, rows)


def _linear_table(linear: "pd.DataFrame"):
    from resx.cli_common import Column, fitted_table
    from resx.studies.signal.draw import max_rel_error, number

    schemes = ", ".join(dict.fromkeys(linear["init_scheme"].astype(str)))
    columns = [Column("net", justify="left"), Column("a"), Column("l", drop=4), Column("exact", drop=3),
               Column("fwd gain", "fwd", drop=1), Column("grad gain", "grad", drop=2),
               Column("stack σmax", "stack σ", drop=5), Column("rel. err", "err")]
    rows = [["residual" if r["residual"] else "plain", f"{r['scale']:g}", str(r["depth"]), number(r["expected"]),
             number(r["forward_gain"]), number(r["gradient_gain"]), number(r["sigma_max"]), f"{max_rel_error(r):.1e}"]
            for _, r in linear.iterrows()]
    return fitted_table(f"deep linear nets ({schemes}): measured against the exact a^l (plain), (1 + a/l)^l "
                        "(residual)", columns, rows)
