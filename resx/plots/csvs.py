"""Reading the studies' CSVs: the files are the contract between the studies and the plots.

A missing CSV means "that figure is not drawn" (the study may not have run); a CSV that exists but lacks a
column the figure needs is the user's problem to see, so it is a `ResxError` naming the file and the column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from resx.errors import ResxError

_TRUE = {"true", "1", "yes", "y", "t", "residual"}
_FALSE = {"false", "0", "no", "n", "f", "plain", ""}


# Columns every study writes with one meaning, so that read_csv gives them one type wherever they stand: flags
# (True/False, true/false or 1/0 in the file), names, and whole numbers.
BOOL_COLUMNS = frozenset({"residual", "downsampling", "trained", "finished"})
NAME_COLUMNS = frozenset({"model", "method", "run", "family"})
INTEGER_COLUMNS = frozenset({"depth", "dims"})
# Required columns that hold text (names) or booleans; every other required column must hold numbers.
TEXT_COLUMNS = BOOL_COLUMNS | NAME_COLUMNS
# Set while plot_results runs: notes about CSVs that were read but had nothing to draw (see `collecting_notes`).
_notes: list[str] | None = None


@contextmanager
def collecting_notes() -> Iterator[list[str]]:
    """Collect, for the caller to show, a line for each CSV that has a header but no rows."""
    global _notes
    previous, _notes = _notes, []
    try:
        yield _notes
    finally:
        _notes = previous


def read_csv(path: str | Path, required: Sequence[str]) -> pd.DataFrame | None:
    """The CSV at `path`, or None if it is absent or has a header but no rows (noted, see `collecting_notes`).
    ResxError naming the file and the problem if it is empty, cut in the middle of a row, lacks a required column,
    holds text in a numeric column, or has no value at all in a required numeric column. The shared columns come
    typed, whether required or not: flags as bool, names as str, depths and dims as int."""
    path = Path(path)
    if not path.is_file():
        return None
    raw = path.read_bytes()
    if path.suffix == ".gz":  # a compressed CSV (a study's large grids): checked like any other once unpacked
        import gzip
        import zlib

        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ResxError(f"{path}: not a readable gzip file ({e}); rerun the study that writes it, or delete it") from None
    if not raw.strip():
        raise ResxError(f"{path}: empty file (not even a header); rerun the study that writes it, or delete it")
    _check_not_cut(path, raw)
    try:
        frame = pd.read_csv(io.BytesIO(raw))
    except pd.errors.EmptyDataError:
        raise ResxError(f"{path}: empty file (not even a header); rerun the study that writes it, or delete it") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ResxError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ResxError(
            f"{path}: missing column {missing[0]!r} (needs {', '.join(required)}; has {', '.join(map(str, frame.columns))})"
        )
    if frame.empty:
        if _notes is not None:
            _notes.append(f"{path}: a header but no rows; nothing to draw from it")
        return None
    for column in required:
        if column in TEXT_COLUMNS:
            continue
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values[numbers.isna() & values.notna()]
            if len(bad):
                raise ResxError(f"{path}: column {column!r} holds {bad.iloc[0]!r} (row {bad.index[0] + 1}), "
                                "expected a number")
            values = numbers
        if values.isna().all():
            raise ResxError(f"{path}: column {column!r} has no value in any row (all empty or NaN)")
    return _typed(frame, path, required)


def _typed(frame: pd.DataFrame, path: Path, required: Sequence[str]) -> pd.DataFrame | None:
    """The shared columns typed; a row without a required whole number (a depth) cannot be placed, so it is
    dropped and noted."""
    for column in frame.columns:
        if column in BOOL_COLUMNS:
            frame[column] = as_bool(frame[column], path, column)
        elif column in NAME_COLUMNS:  # names as text; a missing one stays missing (not the text "nan")
            frame[column] = frame[column].where(frame[column].isna(), frame[column].astype(str))
        elif column in INTEGER_COLUMNS:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            if column in required and numbers.isna().any():
                if _notes is not None:
                    _notes.append(f"{path}: {int(numbers.isna().sum())} row(s) without a {column}, left out")
                frame, numbers = frame[numbers.notna()].reset_index(drop=True), numbers.dropna().reset_index(drop=True)
            if numbers.notna().all():  # an optional column with gaps stays as it is, for its reader
                frame[column] = numbers.astype(int)
    return frame if len(frame) else None


def _check_not_cut(path: Path, raw: bytes) -> None:
    """resx writes every CSV whole, ending with a newline; a last row without one that has fewer fields than the
    header was cut (a copy interrupted, a disk full)."""
    if raw.endswith(b"\n"):
        return
    lines = raw.decode("utf-8", "replace").splitlines()
    if len(lines) < 2:
        return
    header, last = (next(csv.reader([line])) for line in (lines[0], lines[-1]))
    if len(last) < len(header):
        raise ResxError(f"{path}: cut in the middle of row {len(lines) - 1} ({len(last)} of {len(header)} fields); "
                        "rerun the study that writes it, or restore the file")


def as_bool(values: pd.Series, path: str | Path = "", column: str = "") -> pd.Series:
    """A bool column, whether the CSV wrote True/False, true/false or 1/0."""
    if values.dtype == bool:
        return values

    def convert(v):
        if isinstance(v, (bool, int, float)) and not pd.isna(v):
            return bool(v)
        text = "" if pd.isna(v) else str(v).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ResxError(f"{path}: column {column!r} holds {v!r}, expected true/false")

    return values.map(convert).astype(bool)
