"""The `resx` command line: a thin Typer layer over the library.

Each command parses options, calls one library function, and shows progress and results with rich. Library
code below this module never imports typer or rich; it takes a progress callback. torch is imported only inside
the commands that compute, so `resx --help` and `resx plot` start fast.
A user mistake (ResxError) is printed as one line `error: ...` with exit code 1, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from resx.errors import ResxError

app = typer.Typer(
    name="resx",
    help="Reproduce the classic experiments on why residual networks work (He et al. 2015, Veit et al. 2016).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

# --- options shared by every command that computes (same meaning everywhere) ------------------------------
DataOpt = Annotated[
    Optional[str],
    typer.Option("--data", help="cifar10 | cifar100 | fashion-mnist | mnist | imagefolder:PATH | synthetic[:k=v,...]"),
]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Where datasets live (else $RESX_DATA, else ./data).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML experiment file (experiments/*.yaml).")]


def user_errors(fn: Callable) -> Callable:
    """Turn ResxError (and CUDA out-of-memory) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ResxError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(e, "exit_code", 1)) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as e:  # CUDA OOM outside the places that already explain it
            if type(e).__name__ == "OutOfMemoryError":
                err_console.print(f"[bold red]error:[/] CUDA out of memory ({str(e).splitlines()[0][:80]}); "
                                  "try a smaller --batch-size or --concurrency", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            raise

    return wrapper


# --- progress ------------------------------------------------------------------------------------------------
class RunProgress:
    """A rich progress bar per run with live loss and error, fed by the library's progress callback."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("it"),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), console=console,
        )
        self.tasks: dict[int, Any] = {}

    def __enter__(self) -> "RunProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, run: Any, row: dict | None) -> None:
        key = id(run)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(run.name, total=run.total_iterations, stats="")
        fields = {}
        if row is not None:
            fields["stats"] = (f"ep {row['epoch']}/{run.total_epochs}  loss {row['train_loss']:.3f}  "
                               f"train err {100 * row['train_error']:.2f}%  test err {100 * row['test_error']:.2f}%  "
                               f"{row['images_per_second']:,.0f} img/s")
        self.progress.update(self.tasks[key], completed=run.host_iteration, **fields)


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


# --- commands ------------------------------------------------------------------------------------------------
@app.command("models")
@user_errors
def models_command() -> None:
    """List the registered models with their parameter counts (CIFAR-10 shapes)."""
    from resx.models import create_model, get_model_spec, list_models

    table = Table(title="resx model zoo")
    for col in ("name", "family", "residual", "blocks", "params", "description"):
        table.add_column(col, justify="right" if col in ("blocks", "params") else "left")
    for name in list_models():
        spec = get_model_spec(name)
        options = {"input_size": 32} if spec.family == "imagenet" else {}
        if spec.family == "mlp":
            options = {"in_channels": 1, "input_size": 28}
        net = create_model(name, **options)
        table.add_row(name, spec.family, "yes" if spec.residual else "no", str(len(net.blocks)),
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
    precision: Annotated[Optional[str], typer.Option(help="auto | fp32 | bf16 (auto: bf16 on CUDA).")] = None,
    no_graph: Annotated[bool, typer.Option("--no-graph", help="Eager steps instead of a CUDA graph.")] = False,
) -> None:
    """Train one model on one dataset: metrics.csv, checkpoint.pt, config.yaml and run_info.json in --out."""
    from resx.config import resolve_config
    from resx.engine import train

    if resume and overwrite:
        raise ResxError("--resume and --overwrite exclude each other")
    cfg = resolve_config(config, dict(
        model=model, data=data, epochs=epochs, iterations=iterations, lr=lr, batch_size=batch_size, seed=seed,
        device=device if device != "auto" else None, data_dir=str(data_dir) if data_dir else None, shortcut=shortcut,
        stochastic_depth=stochastic_depth, warmup_lr=warmup_lr, depth=depth, width=width, precision=precision,
        graph=False if no_graph else None,
    ))
    run_dir = out or Path("runs") / f"{cfg.model}-seed{cfg.seed}"
    with RunProgress() as progress:
        run = train(cfg, run_dir, resume="require" if resume else "never", overwrite=overwrite, progress=progress)
    show_run_summary(run)


def show_run_summary(run: Any) -> None:
    if not run.metrics:
        return
    last = run.metrics[-1]
    best = min(m["test_error"] for m in run.metrics)
    table = Table(title=f"{run.config.model} on {run.config.data} (seed {run.config.seed})")
    for col in ("epochs", "iterations", "final train error", "final test error", "best test error", "img/s", "device"):
        table.add_column(col, justify="right")
    table.add_row(str(last["epoch"]), f"{last['iteration']:,}", pct(last["train_error"]), pct(last["test_error"]),
                  pct(best), f"{last['images_per_second']:,.0f}", run.env.get("device_name", ""))
    console.print(table)
    console.print(f"one iteration = one batch of {run.config.batch_size}; results in [bold]{run.run_dir}[/]")


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
) -> None:
    """Delete and reorder blocks of trained nets at test time (Veit et al. 2016, §4, Figs. 2-3)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from resx.studies.lesion import run_lesion

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
                            cache_bytes=None if cache_mb is None else cache_mb * 2**20, out=out, progress=progress)
    # plots: resx.plots.plot_lesion(out)
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


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
