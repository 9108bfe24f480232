"""landscape.csv and landscape_info.json: resuming and sharding.

Point p of the grid (row-major, x slowest) belongs to shard I of N when p % N == I - 1; points already in
landscape.csv for a run are skipped. The CSV and landscape_info.json are merged and rewritten atomically under a
lock every few seconds (so shards may run at once on one file system) and at the end; landscape_info.json's
settings must match an existing --out's.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from resx.atomic import write_csv_atomic, write_json_atomic
from resx.errors import ResxError
from resx.text import reason
from resx.studies import guards
from resx.studies.landscape.declare import CSV_COLUMNS, CSV_NAME, EXTRA_COLUMNS, INFO_NAME

if TYPE_CHECKING:
    from resx.studies.landscape.targets import Target

FLUSH_SECONDS = 5.0  # rewrite the CSV at most this often (and at the end)
# an existing --out must have been computed with these settings to be resumed
SETTINGS_KEYS = ("directions", "dims", "span", "points", "samples", "batch_size", "norm", "bn_recalibrate", "seed",
                 "precision", "data")
LOCK_NAME = ".landscape.lock"


class LandscapeStore:
    """The study's two files in `out`: what is done (for resuming), the settings check, and merged atomic rewrites
    under an exclusive lock (fcntl.flock on out/.landscape.lock), so that shards may write at the same time."""

    def __init__(self, out: Path, settings: dict[str, Any], overwrite: bool):
        self.out = Path(out)
        self.settings = json.loads(json.dumps(settings))  # as JSON reads it back (tuples become lists)
        self.overwrite = overwrite
        self.earlier: list[Path] = []
        self.pending: list[dict] = []
        self.run_info: dict[str, dict] = {}
        self.increments: dict[str, list[float]] = {}  # run -> [points evaluated, seconds] since the last flush
        self.last_flush = time.monotonic()

    @property
    def csv_path(self) -> Path:
        return self.out / CSV_NAME

    @property
    def info_path(self) -> Path:
        return self.out / INFO_NAME

    def earlier_files(self) -> list[Path]:
        """The files of an earlier landscape study in `out` (those the study declares, its declare.py).
        Not guards.check_study_folder: a study with the same settings is resumed, not refused."""
        return guards.earlier_study(self.out, "landscape")

    def read_info(self) -> dict | None:
        try:
            return json.loads(self.info_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise ResxError(f"{self.info_path} is not readable JSON; pass --overwrite to replace the study, or "
                            "give another --out") from None

    def check(self, targets: Sequence[Target]) -> None:
        """An existing study in `out` is resumed only when its settings match (else a one-line error); with
        `overwrite` its files are listed for removal once every check has passed."""
        found = self.earlier_files()
        if self.overwrite:
            self.earlier = found
            return
        if not self.csv_path.exists():
            return
        info = self.read_info()
        if info is None:
            raise ResxError(f"{self.out} holds {CSV_NAME} without {INFO_NAME}: its settings are unknown; pass "
                            "--overwrite to replace it, or give another --out")
        diffs = [f"{k} {info.get(k)!r} there, {v!r} now" for k, v in self.settings.items() if info.get(k) != v]
        if diffs:
            raise ResxError(f"{self.out} holds a landscape study with other settings ({'; '.join(diffs[:3])}); "
                            "pass --overwrite to replace it, or give another --out")
        # The runs are part of what the study is: a landscape of other runs is another study, never merged into
        # this one's CSV (its points would sit beside another net's, in one file and one figure).
        before, now = sorted((info.get("runs") or {})), sorted(t.name for t in targets)
        if before and before != now:
            raise ResxError(f"{self.out} holds a landscape of {', '.join(before)}, not of {', '.join(now)}; pass "
                            "--overwrite to replace it, or give another --out")
        for target in targets:
            earlier = (info.get("runs") or {}).get(target.name, {})
            if earlier and earlier.get("source") != target.source:
                raise ResxError(f"{self.out} holds run {target.name} from {earlier.get('source')}, not "
                                f"{target.source}; pass --overwrite to replace the study, or give another --out")

    def start(self) -> None:
        """Remove the study replaced with `overwrite`; an info file without its CSV (a study stopped before its
        first row) describes nothing and goes too."""
        guards.remove_files(self.earlier)
        self.earlier = []
        if not self.csv_path.exists():
            self.info_path.unlink(missing_ok=True)

    def read_rows(self) -> pd.DataFrame:
        if not self.csv_path.exists():
            return pd.DataFrame(columns=[*CSV_COLUMNS, *EXTRA_COLUMNS])
        try:
            rows = pd.read_csv(self.csv_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ResxError(f"{self.csv_path} is not a readable CSV ({reason(e, 80)}); pass "
                            "--overwrite to replace it") from None
        if "run" in rows.columns:
            rows["run"] = rows["run"].astype(str)
        return rows

    def done(self, run: str) -> set[int]:
        """Point indices of `run` already measured (here or by another shard)."""
        rows = self.read_rows()
        if "point" not in rows.columns or not len(rows):
            return set()
        return {int(p) for p in rows.loc[rows["run"].astype(str) == run, "point"]}

    def add(self, row: dict, seconds: float) -> None:
        self.pending.append(row)
        counts = self.increments.setdefault(row["run"], [0, 0.0])
        counts[0] += 1
        counts[1] += seconds

    def describe_run(self, name: str, entry: dict) -> None:
        self.run_info.setdefault(name, {}).update(entry)

    def due(self) -> bool:
        return time.monotonic() - self.last_flush >= FLUSH_SECONDS

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / LOCK_NAME, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def flush(self, info: dict[str, Any]) -> pd.DataFrame:
        """Merge the pending rows and per-run facts into the files on disk (another shard's included); returns
        every row."""
        with self._locked():
            rows = self.read_rows()
            if self.pending:
                new = pd.DataFrame(self.pending, columns=[*CSV_COLUMNS, *EXTRA_COLUMNS])
                rows = new if not len(rows) else pd.concat([rows, new], ignore_index=True)
                rows = rows.drop_duplicates(["run", "point"], keep="first")
                order = {run: i for i, run in enumerate(dict.fromkeys(rows["run"].astype(str)))}
                rows = rows.assign(_order=rows["run"].astype(str).map(order)).sort_values(
                    ["_order", "point"], kind="stable").drop(columns="_order")
                leading = [*CSV_COLUMNS, *(c for c in rows.columns if c not in CSV_COLUMNS)]
                rows = rows[leading].reset_index(drop=True)
                write_csv_atomic(self.csv_path, rows)
            merged = self._merged_info(info, rows)
            write_json_atomic(self.info_path, merged)
        self.pending, self.increments = [], {}
        self.last_flush = time.monotonic()
        return rows

    def _merged_info(self, info: dict[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
        merged = self.read_info() or {}
        devices = list(dict.fromkeys([*merged.get("devices", []), info["device"]]))
        runs = merged.get("runs") or {}
        merged.update(info)
        merged["devices"] = devices
        for name, entry in self.run_info.items():
            run = runs.setdefault(name, {})
            run.update(entry)
            points, seconds = self.increments.get(name, (0, 0.0))
            run["evaluated_points"] = run.get("evaluated_points", 0) + points
            run["evaluated_seconds"] = round(run.get("evaluated_seconds", 0.0) + seconds, 4)
            if run["evaluated_points"]:
                run["seconds_per_point"] = round(run["evaluated_seconds"] / run["evaluated_points"], 4)
            run["points_done"] = int((rows["run"].astype(str) == name).sum()) if len(rows) else 0
        merged["runs"] = runs
        return merged
