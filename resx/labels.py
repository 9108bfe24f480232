"""The names studies give the runs they are handed, in their CSVs, figures and info files.

A run is named after its run folder (for a checkpoint file: its folder's name when the file is a checkpoint.pt,
else the file's own stem). The same name given twice gets a numbered suffix, `-2`, `-3`, ..., so that every
row of a study's CSVs says which of the runs it belongs to. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DUPLICATE_SUFFIX = "-{}"  # the second `name` is name-2, the third name-3, ...


def run_label(path: str | Path, fallback: str = "run") -> str:
    """A run's short name: its folder's name (resolved, so `.` is the current folder's), for a checkpoint file
    its folder's (checkpoint.pt) or its own stem (any other file); `fallback` for a path with no name (/)."""
    path = Path(path).resolve()
    if path.is_dir():
        label = path.name
    else:
        label = path.parent.name if path.stem == "checkpoint" else path.stem
    return label or fallback


def unique_label(label: str, taken: set[str]) -> str:
    """`label`, or the first of label-2, label-3, ... not in `taken`; the name returned is added to `taken`."""
    unique, i = label, 2
    while unique in taken:
        unique, i = label + DUPLICATE_SUFFIX.format(i), i + 1
    taken.add(unique)
    return unique


def unique_labels(labels: Iterable[str]) -> list[str]:
    """Every label made unique in order: ['a', 'a', 'b'] -> ['a', 'a-2', 'b']."""
    taken: set[str] = set()
    return [unique_label(label, taken) for label in labels]
