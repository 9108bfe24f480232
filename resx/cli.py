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
from rich.table import Table

from resx.atomic import check_output_file, check_output_folder
from resx.errors import ResxError
from resx.cli_common import (
    ConfigOpt, DataDirOpt, DataOpt, DeviceOpt, RunProgress, SeedOpt, console, err_console, int_list, pct,
    user_errors,
)
from resx.options import check_numbers, float_list

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
    for col in ("name", "family", "residual", "blocks", "params", "description"):
        if col == "family" and not wide:
            continue
        narrow_description = col == "description" and not wide  # one line per model, cut to what fits
        table.add_column(col, justify="right" if col in ("blocks", "params") else "left",
                         no_wrap=col != "description" or not wide, overflow="ellipsis",
                         max_width=max(20, console.width - 48) if narrow_description else None)
    for name in list_models():
        spec = get_model_spec(name)
        options = {"input_size": 32} if spec.family == "imagenet" else {}
        if spec.family == "mlp":
            options = {"in_channels": 1, "input_size": 28}
        with torch.device("meta"):  # parameter shapes only: no memory, no initialisation time
            net = create_model(name, **options)
        table.add_row(name, *([spec.family] if wide else []), "yes" if spec.residual else "no", str(len(net.blocks)),
                      f"{net.num_parameters() / 1e6:.2f}M", spec.description)
    console.print(table)
    console.print("CIFAR names take any 6n+2 depth too (resnet8, plain14, ...); MLPs take --depth and --width.")


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
    shortcut: Annotated[Optional[str], typer.Option(help="A (identity + zero-pad) or B (projection).")] = None,
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
) -> None:
    """Train one model on one dataset: metrics.csv, iterations.csv, checkpoint.pt, config.yaml, run_info.json."""
    from resx.config import resolve_config
    from resx.engine import train

    check_numbers(locals())
    if resume and overwrite:
        raise ResxError("--resume and --overwrite exclude each other")
    cfg = resolve_config(config, dict(
        model=model, data=data, epochs=epochs, iterations=iterations, lr=lr, batch_size=batch_size, seed=seed,
        device=device if device != "auto" else None, data_dir=str(data_dir) if data_dir else None, shortcut=shortcut,
        stochastic_depth=stochastic_depth, warmup_lr=warmup_lr, depth=depth, width=width, precision=precision,
        graph=False if no_graph else None, momentum=momentum, weight_decay=weight_decay,
        lr_milestones=float_list(lr_milestones, "--lr-milestones"), augment=False if no_augment else None,
        threads=threads, curve_every=curve_every, curve_window=curve_window,
        zero_init_residual=True if zero_init_residual else None,
    ))
    run_dir = check_output_folder(out or Path("runs") / f"{cfg.model}-seed{cfg.seed}")
    with RunProgress() as progress:
        run = train(cfg, run_dir, resume="require" if resume else "never", overwrite=overwrite, progress=progress)
    show_run_summary(run)


def show_run_summary(run: Any) -> None:
    if not run.metrics:
        return
    last = run.metrics[-1]
    best = min(m["test_error"] for m in run.metrics)
    table = Table(title=f"{run.config.model} on {run.config.data} (seed {run.config.seed})")
    for col in ("epochs", "iterations", "train err", "test err", "best test", "img/s"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row(str(last["epoch"]), f"{last['iteration']:,}", pct(last["train_error"]), pct(last["test_error"]),
                  pct(best), f"{last['images_per_second']:,.0f}")
    console.print(table)
    console.print(f"on {run.env.get('device_name', '')}; one iteration = one batch of {run.config.batch_size}; "
                  f"results in [bold]{run.run_dir}[/]")


# --- compare-plain ----------------------------------------------------------------------------------------------
@app.command("compare-plain")
@user_errors
def compare_plain_command(
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
    shard: Annotated[Optional[str], typer.Option(help="Run only slice I of N (I/N, e.g. a SLURM array index).")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Runs trained at once: on CUDA streams of one GPU (default 4), on a CPU worker processes (default one per core).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads of each run (default: the cores shared out evenly).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 0.1).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default 128).")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
) -> None:
    """Plain vs residual nets across depths: the degradation problem (He et al. 2015, Fig. 6)."""
    from resx.studies.compare import CompareOptions, compare_plain

    check_numbers(locals())
    options = CompareOptions.resolve(config, dict(
        depths=int_list(depths, "--depths"), residual_depths=int_list(residual_depths, "--residual-depths"),
        seeds=seeds, family=family, out=str(out) if out else None, shard=shard, concurrency=concurrency,
    ), dict(
        data=data, epochs=epochs, iterations=iterations, shortcut=shortcut, lr=lr, batch_size=batch_size, seed=seed,
        device=device if device != "auto" else None, data_dir=str(data_dir) if data_dir else None, threads=threads,
    ))
    check_output_folder(options.out)
    console.print(f"compare-plain: {options.describe()}")
    with RunProgress() as progress:
        result = compare_plain(options, progress=progress, on_status=lambda msg: progress.progress.console.print(msg))
    show_degradation(result)


def show_degradation(result: Any) -> None:
    summary = result.summary
    table = Table(title="Degradation: final error, mean±std over seeds (plain nets first)")
    for col in ("model", "depth", "params", "seeds", "train err %", "test err %", "best test %"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for row in summary.itertuples():
        table.add_row(row.model, str(row.depth), f"{row.params / 1e6:.2f}M", str(row.seeds),
                      f"{100 * row.final_train_error_mean:.2f}±{100 * row.final_train_error_std:.2f}",
                      f"{100 * row.final_test_error_mean:.2f}±{100 * row.final_test_error_std:.2f}",
                      f"{100 * row.best_test_error_mean:.2f}")
    console.print(table)
    for line in result.verdict:
        console.print(line)
    info = result.info
    if info.get("trained"):
        console.print(f"trained {info['trained']} run(s), skipped {info['skipped']} finished, in {info['wall_seconds']:.1f} s "
                      f"({info['images_per_second']:,.0f} images/s in all, {info.get('concurrency', 1)} at a time)")
    console.print(f"one iteration = one batch of {result.batch_size}; results in [bold]{result.out}[/]: "
                  + ", ".join(p.name for p in result.files))


@app.command("demo")
@user_errors
def demo_command(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo-output"),
    data: DataOpt = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
) -> None:
    """The degradation problem in minutes on a CPU: plain vs residual MLPs of 6 and 50 layers."""
    from resx.studies.demo import run_demo

    check_numbers(locals())
    check_output_folder(out)
    with RunProgress() as progress:
        result = run_demo(out, data=data, data_dir=str(data_dir) if data_dir else None, device=device,
                          seed=seed or 0, progress=progress, say=lambda msg: progress.progress.console.print(msg, highlight=False))
    show_degradation(result)


# --- lesion (Veit et al. 2016 §4) ------------------------------------------------------------------------------
@app.command("lesion")
@user_errors
def lesion_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders or checkpoint.pt files, lesioned side by side.")],
    data: DataOpt = None,
    studies: Annotated[Optional[str], typer.Option(help="Comma list of single, delete-k, swap (default: all; swap skipped for plain nets).")] = None,
    blocks: Annotated[Optional[str], typer.Option(help="Restrict `single` to these 0-based blocks: 3, 0..8 or 0,5,18.")] = None,
    max_k: Annotated[Optional[int], typer.Option("--max-k", help="delete-k for k = 1..K (default 20, or every deletable block).")] = None,
    draws: Annotated[int, typer.Option(help="Random draws per k and per swap count.")] = 50,
    swaps: Annotated[str, typer.Option(help="Swap counts: a range 1..10, a number 5, or a list 1,2,5.")] = "1..10",
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Eval batch (default: 1000 on CPU, as large as fits on CUDA).")] = None,
    cache_mb: Annotated[Optional[int], typer.Option("--cache-mb", help="Memory for cached activations (default: automatic; 0: off).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for lesion_*.csv and lesion_info.json.")] = Path("results/lesion"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier lesion study in --out.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Lesion runs that are not finished, or on another dataset than their own.")] = False,
) -> None:
    """Delete and reorder blocks of trained nets at test time (Veit et al. 2016, §4, Figs. 3 and 5)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from resx.studies.lesion import run_lesion

    check_numbers(locals())
    check_output_folder(out)

    progress_bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console)
    tasks: dict[tuple[str, str], Any] = {}

    def progress(run: str, study: str, done: int, total: int) -> None:
        if (run, study) not in tasks:
            tasks[run, study] = progress_bar.add_task(f"{run} {study}", total=total)
        progress_bar.update(tasks[run, study], completed=done)

    with progress_bar:
        result = run_lesion(runs, data=data, data_dir=data_dir, studies=studies, blocks=blocks, max_k=max_k, draws=draws,
                            swaps=swaps, seed=seed if seed is not None else 0, device=device, batch_size=batch_size,
                            cache_bytes=None if cache_mb is None else cache_mb * 2**20, out=out, progress=progress,
                            overwrite=overwrite, force=force)
    rows = result.summary()
    ks = sorted({k for r in rows for k in r.get("delete_k", {})})
    counts = sorted({c for r in rows for c in r.get("swap", {})})
    p1 = lambda v: f"{100 * v:.1f}" if v is not None else "-"  # noqa: E731
    table = Table(title=f"test error % after lesions (Veit et al. 2016 §4), {result.info['device_name']}")
    columns = ["run", "base", "single", "down"]
    columns += [f"del {k}" for k in ks] + [f"swap {c}" for c in counts]
    for col in columns:
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=col in ("run", "single", "down"))
    for r in rows:
        single = "/".join(p1(r.get(f"single_{s}")) for s in ("min", "median", "max")) if "single_min" in r else "-"
        down = " ".join(p1(e) for e in r.get("downsampling", {}).values()) or "-"
        table.add_row(r["run"], p1(r["baseline"]), single, down, *[p1(r.get("delete_k", {}).get(k)) for k in ks],
                      *[p1(r.get("swap", {}).get(c)) for c in counts])
    console.print(table)
    for run in result.info["runs"]:
        for study, why in run["skipped"].items():
            console.print(f"{run['run']}: {study} skipped: {why}")
    for r in rows:
        console.print(f"{r['run']} ({r['model']}): seconds " + ", ".join(f"{k} {v:.2f}" for k, v in r["seconds"].items()))
    console.print("single: min/median/max over the non-downsampling blocks deleted one at a time; down: each "
                  "downsampling block deleted; del k: mean over draws with k blocks deleted; swap n: mean with n pairs "
                  f"swapped. Results in [bold]{result.out}[/]")


# --- paths: the gradient per path length (Veit et al. 2016, §5, Fig. 6) -----------------------------------------
@app.command("paths")
@user_errors
def paths_command(
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier paths study in --out.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Analyse runs that are not finished, or on another dataset than their own.")] = False,
) -> None:
    """Gradient per path length and per block: which paths of a residual net carry the gradient."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from resx.studies.paths import run_paths

    check_numbers(locals())
    check_output_folder(out)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = run_paths(checkpoints or (), model, init=init, data=data, data_dir=data_dir, samples=samples,
                           batch_size=batch_size, seed=seed, device=device, tf32=not no_tf32, out=out, progress=progress,
                           overwrite=overwrite, force=force)
    info = result.info
    lo, hi = info["window"]
    table = Table(title=f"paths of {info['model']} ({'trained' if info['trained'] else 'at initialisation'}, {info['data']})")
    for col in ("blocks n", "centre", f"{100 * info['window_fraction']:.0f}% gradient window", "paths in window",
                "gradient peak k", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(str(info["blocks"]), f"{info['centre']:g}", f"{lo} to {hi}", pct(info["window_paths_fraction"]),
                  str(info["gradient_peak_k"]), f"{info['seconds_path_gradients']:.1f} ({info['device_name']})")
    console.print(table)
    ratios = Table(title="block gradient norm, first block / last block")
    for col in ("run", "residual", "trained", "first / last"):
        ratios.add_column(col, justify="left" if col == "run" else "right")
    for entry in info["nets"]:
        ratios.add_row(entry["run"], "yes" if entry["residual"] else "no", "yes" if entry["trained"] else "no",
                       f"{info['first_last_block_gradient_ratio'][entry['run']]:.3g}")
    console.print(ratios)
    console.print(f"[dim]{info['note']}[/]", highlight=False)
    console.print(f"{info['samples']} samples per k, batch {info['batch_size']}; results in [bold]{out}[/]")


# --- bench -------------------------------------------------------------------------------------------------------
@app.command("bench")
@user_errors
def bench_command(
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


def show_bench_table(frame: Any, batch_size: int) -> None:
    """bench.csv as a table that fits 80 columns: median images/s, the rounds' spread (half the range, in % of the
    median), GFLOP/s and the ratio to the common recipe."""
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


# --- plot and report (CSV only: these never import torch) ----------------------------------------------------------
@app.command("plot")
@user_errors
def plot_command(
    results_dir: Annotated[Path, typer.Argument(help="Folder with study CSVs (searched recursively).")] = Path("results"),
    format: Annotated[str, typer.Option("--format", help="Comma-separated: png, pdf, svg.")] = "png,pdf",
    out: Annotated[Optional[Path], typer.Option(help="Write figures here instead of beside the CSVs.")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write REPORT.md.")] = False,
) -> None:
    """Redraw every figure from the CSVs under RESULTS_DIR (degradation, lesion, paths, bench)."""
    from resx.plots import plot_results

    if not results_dir.is_dir():
        raise ResxError(f"no such folder: {results_dir}")
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
) -> None:
    """Everything: degradation grid, deep nets with/without stochastic depth, lesion, paths, figures, REPORT.md."""
    from resx.reproduce import reproduce

    check_output_folder(out)
    with RunProgress() as progress:
        report = reproduce(profile, data=data, data_dir=str(data_dir) if data_dir else None, device=device, out=out,
                           epochs=epochs, seed=seed, allow_cpu=allow_cpu, progress=progress,
                           say=lambda msg: progress.progress.console.print(msg, highlight=False))
    console.print(f"done: [bold]{report}[/]")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
