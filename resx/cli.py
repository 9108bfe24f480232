"""The `resx` command line: a thin Typer layer over the library.

Each command parses options, calls one library function, and shows progress and results with rich. Library
code below this module never imports typer or rich; it takes a progress callback. torch is imported only inside
the commands that compute, so `resx --help` and `resx plot` start fast.
A user mistake (ResxError) is printed as one line `error: ...` with exit code 1, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.markup import escape
from rich.table import Table

from resx.atomic import check_output_file, check_output_folder
from resx.errors import ResxError
from resx.cli_common import (
    Column, ConfigOpt, DataDirOpt, DataOpt, DeviceOpt, LogEveryOpt, QuietOpt, RunProgress, SeedOpt, console,
    err_console, fitted_table, pct, user_errors,
)
from resx.options import check_numbers, float_list
from resx.studies.degradation.command import show_degradation

app = typer.Typer(
    name="resx",
    help="Reproduce the classic experiments on why residual networks work (He et al. 2015, Veit et al. 2016).",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _plain_help_types() -> None:
    """Typer 0.2x shows each option's type as `<bool>`, `<str>`, `<int>`: a flag gets none here, the others the
    usual word (TEXT, INTEGER, FLOAT, PATH). Skipped quietly where Typer's internals differ."""
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover
        return
    words = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}

    def plain(original: Callable) -> Callable:
        def display_type_rich(self: Any, ctx: Any) -> str | None:
            if getattr(self, "metavar", None) is None and getattr(self, "is_flag", False):
                return None
            shown = original(self, ctx)
            if isinstance(shown, str) and shown.startswith("<") and ">" in shown:
                inner, rest = shown[1:].split(">", 1)
                shown = words.get(inner, inner.upper()) + rest
            return shown

        return display_type_rich

    for cls in (TyperOption, TyperArgument):
        if hasattr(cls, "display_type_rich"):
            cls.display_type_rich = plain(cls.display_type_rich)


_plain_help_types()


@app.callback(invoke_without_command=True)
def main_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print resx's version and exit.", is_eager=True)] = False,
) -> None:
    """`resx` alone shows the help (exit 0); `resx --version` the version."""
    if version:
        from resx import __version__

        console.print(f"resx {__version__}", highlight=False)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help(), highlight=False)
        raise typer.Exit(0)

# --- commands ------------------------------------------------------------------------------------------------
@app.command("models")
@user_errors
def models_command() -> None:
    """List the registered models with their parameter counts (CIFAR-10 shapes)."""
    import torch

    from resx.models import create_model, get_model_spec, list_models

    from rich import box

    wide = console.width >= 120  # below: no family column (the name says it) and light borders, to fit 80 columns
    table = Table(title="resx model zoo", box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD)
    names = list_models()
    for col in ("name", "family", "residual", "blocks", "params", "description"):
        if col == "family" and not wide:
            continue
        narrow_description = col == "description" and not wide  # one line per model, cut to what fits
        table.add_column(col, justify="right" if col in ("blocks", "params") else "left",
                         no_wrap=col != "description" or not wide, overflow="ellipsis",
                         max_width=max(20, console.width - 48) if narrow_description else None,
                         # a name and a header are never cut: the description gives way
                         min_width=max(map(len, names)) if col == "name" else (len(col) if col != "description" else None))
    for name in names:
        spec = get_model_spec(name)
        options = {"input_size": 32} if spec.family == "imagenet" else {}
        if spec.family == "mlp":
            options = {"in_channels": 1, "input_size": 28}
        with torch.device("meta"):  # parameter shapes only: no memory, no initialisation time
            net = create_model(name, **options)
        # DenseNet's layers concatenate (y = concat(x, H(x))): resx builds them as blocks with an identity path so that
        # lesion can delete one, but the net is not a residual net
        kind = "dense" if spec.family == "densenet" else ("yes" if spec.residual else "no")
        table.add_row(name, *([spec.family] if wide else []), kind, str(len(net.blocks)),
                      f"{net.num_parameters() / 1e6:.2f}M", spec.description)
    console.print(table)
    console.print("CIFAR names take any 6n+2 depth too (resnet8, plain14, ...); MLPs take --depth and --width; "
                  "resnextN_CxDd (9n+2 layers, C groups of width D, e.g. resnext29_4x16d), densenetL (3n+4) and "
                  "densenet_bcL (6n+4) build those nets at any size.", highlight=False)
    show_variants()


def show_variants() -> None:
    """The shortcut and block variants (He et al. 2016, Tables 1 and 2), one line each."""
    from resx.models.variants import BLOCK_FORMS, SHORTCUT_FORMS

    for title, forms in (("--shortcut (residual nets; He et al. 2016, Table 1, ResNet-110 CIFAR-10 test error)",
                          SHORTCUT_FORMS),
                         ("--block (CIFAR basic-block nets and MLPs; He et al. 2016, Table 2 / Fig. 4)", BLOCK_FORMS)):
        console.print(f"\n{title}:", highlight=False)
        grid = Table.grid(padding=(0, 2))  # the form whole, its description wrapped to what the terminal has left
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for form, what in forms:
            grid.add_row(f"  {escape(form)}", escape(what))
        console.print(grid, highlight=False)
    console.print("\nOptions also go in the name: NAME:key=value[,key=value], e.g. "
                  "resnet20:shortcut=scale-0.5,block=full-preact", highlight=False)


@app.command("train")
@user_errors
def train_command(
    model: Annotated[str, typer.Argument(help="Model name (see `resx models`).")],
    data: DataOpt = None,
    config: ConfigOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Train for N epochs.")] = None,
    iterations: Annotated[Optional[int], typer.Option(help="Train for N iterations (one iteration = one batch).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 0.1).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default 128).")] = None,
    momentum: Annotated[Optional[float], typer.Option(help="SGD momentum (default 0.9).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="Weight decay (default 1e-4).")] = None,
    lr_milestones: Annotated[Optional[str], typer.Option("--lr-milestones", help="Fractions of training where lr is divided by 10 (default 0.5,0.75).")] = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="No crop and flip (default: the dataset's recipe).")] = False,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/MODEL-seedN).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --out.")] = False,
    shortcut: Annotated[Optional[str], typer.Option(help="A (identity + zero-pad), B (projection), or a variant of "
                                                         "He et al. 2016: identity, scale-L, frozen-gate-L, exclusive-gate[-bN], "
                                                         "shortcut-gate[-bN], conv1x1, dropout-P (see `resx models`).")] = None,
    block: Annotated[Optional[str], typer.Option(help="Where BN and ReLU sit (He et al. 2016, Fig. 4): original, bn-after-add, "
                                                      "relu-before-add, relu-only-preact, full-preact.")] = None,
    stochastic_depth: Annotated[Optional[float], typer.Option("--stochastic-depth", help="Survival probability p_L of the last block (Huang et al.: 0.5).")] = None,
    warmup_lr: Annotated[Optional[float], typer.Option("--warmup-lr", help="lr until training error < 80% (He et al.: 0.01 for ResNet-110).")] = None,
    depth: Annotated[Optional[int], typer.Option(help="MLP depth (2 * blocks + 2).")] = None,
    width: Annotated[Optional[int], typer.Option(help="MLP width.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="auto | fp32 | bf16 (auto: bf16 where the GPU or CPU computes it natively).")] = None,
    no_graph: Annotated[bool, typer.Option("--no-graph", help="Eager steps instead of a CUDA graph.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: one per core).")] = None,
    curve_every: Annotated[Optional[int], typer.Option("--curve-every", help="iterations.csv: a row every N iterations (default 10).")] = None,
    curve_window: Annotated[Optional[int], typer.Option("--curve-window", help="iterations.csv: training error over the last N batches (default 100).")] = None,
    zero_init_residual: Annotated[bool, typer.Option("--zero-init-residual", help="Residual branches start at zero (Goyal et al. 2017); residual nets only.")] = False,
    save_every: Annotated[Optional[int], typer.Option("--save-every", help="Also keep every N-th epoch's checkpoint, as checkpoints/epoch-NNN.pt in the run folder (for studies along training).")] = None,
    quiet: QuietOpt = False,
    log_every: LogEveryOpt = 1,
) -> None:
    """Train one model on one dataset: metrics.csv, iterations.csv, checkpoint.pt, config.yaml, run_info.json."""
    from resx.config import resolve_config
    from resx.engine import train

    check_numbers(locals())
    if resume and overwrite:
        raise ResxError("--resume and --overwrite exclude each other")
    cfg = resolve_config(config, dict(
        model=model, data=data, epochs=epochs, iterations=iterations, lr=lr, batch_size=batch_size, seed=seed,
        device=device if device != "auto" else None, data_dir=str(data_dir) if data_dir else None, shortcut=shortcut, block=block,
        stochastic_depth=stochastic_depth, warmup_lr=warmup_lr, depth=depth, width=width, precision=precision,
        graph=False if no_graph else None, momentum=momentum, weight_decay=weight_decay,
        lr_milestones=float_list(lr_milestones, "--lr-milestones"), augment=False if no_augment else None,
        threads=threads, curve_every=curve_every, curve_window=curve_window,
        zero_init_residual=True if zero_init_residual else None, save_every=save_every,
    ))
    run_dir = check_output_folder(out or Path("runs") / f"{cfg.model}-seed{cfg.seed}")
    with RunProgress(quiet=quiet, log_every=log_every) as progress:
        run = train(cfg, run_dir, resume="require" if resume else "never", overwrite=overwrite, progress=progress)
    show_run_summary(run)


def show_run_summary(run: Any) -> None:
    if not run.metrics:
        return
    if run.history and (run.history[-1].get("iterations_at_start") or 0) >= run.total_iterations:
        from resx.text import count

        # resumed a run that had already finished: no images were trained now, so no speed to show
        console.print(f"{run.run_dir}: already finished ({count(run.epoch, 'epoch')}, "
                      f"{count(run.host_iteration, 'iteration')}); nothing to train. Its results: metrics.csv")
        return
    last = run.metrics[-1]
    best = min(m["test_error"] for m in run.metrics)
    columns = [Column("epochs", "ep", drop=4), Column("iterations", "iters", drop=5), Column("train err", "train"),
               Column("test err", "test"), Column("best test", "best", drop=3), Column("img/s", drop=2)]
    console.print(fitted_table(f"{run.config.model} on {run.config.data} (seed {run.config.seed})", columns, [[
        last["epoch"], f"{last['iteration']:,}", pct(last["train_error"]), pct(last["test_error"]), pct(best),
        f"{last['images_per_second']:,.0f}"]]))
    console.print(f"on {run.env.get('device_name', '')}; one iteration = one batch of {run.config.batch_size}; "
                  f"results in [bold]{run.run_dir}[/]")


# --- demo -------------------------------------------------------------------------------------------------------
@app.command("demo")
@user_errors
def demo_command(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo-output"),
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    quiet: QuietOpt = False,
    log_every: LogEveryOpt = 1,
) -> None:
    """The degradation problem in minutes on a CPU: plain vs residual MLPs of 6 and 50 layers."""
    from resx.studies.demo import run_demo

    check_numbers(locals())
    check_output_folder(out)
    with RunProgress(quiet=quiet, log_every=log_every) as progress:
        result = run_demo(out, data=data, data_dir=str(data_dir) if data_dir else None, device=device,
                          seed=seed or 0, progress=progress, say=progress.say)
    show_degradation(result)


# --- the studies: each declares its own command (resx/studies/<name>/command.py) ----------------------------------
def add_study_commands() -> None:
    """Add every registered study's command not on the app yet (called at import; again after a late registration)."""
    from resx.studies.registry import registered

    taken = {c.name for c in app.registered_commands}
    for study in registered():
        name = study.command_name or study.name
        if study.command is not None and name not in taken:
            app.command(name)(study.command())
            taken.add(name)


add_study_commands()


# --- plot and report (CSV only: these never import torch) ----------------------------------------------------------
@app.command("plot")
@user_errors
def plot_command(
    results_dir: Annotated[Path, typer.Argument(help="Folder with study CSVs (searched recursively).")] = Path("results"),
    format: Annotated[str, typer.Option("--format", help="Comma-separated: png, pdf, svg.")] = "png,pdf",
    out: Annotated[Optional[Path], typer.Option(help="Write figures here instead of beside the CSVs.")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write REPORT.md.")] = False,
) -> None:
    """Redraw every figure from the CSVs under RESULTS_DIR (every study's: degradation, lesion, paths, bench, ...)."""
    from resx.plots import plot_results

    from resx.plots.discover import check_results_folder

    check_results_folder(results_dir)
    check_output_folder(out) if out is not None else check_output_folder(results_dir, "RESULTS_DIR")
    written = plot_results(results_dir, formats=tuple(f.strip() for f in format.split(",") if f.strip()), out=out,
                           on_note=lambda line: err_console.print(f"note: {line}", highlight=False, soft_wrap=True))
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    if report:
        report_command(results_dir)


@app.command("report")
@user_errors
def report_command(
    results_dir: Annotated[Path, typer.Argument(help="Folder with study CSVs and figures.")] = Path("results"),
    out: Annotated[Optional[Path], typer.Option(help="Report file (default RESULTS_DIR/REPORT.md).")] = None,
) -> None:
    """Write REPORT.md: resx's numbers beside the papers', with provenance and figures."""
    from resx.report import write_report

    if out is not None:
        check_output_file(out)
    elif results_dir.is_dir():  # (a missing folder is reported by write_report)
        check_output_folder(results_dir, "RESULTS_DIR")
    path = write_report(results_dir, out=out)
    console.print(f"wrote {path}", highlight=False)


# --- reproduce ---------------------------------------------------------------------------------------------------
def profile_names() -> list[str]:
    """The reproduce profiles that exist (experiments/reproduce-NAME.yaml)."""
    from resx.reproduce import PROFILES_DIR

    return sorted(p.stem.removeprefix("reproduce-") for p in PROFILES_DIR.glob("reproduce-*.yaml"))


@app.command("reproduce")
@user_errors
def reproduce_command(
    profile: Annotated[str, typer.Option(help=f"{' | '.join(profile_names())}, or an experiments/*.yaml file.")] = "quick",
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    epochs: Annotated[Optional[int], typer.Option(help="Train every net for N epochs instead of the profile's length.")] = None,
    seed: SeedOpt = None,
    allow_cpu: Annotated[bool, typer.Option("--allow-cpu", help="Run a GPU profile on the CPU anyway.")] = False,
    quiet: QuietOpt = False,
    log_every: LogEveryOpt = 1,
) -> None:
    """Everything: degradation grid, deep nets with/without stochastic depth, lesion, paths, figures, REPORT.md."""
    from resx.reproduce import reproduce

    check_output_folder(out)
    with RunProgress(quiet=quiet, log_every=log_every) as progress:
        report = reproduce(profile, data=data, data_dir=str(data_dir) if data_dir else None, device=device, out=out,
                           epochs=epochs, seed=seed, allow_cpu=allow_cpu, progress=progress, say=progress.say)
    console.print(f"done: [bold]{report}[/]")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
