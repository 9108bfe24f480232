"""The study's files in --out: what is done (for resuming), the settings check, and atomic rewrites after every net.

A net is done when its row is in approximation.csv. Its decision region (first seed) and loss curve are written
before that row, so that a study stopped between the two retrains the net and replaces, not duplicates, its rows.
An existing study is resumed only when its settings (task, recipe, sizes, circles) match; the models, depths and
seeds may differ (rows are added). Other settings are refused in one line naming them, unless `overwrite`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from resx.atomic import write_csv_atomic, write_json_atomic
from resx.errors import ResxError
from resx.studies import guards
from resx.studies.approximate.declare import (COLUMNS, CSV_NAME, CURVE_COLUMNS, CURVES_NAME, EXTRA_COLUMNS, INFO_NAME,
                                              POINT_COLUMNS, POINTS_NAME, REGION_COLUMNS, REGION_EXTRA, REGIONS_NAME)

KEY = ("label", "depth", "seed")


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=list(columns))
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ResxError(f"{path} is not a readable CSV ({str(e).splitlines()[0][:80]}); pass --overwrite to "
                        "replace the study, or give another --out") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResxError(f"{path} has no column {missing[0]!r}; pass --overwrite to replace the study, or give "
                        "another --out")
    return frame


class ApproximateStore:
    def __init__(self, out: Path, settings: dict[str, Any], overwrite: bool):
        self.out = Path(out)
        self.settings = json.loads(json.dumps(settings))  # as JSON reads it back (tuples become lists)
        self.overwrite = overwrite
        self.earlier: list[Path] = []
        self.rows = pd.DataFrame(columns=[*COLUMNS, *EXTRA_COLUMNS])
        self.regions = pd.DataFrame(columns=[*REGION_COLUMNS, *REGION_EXTRA])
        self.curves = pd.DataFrame(columns=list(CURVE_COLUMNS))
        self.points = pd.DataFrame(columns=list(POINT_COLUMNS))
        self.info: dict[str, Any] = {}

    def path(self, name: str) -> Path:
        return self.out / name

    def check(self) -> None:
        """Resume a study with the same settings; refuse one with others (unless `overwrite`, which lists its
        files for removal once every check has passed)."""
        found = guards.earlier_study(self.out, "approximate")
        if self.overwrite:
            self.earlier = found
            return
        if not self.path(CSV_NAME).exists():
            self.earlier = found  # no net done there: whatever an earlier attempt left goes
            return
        try:
            info = json.loads(self.path(INFO_NAME).read_text())
        except FileNotFoundError:
            raise ResxError(f"{self.out} holds {CSV_NAME} without {INFO_NAME}: its settings are unknown; pass "
                            "--overwrite to replace it, or give another --out") from None
        except (OSError, ValueError):
            raise ResxError(f"{self.path(INFO_NAME)} is not readable JSON; pass --overwrite to replace the study, "
                            "or give another --out") from None
        earlier = info.get("settings") or {}
        diffs = [f"{k} {earlier.get(k)!r} there, {v!r} now" for k, v in self.settings.items() if earlier.get(k) != v]
        if diffs:
            raise ResxError(f"{self.out} holds an approximate study with other settings ({'; '.join(diffs[:3])}); "
                            "pass --overwrite to replace it, or give another --out")
        self.info = info
        self.rows = _read(self.path(CSV_NAME), COLUMNS)
        self.regions = _read(self.path(REGIONS_NAME), REGION_COLUMNS)
        self.curves = _read(self.path(CURVES_NAME), CURVE_COLUMNS)
        self.points = _read(self.path(POINTS_NAME), POINT_COLUMNS)

    def start(self) -> None:
        guards.remove_files(self.earlier)
        self.earlier = []

    def done(self) -> set[tuple[str, int, int]]:
        if self.rows.empty or "label" not in self.rows.columns:
            return set()
        return {(str(r.label), int(r.depth), int(r.seed)) for r in self.rows.itertuples()}

    def has_points(self, seed: int) -> bool:
        return bool(len(self.points)) and bool((self.points["seed"] == seed).any())

    def add_points(self, points: pd.DataFrame) -> None:
        self.points = pd.concat([self.points, points], ignore_index=True) if len(self.points) else points
        write_csv_atomic(self.path(POINTS_NAME), self.points)

    @staticmethod
    def _replace(frame: pd.DataFrame, new: pd.DataFrame, key: dict[str, Any]) -> pd.DataFrame:
        if len(frame):
            same = pd.Series(True, index=frame.index)
            for k, v in key.items():
                same &= frame[k].astype(str) == str(v)
            frame = frame[~same]
        return pd.concat([frame, new], ignore_index=True) if len(frame) else new.reset_index(drop=True)

    def add(self, row: dict[str, Any], regions: pd.DataFrame | None, curve: pd.DataFrame, info: dict[str, Any]) -> None:
        """One finished net: its region (first seed) and curve, then its row, then the info file."""
        key = {k: row[k] for k in KEY}
        if regions is not None:
            self.regions = self._replace(self.regions, regions, key)
            write_csv_atomic(self.path(REGIONS_NAME), self.regions)
        self.curves = self._replace(self.curves, curve, key)
        write_csv_atomic(self.path(CURVES_NAME), self.curves)
        self.rows = self._replace(self.rows, pd.DataFrame([row]), key)
        write_csv_atomic(self.path(CSV_NAME), self.rows)
        self.write_info(info)

    def write_info(self, info: dict[str, Any]) -> None:
        self.info = info
        write_json_atomic(self.path(INFO_NAME), info)
