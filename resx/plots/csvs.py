"""Reading the studies' CSVs: the files are the contract between the studies and the plots.

A missing CSV means "that figure is not drawn" (the study may not have run); a CSV that exists but lacks a
column the figure needs is the user's problem to see, so it is a `ResxError` naming the file and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from resx.errors import ResxError

_TRUE = {"true", "1", "yes", "y", "t", "residual"}
_FALSE = {"false", "0", "no", "n", "f", "plain", ""}


def read_csv(path: str | Path, required: Sequence[str]) -> pd.DataFrame | None:
    """The CSV at `path`, or None if it is absent or has no rows; ResxError if a required column is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ResxError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ResxError(
            f"{path}: missing column {missing[0]!r} (needs {', '.join(required)}; has {', '.join(map(str, frame.columns))})"
        )
    if frame.empty:
        return None
    return frame


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
