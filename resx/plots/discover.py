"""Finding the studies' CSVs under a results folder, and redrawing every figure (`resx plot`).

A folder holds a study when it holds any of the CSVs that the study declares (resx.studies.registry: curves.csv for the
degradation grid, lesion_*.csv, path_*.csv or block_gradients.csv, bench.csv, ...). The studies may each write into
a subfolder (results/degradation/, results/lesion/, ...) or all into one folder; both work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from resx.errors import ResxError
from resx.plots import style
from resx.plots.csvs import collecting_notes
from resx.studies.registry import looked_for, registered


def study_kinds(names: set[str]) -> list[str]:
    """Which registered studies a folder holding the files `names` contains, in the registry's order."""
    return [study.name for study in registered() if study.found_in(names)]


def check_results_folder(results_dir: str | Path, name: str = "RESULTS_DIR") -> Path:
    """A results folder to read (`resx plot`, `resx report`): one that is missing, or is a file, is refused in one
    line that says which, and that a folder of study CSVs is needed. Returns it as a Path."""
    results_dir = Path(results_dir)
    if results_dir.is_dir():
        return results_dir
    if results_dir.exists():
        raise ResxError(f"{name} {results_dir} is a file, not a folder; give the folder that holds the study CSVs "
                        f"(searched recursively)")
    raise ResxError(f"no such folder: {results_dir}; give the folder that holds the study CSVs")


def find_studies(results_dir: str | Path) -> dict[str, list[Path]]:
    """{study: [folders]} for every registered study, with every folder under `results_dir` that holds it (hidden
    folders skipped), sorted; a study found nowhere maps to []."""
    results_dir = check_results_folder(results_dir)
    found: dict[str, list[Path]] = {study.name: [] for study in registered()}
    for root, dirs, files in os.walk(results_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for kind in study_kinds({f for f in files if not f.startswith(".")}):
            found[kind].append(Path(root))
    return found


def plot_results(results_dir: str | Path, formats=("png", "pdf"), out: str | Path | None = None,
                 on_note: Callable[[str], None] | None = None) -> list[Path]:
    """Redraw every figure of every study found under `results_dir`; returns the paths written.

    Figures go beside their CSVs, or with `out` into out/<the CSVs' folder relative to results_dir>. A CSV with a
    header but no rows draws nothing; `on_note` gets a line naming it."""
    formats = style.check_formats(formats)
    results_dir = Path(results_dir)
    studies = find_studies(results_dir)
    if not any(studies.values()):
        raise ResxError(f"no resx CSVs found under {results_dir} (looked for {looked_for()})")
    written: list[Path] = []
    with collecting_notes() as notes:
        for study in registered():
            for folder in studies[study.name]:
                target = None if out is None else Path(out) / folder.relative_to(results_dir)
                written += study.plot(folder, formats=formats, out=target)
    for note in dict.fromkeys(notes):
        (on_note or (lambda _line: None))(note)
    return written
