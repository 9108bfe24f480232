"""What a study stopped part way keeps, and how the same command continues from it.

A study whose work splits into units (lesion: one experiment of one run; paths: the path gradients, then each net's
block gradients; signal: one net) writes its CSVs after every unit, atomically, and then names the unit done in
`.STUDY-progress.json` in --out, beside the settings that decide its numbers. The same command again (the same
settings) reads the done units' rows back and computes only the others, to the files an uninterrupted study writes.
Rows of a unit not named done (a study stopped between the two writes) are dropped and that unit is computed again;
the unit that was under way when the study stopped always starts over.

The progress file goes when the study has written everything: a finished study in --out is refused as before
(unless --overwrite). An unfinished one that kept something and was made with other settings is refused, naming
the first differences; --overwrite (resume=False) replaces it. Stopped by Ctrl-C or SIGTERM inside `interruptible`,
the study's one-line message says how much is kept and that the same command continues from it, or, when nothing
was finished, that it starts over (`starts_over` says so for a study that keeps nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resx.atomic import write_json_atomic
from resx.errors import ResxError, note_interrupt
from resx.studies import guards

if TYPE_CHECKING:
    import pandas as pd


def canonical(value: Any) -> Any:
    """As JSON gives it back (tuples as lists, paths as strings): what was recorded compares equal to what is
    computed again."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def progress_name(study: str) -> str:
    return f".{study}-progress.json"


class Resumable:
    """The units of one study in `out` that are done, and the settings they were computed with.

    `out` None: nothing is kept (a study that writes no files); every method is then a no-op."""

    def __init__(self, out: str | Path | None, study: str, settings: Mapping[str, Any], *, units: str,
                 overwrite: bool = False, resume: bool = True):
        self.out = Path(out) if out is not None else None
        self.study, self.units = study, units
        self.settings = canonical(dict(settings))
        self.overwrite, self.resume = overwrite, resume
        self.done: list[str] = []
        self.kept: dict[str, Any] = {}  # what a done unit leaves beside its rows (timings, an info entry)
        self.planned: list[str] = []
        self.earlier: list[Path] = []
        self.resumed = 0  # units found done when the study started

    @property
    def path(self) -> Path | None:
        return self.out / progress_name(self.study) if self.out is not None else None

    def _record(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
            return record if isinstance(record, dict) else {}
        except (OSError, ValueError):
            return {}  # unreadable: its settings are unknown, so nothing of it is kept

    def check(self) -> None:
        """Before anything is computed: continue an unfinished study of these settings; refuse one of other
        settings, or a finished study, unless `overwrite` (its files then go in `start`)."""
        if self.out is None:
            return
        from resx.output_guard import differences

        record = self._record()
        if record is not None and not record.get("done"):  # stopped before its first unit: nothing to keep
            self.earlier = guards.check_study_folder(self.out, self.study, self.overwrite) + [self.path]
            return
        if record is not None and self.resume and record.get("settings") == self.settings:
            self.done = [str(u) for u in record.get("done") or []]
            self.kept = dict(record.get("kept") or {})
            return
        if record is not None and not self.overwrite:
            what = (f"made with other settings ({'; '.join(differences(record.get('settings') or {}, self.settings))})"
                    if record.get("settings") else "whose settings are unreadable")
            raise ResxError(f"{self.out} holds an unfinished {self.study} study {what}; run its own command again to "
                            "continue it, pass --overwrite to replace it, or give another --out")
        self.earlier = guards.check_study_folder(self.out, self.study, self.overwrite)
        if record is not None:
            self.earlier.append(self.path)

    def start(self, planned: Sequence[str]) -> None:
        """Every check passed: a replaced study's files go, and the settings are recorded before the first unit."""
        self.planned = list(planned)
        self.done = [u for u in self.done if u in self.planned]
        self.resumed = len(self.done)
        if self.out is None:
            return
        guards.remove_files(self.earlier)
        self.earlier = []
        self._write()

    def _write(self) -> None:
        write_json_atomic(self.path, {"study": self.study, "settings": self.settings, "done": self.done,
                                      "kept": self.kept})

    def is_done(self, unit: str) -> bool:
        return unit in self.done

    def mark(self, unit: str, kept: Any = None) -> None:
        """`unit`'s rows are written: name it done (with what it leaves beside them)."""
        if self.out is None:
            return
        if unit not in self.done:
            self.done.append(unit)
        if kept is not None:
            self.kept[unit] = kept
        self._write()

    def confirm(self, present: Iterable[str]) -> None:
        """Units named done whose rows are not in the CSVs (a file removed by hand) are computed again."""
        present = set(present)
        missing = [u for u in self.done if u not in present]
        if missing:
            self.done = [u for u in self.done if u in present]
            self.resumed = len(self.done)
            for unit in missing:
                self.kept.pop(unit, None)
            self._write()

    def read(self, name: str, columns: Sequence[str], text: Sequence[str] = ("run",)) -> "pd.DataFrame":
        """The rows in `name` as written (floats to the last digit; the `text` columns as strings), for the study to
        keep those of its done units; empty when nothing is done."""
        import pandas as pd

        path = self.out / name if self.out is not None else None
        if not self.done or path is None or not path.exists():
            return pd.DataFrame(columns=list(columns))
        try:
            frame = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
            raise ResxError(f"{path} is not a readable CSV ({str(e).splitlines()[0][:80]}); pass --overwrite to "
                            "start the study over, or give another --out") from None
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ResxError(f"{path} has no column {missing[0]!r}; pass --overwrite to start the study over, or "
                            "give another --out")
        return frame

    def finish(self) -> None:
        """Everything is written: the study is no longer unfinished."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def resume_line(self) -> str | None:
        """What the study continues from (None when it starts afresh)."""
        if not self.resumed:
            return None
        return (f"continuing the unfinished {self.study} study in {self.out}: {self.resumed} of "
                f"{len(self.planned)} {self.units} kept")

    def stopped_note(self) -> str:
        """What an interrupted study says it kept, and what the same command then does."""
        if self.out is None:
            return "nothing is written without --out; running it again starts over"
        done = len([u for u in self.done if u in self.planned])
        if not done:
            return (f"none of its {len(self.planned)} {self.units} was finished, so nothing is kept; running the "
                    "same command again starts over")
        if done == len(self.planned):
            return (f"all {done} {self.units} are kept in {self.out}; run the same command again to write the "
                    "figures and the info file")
        return (f"{done} of {len(self.planned)} {self.units} are kept in {self.out}; run the same command again to "
                "continue from them (the one under way starts over)")

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM inside the block: the exception carries `stopped_note` (printed by the CLI)."""
        try:
            yield
        except KeyboardInterrupt as e:
            note_interrupt(e, self.stopped_note())
            raise


@contextmanager
def starts_over(study: str) -> Iterator[None]:
    """For a study that keeps nothing when stopped: its message says so."""
    try:
        yield
    except KeyboardInterrupt as e:
        note_interrupt(e, f"the {study} study keeps nothing when stopped; running the same command again starts over")
        raise
