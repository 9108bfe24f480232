"""The depth study's files in its folder: what is done (for resuming), the settings check, atomic rewrites.

A unit of work is one net shape at one k (or n) and one budget, its seeds trained side by side; after each, the
three CSVs and depth_info.json are rewritten whole, atomically, so a study stopped at any moment keeps every
finished unit. Rerunning the command skips the (net, seed) rows already in depth_fit.csv. The recipe (steps,
learning rate, train fraction, the recipe's version) of a target must match the one recorded in depth_info.json,
else the study is refused with the differences named; other k, budgets, depths or seeds are added to the study.
Both targets may share one folder (the stage of `resx reproduce` writes them there): rows carry their target.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from resx.atomic import write_csv_atomic, write_json_atomic
from resx.errors import ResxError
from resx.studies import guards
from resx.studies.depth.declare import (CURVE_COLUMNS, FIT_COLUMNS, FIT_EXTRA, INFO_NAME, PIECES_COLUMNS,
                                        PIECES_EXTRA)

FILES = {"fit": ("depth_fit.csv", FIT_COLUMNS, FIT_EXTRA),
         "pieces": ("depth_pieces.csv", PIECES_COLUMNS, PIECES_EXTRA),
         "curves": ("depth_curves.csv", CURVE_COLUMNS, ())}
ORDER = ["target", "built", "k", "budget", "model", "depth", "seed", "x"]
INTEGERS = ("k", "depth", "width", "params", "seed", "pieces", "budget", "train_points", "test_points", "steps")


class DepthStore:
    def __init__(self, out: str | Path, overwrite: bool):
        self.out = Path(out)
        self.overwrite = overwrite
        self.frames: dict[str, pd.DataFrame] = {}
        self.info: dict[str, Any] = {}

    def open(self, target: str, recipe: dict[str, Any]) -> None:
        """Check `out` (resume with the same recipe, refuse another, replace with `overwrite`), then load it."""
        earlier = guards.earlier_study(self.out, "depth")
        csvs = [p for p in earlier if p.suffix == ".csv"]
        if earlier and self.overwrite:
            guards.remove_files(earlier)
        elif csvs:
            try:
                self.info = json.loads((self.out / INFO_NAME).read_text())
            except (OSError, ValueError):
                raise ResxError(f"{self.out} holds depth CSVs without a readable {INFO_NAME}: their settings are "
                                "unknown; pass --overwrite to replace them, or give another --out") from None
            before = (self.info.get("targets", {}).get(target) or {}).get("recipe")
            if before is not None:
                recipe = json.loads(json.dumps(recipe))
                diffs = [f"{key} {before.get(key)!r} there, {value!r} now" for key, value in recipe.items()
                         if before.get(key) != value]
                if diffs:
                    raise ResxError(f"{self.out} holds a depth study of {target} with other settings "
                                    f"({'; '.join(diffs)}); pass --overwrite to replace it, or give another --out")
        self.frames = {name: self._read(name) for name in FILES}

    def _read(self, name: str) -> pd.DataFrame:
        file, required, extra = FILES[name]
        path = self.out / file
        if not path.is_file():
            return pd.DataFrame(columns=[*required, *extra])
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ResxError(f"{path} is not a readable CSV ({str(e).splitlines()[0][:80]}); pass --overwrite to "
                            "replace the study") from None
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise ResxError(f"{path}: missing column {missing[0]!r}; pass --overwrite to replace the study")
        return frame

    def done_seeds(self, target: str, k: int, model: str, depth: int, budget: int) -> set[int]:
        fit = self.frames["fit"]
        if not len(fit):
            return set()
        hit = fit[(fit["target"].astype(str) == target) & (fit["k"] == k) & (fit["model"].astype(str) == model)
                  & (fit["depth"] == depth) & (fit["budget"] == budget)]
        return {int(s) for s in hit["seed"]}

    def has_curve(self, target: str, k: int, model: str, depth: int, budget: int) -> bool:
        curves = self.frames["curves"]
        return bool(len(curves)) and bool(((curves["target"].astype(str) == target) & (curves["k"] == k)
                                           & (curves["model"].astype(str) == model) & (curves["depth"] == depth)
                                           & (curves["budget"] == budget)).any())

    def constructed_done(self) -> set[int]:
        pieces = self.frames["pieces"]
        if not len(pieces):
            return set()
        return {int(k) for k in pieces.loc[pieces["built"].astype(str) == "constructed", "k"]}

    def add(self, name: str, rows: list[dict]) -> None:
        if not rows:
            return
        new = pd.DataFrame(rows, columns=[*FILES[name][1], *FILES[name][2]])
        old = self.frames[name]
        self.frames[name] = new if not len(old) else pd.concat([old, new], ignore_index=True)

    def write(self, info: dict[str, Any]) -> None:
        """Every CSV and depth_info.json, whole and atomically (after each unit of work)."""
        for name, (file, required, extra) in FILES.items():
            frame = self.frames[name]
            if not len(frame) and not (self.out / file).exists():
                continue
            keys = [c for c in ORDER if c in frame.columns]
            frame = frame.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
            for column in INTEGERS:
                if column in frame.columns:
                    frame[column] = pd.array(pd.to_numeric(frame[column], errors="coerce").round(), dtype="Int64")
            leading = [*required, *extra, *(c for c in frame.columns if c not in (*required, *extra))]
            self.frames[name] = frame[leading]
            write_csv_atomic(self.out / file, self.frames[name])
        self.info = info
        write_json_atomic(self.out / INFO_NAME, info)
