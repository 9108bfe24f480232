"""The signal study: vanishing and exploding signals, and residual blocks whose Jacobian stays near the identity
(He et al. 2016, "Identity mappings in deep residual networks", §3; deep linear nets, Saxe et al. 2014; Veit et al.
2016 for the other side, `resx paths`). The computation is resx.studies.signal; the figures resx.plots.signal; this
module declares the study. Torch-free at import, typer- and rich-free too: the command is built, and the study
imported, only when the CLI asks for it.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from resx.markdown import DASH, figures, heading, markdown_table
from resx.studies.registry import OutputFile, StageContext, Study, figure_files, lazy, register

# The study's files (users' scripts rely on the CSVs' columns, in this order; extra columns follow them).
LAYER_COLUMNS = ("run", "residual", "trained", "checkpoint", "layer", "kind", "activation_rms", "grad_input_rms",
                 "grad_weight_rms")
JACOBIAN_COLUMNS = ("run", "residual", "trained", "block", "sigma_max", "sigma_min_est", "dist_identity")
FIGURES = ("signal_layers", "signal_blocks", "block_jacobians")
INFO_NAME = "signal_info.json"

if TYPE_CHECKING:  # pandas is imported inside the functions that need it
    import pandas as pd

# A gradient that changes by more than this factor across the blocks "vanishes" or "explodes"; a block whose
# ||J - I||_F / ||I||_F is below NEAR_IDENTITY is "near the identity". Thresholds of this report, not of a paper.
VANISH_FACTOR = 10.0
NEAR_IDENTITY = 0.5



# --- the command ---------------------------------------------------------------------------------------------------
def _g(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return DASH
    return DASH if math.isnan(value) else f"{value:.3g}"


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
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier signal study in --out.")] = False,
        force: ForceOpt = False,
    ) -> None:
        """Vanishing/exploding signals per layer, and how near the identity each block's Jacobian is (He et al. 2016 §3)."""
        from resx.studies.signal import run_signal

        check_numbers(locals())
        check_output_folder(out)
        depth_list = int_list(depths, "--depths")
        scales = float_list(scale, "--scale")

        with CountingProgress(transient=True) as progress:
            result = run_signal(runs or (), model, init=init, depths=depth_list, samples=samples, data=data,
                                data_dir=data_dir, device=device, seed=seed, out=out, overwrite=overwrite, force=force,
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
    from rich.table import Table

    table = Table(title=f"signal and block Jacobians ({info['data']}, {info['precision']})")
    columns = ("run", "net", "n", "grad", "fwd", "σmax", "‖J−I‖", "stack σ")
    for col in columns:
        table.add_column(col, justify="left" if col in ("run", "net") else "right", no_wrap=col not in ("run", "net"),
                         overflow="fold", min_width={"run": 9, "net": 5}.get(col))
    for _, r in summary.iterrows():
        table.add_row(str(r["run"]), f"{'res' if r['residual'] else 'plain'} {_state(r)}", _g(r.get("blocks")),
                      _g(r.get("gradient_gain")), _g(r.get("forward_gain")), _g(r.get("median_sigma_max")),
                      _g(r.get("median_dist_identity")), _g(r.get("whole_sigma_max")))
    return table


def _linear_table(linear: "pd.DataFrame"):
    from rich.table import Table

    schemes = ", ".join(dict.fromkeys(linear["init_scheme"].astype(str)))
    table = Table(title=f"deep linear nets ({schemes}): measured against the exact a^l (plain), (1 + a/l)^l (residual)")
    for col in ("net", "a", "l", "exact", "fwd gain", "grad gain", "stack σmax", "rel. err"):
        table.add_column(col, justify="left" if col == "net" else "right", no_wrap=True)
    for _, r in linear.iterrows():
        table.add_row("residual" if r["residual"] else "plain", f"{r['scale']:g}", str(r["depth"]), _g(r["expected"]),
                      _g(r["forward_gain"]), _g(r["gradient_gain"]), _g(r["sigma_max"]), f"{_max_error(r):.1e}")
    return table


def _max_error(row) -> float:
    import pandas as pd

    errors = [row.get(k) for k in ("rel_error_forward", "rel_error_gradient", "rel_error_sigma_max")]
    errors = [float(e) for e in errors if e is not None and not pd.isna(e)]
    return max(errors) if errors else float("nan")


def _state(row) -> str:
    import pandas as pd

    if not row["trained"]:
        return "init"
    if row.get("final", True):
        return "trained"
    epoch = row.get("epoch")
    return f"epoch {int(epoch)}" if epoch is not None and not pd.isna(epoch) else str(row["checkpoint"])


# --- REPORT.md -----------------------------------------------------------------------------------------------------
def _pairs(summary: "pd.DataFrame") -> "list[tuple[str, pd.Series, pd.Series]]":
    """(description, plain row, residual row) for every twin pair in one state (final checkpoints and fresh nets)."""
    final = summary[summary["final"]] if "final" in summary.columns else summary
    from resx.plots.signal import twin_groups

    final = final.assign(_group=twin_groups(final))
    pairs = []
    for (group, trained), part in final.groupby(["_group", "trained"], sort=False):
        plain, res = part[~part["residual"]], part[part["residual"]]
        if len(plain) and len(res):
            pairs.append(("trained" if trained else "at initialisation", plain.iloc[0], res.iloc[0]))
    return pairs


def _gain_words(gain: float) -> str:
    import pandas as pd

    if gain is None or pd.isna(gain):
        return "not measured"
    if gain > VANISH_FACTOR:
        return f"grows {gain:.3g}x towards the input (explodes)"
    if gain < 1 / VANISH_FACTOR:
        return f"shrinks to {gain:.3g} of its size towards the input (vanishes)"
    return f"changes by {gain:.3g}x, within a factor {VANISH_FACTOR:g} (neither vanishes nor explodes)"


def _comparison(plain_gain, residual_gain) -> str:
    """How much less (or more) the shortcuts let the gradient change across the blocks, on a log scale."""
    try:
        p, r = abs(math.log(float(plain_gain))), abs(math.log(float(residual_gain)))
    except (TypeError, ValueError):
        return ""
    if math.isnan(p) or math.isnan(r) or max(p, r) < math.log(2):
        return ""
    return " (the shortcuts make the change smaller)" if r < p else " (the shortcuts do NOT make the change smaller)"


def verdicts(summary: "pd.DataFrame", post_activation: set[str]) -> list[str]:
    """Plain sentences: do the plain nets' gradients vanish or explode across their blocks, and are the residual
    blocks' Jacobians near the identity (median distance below NEAR_IDENTITY)?"""
    import pandas as pd

    lines, vanish, near, judged = [], 0, 0, 0
    healthy_plain: list[str] = []  # plain nets whose gradient neither vanishes nor explodes
    far_residual: list[str] = []  # residual nets whose blocks are not near the identity
    for state, plain, res in _pairs(summary):
        judged += 1
        p_gain, r_gain = plain.get("gradient_gain"), res.get("gradient_gain")
        p_bad = p_gain is not None and not pd.isna(p_gain) and not (1 / VANISH_FACTOR <= p_gain <= VANISH_FACTOR)
        vanish += p_bad
        p_dist, r_dist = plain.get("median_dist_identity"), res.get("median_dist_identity")
        r_near = r_dist is not None and not pd.isna(r_dist) and r_dist < NEAR_IDENTITY
        near += r_near
        if not p_bad:
            healthy_plain.append(str(plain["run"]))
        if not r_near:
            far_residual.append(str(res["run"]))
        lines.append(
            f"- {plain['run']} vs {res['run']} ({state}): without shortcuts the gradient {_gain_words(p_gain)}; with "
            f"them it {_gain_words(r_gain)}{_comparison(p_gain, r_gain)}. Median ||J - I||_F / ||I||_F per block: {_g(p_dist)} plain, {_g(r_dist)} "
            f"residual: the residual blocks are {'' if r_near else 'NOT '}near the identity"
            + (" (a ReLU after the addition: J = D(I + dF/dx), the mask D keeps it away from I)"
               if not r_near and res["run"] in post_activation else "") + ".")
    if judged:
        lines.append(
            f"- **What the classic arguments claim** (Bengio, Simard, Frasconi 1994; He et al. 2016, §3: plain nets' gradients vanish or explode with depth; residual blocks' "
            f"Jacobians stay near the identity): the plain gradient vanishes or explodes in {vanish} of {judged} "
            f"pairs, and the residual blocks are near the identity in {near} of {judged}. "
            + ("The measurement shows both claims." if vanish == near == judged else
               "The measurement does not show both claims everywhere."
               + (f" Plain gradients that neither vanish nor explode: {', '.join(healthy_plain)}"
                  + (" (He et al. 2015, §4.1, saw the same: with BatchNorm, plain nets' gradients keep healthy norms; "
                     "the trouble of deep plain nets is optimisation, not vanishing gradients)"
                     if any(not run.startswith("linear") for run in healthy_plain) else "")
                  + "." if healthy_plain else "")
               + (f" Residual blocks not near the identity: {', '.join(far_residual)}." if far_residual else "")))
        lines.append(f"  (Thresholds of this report: a factor {VANISH_FACTOR:g} across the blocks; a distance "
                     f"below {NEAR_IDENTITY:g}.)")
    return lines


def _linear_lines(info: dict) -> list[str]:
    import pandas as pd

    linear = pd.DataFrame(info.get("linear") or [])
    if linear.empty:
        return []
    rows = [[r["run"], f"{r['scale']:g}", r["depth"], r["init_scheme"], _g(r.get("expected")),
             _g(r["forward_gain"]), _g(r["gradient_gain"]), _g(r.get("sigma_max")), _g(_max_error(r))]
            for _, r in linear.iterrows()]
    lines = ["**Deep linear nets** (resx/models/linear.py: W = aB in the plain net, a branch of (a/l)B in the "
             "residual one; float64): the factor by which the blocks scale the signal (forward: last block's output "
             "RMS / first block's input RMS) and the gradient (first block's input / last block's output), against "
             "the exact a^l and (1 + a/l)^l:", "",
             markdown_table(["net", "a", "l", "init", "exact", "forward", "gradient", "stack σmax", "max rel. error"],
                            rows, align="lrrlrrrrr"), ""]
    exact = linear[linear["expected"].notna()] if "expected" in linear.columns else linear.iloc[0:0]
    if len(exact):
        worst = max(_max_error(r) for _, r in exact.iterrows())
        lines += [f"Measured and exact agree to {worst:.2g} relative at worst"
                  + (": a^l exactly, as a product of l layers predicts." if worst < 1e-6 else ": NOT to float precision.") , ""]
    return lines


def signal_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.plots import signal as signal_plots

    layers = signal_plots.read_layers(folder)
    jacobians = signal_plots.read_jacobians(folder)
    if layers is None and jacobians is None:
        return []
    info = signal_plots.read_info(folder)
    summary = signal_plots.summarise(layers, jacobians, info)
    lines = [heading(folder, results_dir, STUDY.title, several), ""]
    if info:
        lines += [f"{info.get('batch', '')}; loss: {info.get('loss', 'mean cross-entropy')}; BatchNorm in "
                  f"{info.get('batchnorm', 'eval mode')}; {info.get('precision', 'fp32')}. Block Jacobians on "
                  f"{info.get('jacobian_examples', '?')} examples, {info.get('lanczos_steps', '?')} Lanczos steps: "
                  f"{info.get('jacobian', '')}. Stack: {info.get('whole_net_map', '')}.", ""]
    if not summary.empty:
        rows = [[r["run"], "residual" if r["residual"] else "plain", _state(r), _g(r.get("blocks")),
                 _g(r.get("gradient_gain")), _g(r.get("forward_gain")), _g(r.get("median_sigma_max")),
                 _g(r.get("median_dist_identity")), _g(r.get("whole_sigma_max"))] for _, r in summary.iterrows()]
        lines += ["Gradient gain: gradient RMS at the first block's input over that at the last block's output "
                  "(above 1 it grows towards the input, below 1 it vanishes).", "",
                  markdown_table(["run", "shortcut", "state", "blocks", "gradient gain", "forward gain",
                                  "median σmax", "median ‖J−I‖/‖I‖", "stack σmax"], rows, align="lllrrrrrr"), ""]
        post = {w["run"] for w in info.get("whole_net", []) if w.get("post_activation")}
        lines += verdicts(summary, post) + [""]
    lines += _linear_lines(info)
    lines += figures(folder, list(FIGURES), report_dir, {
        "signal_layers": "Activation and gradient RMS per weighted layer: plain vs residual, at init (dashed) and trained",
        "signal_blocks": "RMS of each block's output and of the gradient at its input",
        "block_jacobians": "Per block: largest singular value, smallest (estimate), distance from the identity",
    })
    return lines


# --- the reproduce stage -------------------------------------------------------------------------------------------
@dataclass
class SignalSettings:
    """The `signal:` section of a reproduce profile."""

    samples: int = 256
    batch_size: int | None = None
    jacobian_examples: int = 8
    lanczos_steps: int = 20
    probes: int = 8
    # also the deep linear nets whose signal scales as a^l, into signal/linear: seconds on any CPU
    linear: bool = True
    linear_depth: int = 50
    linear_scales: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5])


def signal_stage(ctx: StageContext) -> None:
    """The grid's trained twins (reproduce.twin_models, those trained) with their twins at initialisation, into
    out/signal; the deep linear nets into out/signal/linear. Trains nothing."""
    from resx.studies.signal import run_signal

    settings: SignalSettings = ctx.settings or SignalSettings()
    common = dict(samples=settings.samples, batch_size=settings.batch_size,
                  jacobian_examples=settings.jacobian_examples, lanczos_steps=settings.lanczos_steps,
                  probes=settings.probes, device=ctx.device, seed=ctx.train.seed, overwrite=True, say=ctx.say)
    runs = [run for run in (ctx.grid_run(m) for m in dict.fromkeys(ctx.reproduce.twin_models)) if run.exists()]
    out = ctx.study_out("signal")
    if runs:
        run_signal(runs, data=ctx.train.data, data_dir=ctx.train.data_dir, out=out, **common)
    elif ctx.reproduce.twin_models:
        ctx.say(f"signal: no trained run of {', '.join(ctx.reproduce.twin_models)}; their models at initialisation")
        run_signal(model=ctx.reproduce.twin_models[0], data=ctx.train.data, data_dir=ctx.train.data_dir, out=out,
                   **common)
    if settings.linear:
        run_signal(model="linear_plain", depths=[settings.linear_depth], scale=settings.linear_scales,
                   out=out / "linear", **common)


STUDY = register(Study(
    name="signal",
    title="Signal propagation and block Jacobians",
    outputs=(
        OutputFile("signal_layers.csv", LAYER_COLUMNS, "per weighted layer and block: activation and gradient RMS"),
        OutputFile("block_jacobians.csv", JACOBIAN_COLUMNS, "per block: Jacobian singular values, distance from I"),
        OutputFile(INFO_NAME, about="settings, device, precision, timings, whole-stack sigma_max, linear nets vs a^l"),
        *figure_files(*FIGURES),
    ),
    plot=lazy("resx.plots.signal", "plot_signal"),
    report=signal_section,
    command=signal_command,
    command_name="signal",
    settings=SignalSettings,
    stage=signal_stage,
    stage_order=60,
))
