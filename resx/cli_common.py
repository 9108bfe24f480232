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

from resx.errors import ResxError, interrupt_note
from resx.text import reason

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
# how much a run says: live bars on a terminal; elsewhere (nohup, SLURM, a pipe) one plain line per epoch
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Print no progress, only errors and the final table.")]
LogEveryOpt = Annotated[int, typer.Option("--log-every", help="Without a terminal (nohup, SLURM, a pipe): one line every N epochs.")]
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
        except Terminated as e:
            # a study that keeps what it finished, or starts over, says which (resx.studies.resume)
            note = interrupt_note(e) or "run the same command again to continue"
            err_console.print("[bold red]error:[/] stopped by SIGTERM (outside training, where nothing was left "
                              f"half-written); {note}", highlight=False, soft_wrap=True)
            raise typer.Exit(143) from None
        except KeyboardInterrupt as e:
            note = interrupt_note(e)
            err_console.print("[bold red]interrupted[/]" + (f"; {note}" if note else ""), highlight=False,
                              soft_wrap=True)
            raise typer.Exit(130) from None
        except Exception as e:  # CUDA OOM outside the places that already explain it
            if type(e).__name__ == "OutOfMemoryError":
                err_console.print(f"[bold red]error:[/] CUDA out of memory ({reason(e, 80)}); "
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
def plain_line(text: str) -> None:
    """One line on stdout, flushed at once: what a log file under nohup or SLURM shows as it happens."""
    import sys

    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def epoch_line(run: Any, row: dict) -> str:
    """`run: epoch 3/20  train 41.2%  test 43.0%  lr 0.1  812 img/s  eta 0:14:10` (eta: this run's remaining epochs at
    its mean epoch time so far)."""
    epochs = getattr(run, "total_epochs", None) or row["epoch"]
    per_epoch = float(row.get("elapsed_seconds") or 0) / max(1, row["epoch"])
    return (f"{run.name}: epoch {row['epoch']}/{epochs}  train {100 * row['train_error']:.1f}%  "
            f"test {100 * row['test_error']:.1f}%  lr {row['lr']:g}  {row['images_per_second']:,.0f} img/s  "
            f"eta {_clock(per_epoch * (epochs - row['epoch']))}")


class RunProgress:
    """Progress of training runs, fed by the library's progress callback: on a terminal a rich bar per run with live
    loss and error; elsewhere (nohup, SLURM, a pipe: stdout is no terminal, so a bar would show nothing until the
    end) one plain line per epoch (`epoch_line`), every `log_every` epochs, flushed at once. `quiet`: nothing."""

    def __init__(self, quiet: bool = False, log_every: int = 1) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if log_every < 1:
            raise ResxError(f"--log-every must be at least 1, got {log_every}")
        self.quiet, self.log_every = quiet, log_every
        self.live = console.is_terminal and not quiet
        # Below 120 columns: a short bar, no time-remaining column and short stats, so that the bar, the run's
        # name and its numbers all stay readable at 80 columns.
        self.narrow = console.width < 120
        columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=12 if self.narrow else 40),
                              MofNCompleteColumn(), TimeElapsedColumn()]
        if not self.narrow:
            columns[3:3] = [TextColumn("it")]
            columns.append(TimeRemainingColumn())
        self.progress = Progress(*columns, TextColumn("{task.fields[stats]}"), console=console, disable=not self.live)
        self.tasks: dict[int, Any] = {}

    def __enter__(self) -> "RunProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def say(self, message: str) -> None:
        """A message between the bars (a stage starting, a grid's plan); plain and flushed without a terminal."""
        if self.live:
            self.progress.console.print(message, highlight=False)
        elif not self.quiet:
            plain_line(message)

    def __call__(self, run: Any, row: dict | None) -> None:
        if not self.live:
            if row is not None and not self.quiet and (row["epoch"] % self.log_every == 0
                                                       or row["epoch"] == getattr(run, "total_epochs", None)):
                plain_line(epoch_line(run, row))
            return
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
    """Progress of a library function's `progress(label, done, total)` callback: on a terminal one rich bar per label;
    elsewhere (nohup, SLURM, a pipe) a plain line when a label starts and when it is done, flushed at once."""

    def __init__(self, transient: bool = False, quiet: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=transient, disable=not self.live)
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}

    def __enter__(self) -> "CountingProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, label: str, done: int, total: int) -> None:
        import time

        if not self.live:
            if self.quiet:
                return
            if label not in self.started:
                self.started[label] = time.perf_counter()
                plain_line(f"{label}: {total} to do")
            if done >= total and self.started.get(label) is not None:
                plain_line(f"{label}: {done}/{total} done in {_clock(time.perf_counter() - self.started[label])}")
                self.started[label] = None  # type: ignore[assignment]  # said once
            return
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=total)
        self.bar.update(self.tasks[label], completed=done)


# --- tables that read at any width ---------------------------------------------------------------------------------
class Column:
    """A column of `fitted_table`: its header, a shorter one for narrow terminals, and how readily it goes.

    drop: 0 for the table's key columns (always shown); columns with a higher number are left out first when the
          table does not fit the terminal, with a caption naming them.
    text: free text (a description, a note), which may wrap; every other cell (names, numbers) is shown whole."""

    def __init__(self, header: str, short: str | None = None, *, drop: int = 0, justify: str = "right",
                 text: bool = False) -> None:
        self.header, self.short, self.drop, self.justify, self.text = header, short or header, drop, justify, text


def fitted_table(title: str | None, columns: list[Column], rows: list[list[Any]], *, width: int | None = None,
                 **table_options: Any) -> Any:
    """A rich Table whose headers, names and numbers are never cut at the console's width: full headers where they
    fit, else short ones (those saving most first); where even all short ones do not fit, the columns of highest
    `drop` are left out (a caption names them). Only free-text columns wrap. Cells are shown as plain text."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    width = width or console.width
    rows = [["-" if cell is None else str(cell) for cell in row] for row in rows]

    def need(i: int, header: str) -> int:
        if columns[i].text:  # wraps between words: its longest word
            return max([cell_len(word) for text in (header, *(r[i] for r in rows)) for word in text.split()] or [1])
        return max([cell_len(header), *(cell_len(r[i]) for r in rows)])

    probe = Table(**table_options)
    _, right, _, left = probe.padding

    def header(i: int, short: set[int]) -> str:
        return columns[i].short if i in short else columns[i].header

    def total(shown: list[int], short: set[int]) -> int:
        chrome = len(shown) * (left + right) - (0 if probe.pad_edge else left + right)
        chrome += ((2 if probe.show_edge else 0) + len(shown) - 1) if probe.box else 0
        return chrome + sum(need(i, header(i, short)) for i in shown)

    def shortened(shown: list[int]) -> set[int]:
        """The fewest short headers that make `shown` fit (those saving most first); all of them if none do."""
        short: set[int] = set()
        for i in sorted(shown, key=lambda i: need(i, columns[i].short) - need(i, columns[i].header)):
            if total(shown, short) <= width:
                break
            short.add(i)
        return short

    shown = list(range(len(columns)))
    while total(shown, shortened(shown)) > width:
        optional = [i for i in shown if columns[i].drop]
        if not optional:
            break  # the key columns alone are wider than the terminal
        shown.remove(max(optional, key=lambda i: (columns[i].drop, i)))
    short = shortened(shown)
    table = Table(title=title, **table_options)
    for i in shown:
        column = columns[i]
        table.add_column(header(i, short), justify=column.justify, no_wrap=not column.text,
                         overflow="fold" if column.text else "ellipsis",
                         min_width=None if column.text else need(i, header(i, short)))
    for row in rows:
        table.add_row(*(Text(row[i]) for i in shown))
    left_out = [columns[i].header for i in range(len(columns)) if i not in shown]
    if left_out:
        table.caption = f"left out at {width} columns: {', '.join(left_out)}"
    return table
