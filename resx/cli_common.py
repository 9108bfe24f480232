"""What every `resx` command shares: the consoles, the common options, the one-line errors, the progress bars.

Used by resx/cli.py and by each study's command.py (resx/studies/<name>/); typer and rich only,
no torch, so that `resx --help` and `resx plot` start fast.
"""

from __future__ import annotations

import functools
import signal
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from resx.errors import ResxError

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
# the studies of trained nets (lesion, paths, landscape, signal) refuse a run that is still training or was trained
# on other data than the study is asked to use, unless told
ForceOpt = Annotated[bool, typer.Option("--force", help="Study runs that are not finished, or on another dataset than their own.")]


def user_errors(fn: Callable) -> Callable:
    """Turn ResxError (and CUDA out-of-memory) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _sigterm_interrupts()
        try:
            return fn(*args, **kwargs)
        except ResxError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(e, "exit_code", 1)) from None
        except Terminated:
            err_console.print("[bold red]error:[/] stopped by SIGTERM (outside training, where nothing was left "
                              "half-written); run the same command again to continue", highlight=False, soft_wrap=True)
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as e:  # CUDA OOM outside the places that already explain it
            if type(e).__name__ == "OutOfMemoryError":
                err_console.print(f"[bold red]error:[/] CUDA out of memory ({str(e).splitlines()[0][:80]}); "
                                  "try a smaller --batch-size or --concurrency", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop (which defers it to a checkpoint: resx/engine/interrupt.py)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def _sigterm_interrupts() -> Any:
    """While a command runs, SIGTERM (what `timeout` and SLURM send) stops it like Ctrl-C, with a message, instead
    of killing it silently. Returns the previous handler (None off the main thread, where none can be set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


# --- progress ------------------------------------------------------------------------------------------------
class RunProgress:
    """A rich progress bar per run with live loss and error, fed by the library's progress callback."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        # Below 120 columns: a short bar, no time-remaining column and short stats, so that the bar, the run's
        # name and its numbers all stay readable at 80 columns.
        self.narrow = console.width < 120
        columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=12 if self.narrow else 40),
                              MofNCompleteColumn(), TimeElapsedColumn()]
        if not self.narrow:
            columns[3:3] = [TextColumn("it")]
            columns.append(TimeRemainingColumn())
        self.progress = Progress(*columns, TextColumn("{task.fields[stats]}"), console=console)
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
        if row is not None and self.narrow:
            fields["stats"] = (f"ep {row['epoch']}/{run.total_epochs} loss {row['train_loss']:.2f} "
                               f"err {100 * row['train_error']:.1f}/{100 * row['test_error']:.1f}%")
        elif row is not None:
            fields["stats"] = (f"ep {row['epoch']}/{run.total_epochs}  loss {row['train_loss']:.3f}  "
                               f"train err {100 * row['train_error']:.2f}%  test err {100 * row['test_error']:.2f}%  "
                               f"{row['images_per_second']:,.0f} img/s")
        self.progress.update(self.tasks[key], completed=run.host_iteration, **fields)


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def int_list(text: str | None, option: str) -> list[int] | None:
    """An option's integers (resx.options.int_list: 20, 20..56, 20,32,44,56); None stays None."""
    from resx.options import int_list as parse

    return None if text is None else parse(text, option)


class CountingProgress:
    """Rich bars for a library function's `progress(label, done, total)` callback: one bar per label."""

    def __init__(self, transient: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=transient)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "CountingProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, label: str, done: int, total: int) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=total)
        self.bar.update(self.tasks[label], completed=done)
