"""The variants study's tables, from its run folders: variants_curves.csv (one row per run and epoch, compare-plain's
curve columns with the variant first) and variants_summary.csv (one row per variant: final and best error, mean ±
std over the finished seeds, the runs whose loss became NaN or infinite, and the paper's number beside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from resx import reference
from resx.atomic import write_csv_atomic
from resx.engine.run_folder import read_run_info
from resx.stats import mean_std
from resx.studies.grids import final_train_error
from resx.studies.variants.declare import CURVE_COLUMNS, CURVES_NAME, SUMMARY_COLUMNS, SUMMARY_EXTRA, SUMMARY_NAME
from resx.studies.variants.plan import VariantRun


def paper_entry(kind: str, variant: str, depth: int | None) -> tuple[float | None, str, str]:
    """(test error or None, the entry as printed, the net it is for) from He et al. 2016: Table 1 for a shortcut
    (ResNet-110), Table 2 for a block (ResNet-164 where the base is 164 layers deep, else ResNet-110); for a
    cardinality, Xie et al. 2017's Table 3 (ImageNet top-1 at preserved complexity: printed, not a CIFAR test error)."""
    if kind == "cardinality":
        top1 = reference.RESNEXT_TABLE3_TOP1_ERROR[50].get(int(variant))
        if top1 is None:
            return None, "", ""
        width = reference.RESNEXT_TABLE3_WIDTHS[int(variant)]
        return None, f"ImageNet top-1 {100 * top1:.1f}", f"resnext50 {variant}x{width}d"
    if kind == "shortcut":
        table = reference.IDENTITY_SHORTCUT_TEST_ERROR
        if variant not in table:
            return None, "", ""
        error = table[variant]
        return error, "fail" if error is None else f"{100 * error:.2f}", "resnet110"
    by_depth = reference.ACTIVATION_PLACEMENT_TEST_ERROR.get(variant)
    if not by_depth:
        return None, "", ""
    paper_depth = 164 if depth == 164 else 110
    error = by_depth[paper_depth]
    return error, f"{100 * error:.2f}", f"resnet{paper_depth}"


def _run_rows(planned: VariantRun) -> tuple[dict[str, Any], pd.DataFrame] | None:
    run = planned.run
    info = read_run_info(run.run_dir)
    try:
        metrics = pd.read_csv(run.run_dir / "metrics.csv")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        metrics = pd.DataFrame()
    if not info:
        return None
    return info, metrics


def collect(out: str | Path, planned: list[VariantRun]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge the planned runs' folders into variants_curves.csv and variants_summary.csv; returns (curves, summary).
    A run counts once it has finished or diverged; an unfinished one adds its curve so far, not a summary value."""
    out = Path(out)
    frames, runs = [], []
    for p in planned:
        loaded = _run_rows(p)
        if loaded is None:
            continue
        info, metrics = loaded
        v, run = p.variant, p.run
        status = info.get("status")
        key = dict(variant=v.name, kind=v.kind, model=run.model, seed=run.seed)
        if not metrics.empty:
            frames.append(metrics.assign(**key, family=run.family, residual=True, depth=run.depth,
                                         finished=status == "finished"))
        if status == "finished" and not metrics.empty:
            runs.append(dict(**key, params=int(info["parameters"]), failed=False, diverged_at=None,
                             final_train_error=final_train_error(metrics, info.get("steps_per_epoch")),
                             final_test_error=float(metrics["test_error"].iloc[-1]),
                             best_test_error=float(metrics["test_error"].min()),
                             iterations=int(metrics["iteration"].iloc[-1])))
        elif status == "diverged":
            where = info.get("diverged_at") or {}
            runs.append(dict(**key, params=int(info.get("parameters") or 0), failed=True,
                             diverged_at=where.get("iteration"), final_train_error=None, final_test_error=None,
                             best_test_error=None, iterations=None))
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)
    curves = curves[[c for c in CURVE_COLUMNS if c in curves.columns] + [c for c in curves.columns if c not in CURVE_COLUMNS]]
    summary = summarise(pd.DataFrame(runs), planned)
    write_csv_atomic(out / CURVES_NAME, curves)
    write_csv_atomic(out / SUMMARY_NAME, summary)
    return curves, summary


def summarise(runs: pd.DataFrame, planned: list[VariantRun]) -> pd.DataFrame:
    """One row per variant, in the planned order: the finished runs' mean ± std (std 0 for one seed), the failed
    runs, and the paper's entry."""
    rows = []
    order = list(dict.fromkeys(p.variant for p in planned))
    depth = planned[0].run.depth if planned else None
    for v in order:
        part = runs[(runs["variant"] == v.name) & (runs["kind"] == v.kind)] if not runs.empty else runs
        if part.empty:
            continue
        done = part[~part["failed"]]
        row: dict[str, Any] = dict(variant=v.name, kind=v.kind, model=part["model"].iloc[0],
                                   params=int(part["params"].max()), seeds=len(done), runs=len(part),
                                   failed_runs=int(part["failed"].sum()))
        for column in ("final_train_error", "final_test_error", "best_test_error"):
            stats = mean_std(done.assign(all=0), ["all"], column, one_value_std=0.0) if len(done) else None
            row[f"{column}_mean"] = float(stats["mean"].iloc[0]) if stats is not None else None
            row[f"{column}_std"] = float(stats["std"].iloc[0]) if stats is not None else None
        row["best_test_error"] = float(done["best_test_error"].min()) if len(done) else None
        diverged = part["diverged_at"].dropna()
        row["diverged_at_iteration"] = int(diverged.min()) if len(diverged) else None
        row["iterations"] = int(done["iterations"].max()) if len(done) else None
        row["paper_test_error"], row["paper_result"], row["paper_model"] = paper_entry(v.kind, v.name, depth)
        row["macs"] = _macs(row["model"]) if v.kind == "cardinality" else None
        rows.append(row)
    columns = [*SUMMARY_COLUMNS, *SUMMARY_EXTRA]
    return pd.DataFrame(rows, columns=columns)[columns]


def _macs(model: str) -> int | None:
    """Multiply-accumulates of one 32x32 forward pass (the budget a cardinality net is matched in, with params)."""
    from resx.errors import ResxError
    from resx.models.budget import model_budget

    try:
        return model_budget(model)[1]
    except ResxError:
        return None
