"""Finding the studies' CSVs under a results folder, and redrawing every figure (`resx plot`).

A folder holding curves.csv is a degradation study, lesion_*.csv a lesion study, path_*.csv or
block_gradients.csv a paths study, bench.csv a benchmark. The studies may each write into a subfolder
(results/degradation/, results/lesion/, ...) or all into one folder; both work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from resx.errors import ResxError
from resx.plots import style
from resx.plots.bench import plot_bench
from resx.plots.csvs import collecting_notes
from resx.plots.degradation import plot_degradation
from resx.plots.lesion import plot_lesion
from resx.plots.paths import plot_paths

KINDS = ("degradation", "lesion", "paths", "bench")
LOOKED_FOR = "curves.csv, lesion_*.csv, path_*.csv, block_gradients.csv, bench.csv"
PLOTTERS = {"degradation": plot_degradation, "lesion": plot_lesion, "paths": plot_paths, "bench": plot_bench}


def study_kinds(names: set[str]) -> list[str]:
    """Which studies a folder holding the files `names` contains."""
    kinds = []
    if "curves.csv" in names:
        kinds.append("degradation")
    if any(n.startswith("lesion_") and n.endswith(".csv") for n in names):
        kinds.append("lesion")
    if "block_gradients.csv" in names or any(n.startswith("path_") and n.endswith(".csv") for n in names):
        kinds.append("paths")
    if "bench.csv" in names:
        kinds.append("bench")
    return kinds


def find_studies(results_dir: str | Path) -> dict[str, list[Path]]:
    """{kind: [folders]} for every study found anywhere under `results_dir` (hidden folders skipped), sorted."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResxError(f"no such folder: {results_dir}")
    found: dict[str, list[Path]] = {kind: [] for kind in KINDS}
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
        raise ResxError(f"no resx CSVs found under {results_dir} (looked for {LOOKED_FOR})")
    written: list[Path] = []
    with collecting_notes() as notes:
        for kind in KINDS:
            for folder in studies[kind]:
                target = None if out is None else Path(out) / folder.relative_to(results_dir)
                written += PLOTTERS[kind](folder, formats=formats, out=target)
    for note in dict.fromkeys(notes):
        (on_note or (lambda _line: None))(note)
    return written
