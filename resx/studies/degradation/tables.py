"""The degradation grid's tables: `collect` merges whatever run folders exist (every shard's) into the tidy
curves.csv (one row per run x epoch), iteration_curves.csv (every run's iterations.csv) and summary.csv (one row
per model, mean ± std over seeds); `final_train_error` says what "final" means for a run that ends mid-epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from resx.atomic import write_csv_atomic
from resx.stats import mean_std
from resx.studies.degradation.declare import CURVE_COLUMNS, CURVES, ITERATION_CURVES, SUMMARY, SUMMARY_COLUMNS
from resx.studies.grids import GridRun, final_train_error


def _load_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame] | None:
    info_file, metrics_file = run_dir / "run_info.json", run_dir / "metrics.csv"
    if not info_file.exists() or not metrics_file.exists():
        return None
    try:
        info = json.loads(info_file.read_text())
        metrics = pd.read_csv(metrics_file)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    return info, metrics


def collect(out: str | Path, runs: list[GridRun] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge the run folders under `out` (every shard's) into curves.csv and summary.csv; returns both.
    Only finished runs enter the summary; curves hold every epoch written so far (column `finished` says whose
    run is complete)."""
    out = Path(out)
    known = {r.run_dir.name: r for r in runs or []}
    frames, finals, iteration_frames = [], [], []
    for run_dir in sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
        loaded = _load_run(run_dir)
        if loaded is None:
            continue
        info, metrics = loaded
        if metrics.empty:
            continue
        grid = known.get(run_dir.name)
        config = _read_config(run_dir)
        family = grid.family if grid else _family_of(info["model"])
        depth = grid.depth if grid else int(config.get("depth") or _depth_of(info["model"]))
        model = info["model"] if family != "mlp" else f"{info['model']}-{depth}"
        finished = info.get("status") == "finished"
        curve = metrics.assign(model=model, family=family, residual=bool(info["residual"]), depth=depth,
                               seed=int(info["seed"]), finished=finished)
        frames.append(curve)
        iterations = _read_iterations(run_dir)
        if iterations is not None and not iterations.empty:
            iteration_frames.append(iterations.assign(model=model, family=family, residual=bool(info["residual"]),
                                                      depth=depth, seed=int(info["seed"]), finished=finished))
        if finished:
            finals.append(dict(model=model, family=family, residual=bool(info["residual"]), depth=depth,
                               params=int(info["parameters"]), seed=int(info["seed"]),
                               final_train_error=final_train_error(metrics, info.get("steps_per_epoch")),
                               final_test_error=float(metrics["test_error"].iloc[-1]),
                               best_test_error=float(metrics["test_error"].min()),
                               iterations=int(metrics["iteration"].iloc[-1])))
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)
    curves = curves[[c for c in CURVE_COLUMNS if c in curves.columns] + [c for c in curves.columns if c not in CURVE_COLUMNS]]
    summary = summarise(pd.DataFrame(finals))
    write_csv_atomic(out / CURVES, curves)
    write_csv_atomic(out / SUMMARY, summary)
    if iteration_frames:  # He et al. Fig. 6 against iterations: every run's iterations.csv, tidy
        merged = pd.concat(iteration_frames, ignore_index=True)
        front = ["model", "family", "residual", "depth", "seed"]
        write_csv_atomic(out / ITERATION_CURVES, merged[front + [c for c in merged.columns if c not in front]])
    return curves, summary


def _read_iterations(run_dir: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(run_dir / "iterations.csv")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def summarise(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per model: mean and std over seeds of the final and best errors (std 0 for one seed)."""
    if finals.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    keys = ["model", "family", "residual", "depth"]
    grouped = finals.groupby(keys, sort=False)
    summary = grouped.agg(params=("params", "first"), seeds=("params", "size"), iterations=("iterations", "max"))
    for column in ("final_train_error", "final_test_error", "best_test_error"):
        stats = mean_std(finals, keys, column, sort=False, one_value_std=0.0)
        summary[f"{column}_mean"], summary[f"{column}_std"] = stats["mean"], stats["std"]
    summary = summary.reset_index().astype({"params": "int64", "iterations": "int64"})
    return summary[SUMMARY_COLUMNS].sort_values(["residual", "depth"]).reset_index(drop=True)


def _read_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ValueError):
        return {}


def _family_of(model: str) -> str:
    if model.startswith("mlp"):
        return "mlp"
    return "preact" if model.startswith("preresnet") else "cifar"


def _depth_of(model: str) -> int:
    digits = "".join(ch for ch in model if ch.isdigit())
    return int(digits) if digits else 0
