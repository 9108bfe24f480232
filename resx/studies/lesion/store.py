"""The lesion study's files in --out as it goes: the rows of the three CSVs, written with lesion_info.json after
every experiment (one run's single, delete-k or swap), and those an interrupted attempt kept (resx.studies.resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resx.atomic import write_csv_atomic, write_json_atomic
from resx.studies.lesion.declare import DELETE_K_COLUMNS, INFO_NAME, SINGLE_COLUMNS, SWAP_COLUMNS
from resx.studies.resume import Resumable


@dataclass
class LesionRows:
    """The rows of the three CSVs, gathered run by run (`order`: the runs' names, in the order they are lesioned)."""

    single: list[dict] = field(default_factory=list)
    delete_k: list[dict] = field(default_factory=list)
    swap: list[dict] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    def frames(self):
        import pandas as pd

        # rows kept from an interrupted attempt come first: put every run's rows back in the runs' order
        rank = {name: i for i, name in enumerate(self.order)}
        ordered = lambda rows: sorted(rows, key=lambda r: rank.get(r["run"], len(rank)))  # noqa: E731  stable
        return (pd.DataFrame(ordered(self.single), columns=SINGLE_COLUMNS),
                pd.DataFrame(ordered(self.delete_k), columns=DELETE_K_COLUMNS),
                pd.DataFrame(ordered(self.swap), columns=SWAP_COLUMNS))


# (study, its CSV, its columns, its text columns: read back as written)
CSVS = (("single", "lesion_single.csv", SINGLE_COLUMNS, ("run", "model")),
        ("delete-k", "lesion_delete_k.csv", DELETE_K_COLUMNS, ("run", "model", "deleted")),
        ("swap", "lesion_swap.csv", SWAP_COLUMNS, ("run", "model", "order")))


def unit_name(run: str, study: str) -> str:
    """One experiment of one run: what an interrupted lesion study keeps."""
    return f"{run}: {study}"


def kept_rows(store: Resumable, runs: Sequence[str]) -> LesionRows:
    """The rows of the experiments done by an interrupted attempt of this study (none when it starts afresh)."""
    rows = LesionRows(order=list(runs))
    frames = {study: store.read(name, columns, text) for study, name, columns, text in CSVS}
    store.confirm({unit_name(str(run), study) for study, frame in frames.items() for run in frame["run"]})
    for study, frame in frames.items():
        target = {"single": rows.single, "delete-k": rows.delete_k, "swap": rows.swap}[study]
        target += [r for r in frame.to_dict("records") if store.is_done(unit_name(r["run"], study))]
    return rows


def write_lesion_outputs(out: Path, studies: Sequence[str], rows: LesionRows, info: dict[str, Any],
                         files: dict[str, Path]) -> None:
    """The CSV of every asked-for study and lesion_info.json, atomically; `files` gets their paths. Called after
    every experiment, so that a long lesion study keeps what it has finished."""
    single, delete_k, swap = rows.frames()
    for study, name, frame in (("single", "lesion_single.csv", single), ("delete-k", "lesion_delete_k.csv", delete_k),
                               ("swap", "lesion_swap.csv", swap)):
        if study in studies:
            files[study] = write_csv_atomic(out / name, frame)
    info["files"] = {k: str(v) for k, v in files.items()}
    files["info"] = write_json_atomic(out / INFO_NAME, info)
