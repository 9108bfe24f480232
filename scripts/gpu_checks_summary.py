"""Summarise what scripts/gpu-checks.sh measured: WORK_DIR -> OUT/summary.json and OUT/summary.md.

usage: python3 scripts/gpu_checks_summary.py WORK_DIR OUT
Reads only the CSVs and JSONs the resx commands wrote; a part that did not run is reported as missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


def capture(work: Path) -> dict:
    """Graph vs eager: the largest per-epoch difference of training loss and errors, per precision."""
    result = {}
    for precision in ("fp32", "bf16"):
        graph = read(work / f"capture-graph-{precision}" / "metrics.csv")
        eager = read(work / f"capture-eager-{precision}" / "metrics.csv")
        if graph is None or eager is None or len(graph) != len(eager):
            result[precision] = "missing"
            continue
        info = json.loads((work / f"capture-graph-{precision}" / "run_info.json").read_text())
        result[precision] = {
            "graphed": info.get("cuda_graph"),
            "epochs": len(graph),
            "max_train_loss_diff": float((graph["train_loss"] - eager["train_loss"]).abs().max()),
            "max_train_error_diff": float((graph["train_error"] - eager["train_error"]).abs().max()),
            "max_test_error_diff": float((graph["test_error"] - eager["test_error"]).abs().max()),
            "graph_images_per_second": float(graph["images_per_second"].iloc[-1]),
            "eager_images_per_second": float(eager["images_per_second"].iloc[-1]),
        }
    return result


def bench(work: Path) -> list | str:
    frame = read(work / "bench" / "bench.csv")
    if frame is None:
        return "missing"
    cols = [c for c in ("model", "method", "images_per_second", "images_per_second_min", "images_per_second_max",
                        "precision", "gflops", "fraction_of_peak", "peak_memory_mb") if c in frame.columns]
    rows = frame[cols].to_dict("records")
    common = frame[frame["method"] == "common-recipe"].set_index("model")["images_per_second"]
    for row in rows:
        if row["model"] in common.index:
            row["vs_common_recipe"] = round(float(row["images_per_second"] / common[row["model"]]), 2)
    return rows


def grid(work: Path) -> list | str:
    summary = read(work / "grid" / "summary.csv")
    curves = read(work / "grid" / "curves.csv")
    if summary is None or curves is None:
        return "missing"
    speed = curves.groupby("model")["images_per_second"].median()
    rows = summary[["model", "final_train_error_mean", "final_test_error_mean", "best_test_error_mean"]].to_dict("records")
    for row in rows:
        row["images_per_second_median"] = float(speed.get(row["model"], float("nan")))
    return rows


def main(work: Path, out: Path) -> None:
    summary = {"gpu": (work / "gpu.txt").read_text().strip() if (work / "gpu.txt").exists() else "unknown",
               "capture": capture(work), "bench": bench(work), "grid": grid(work)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    lines = ["# GPU checks", "", f"GPU: {summary['gpu']}", "", "## Capture (graph vs eager)", ""]
    lines += [f"- {k}: {v}" for k, v in summary["capture"].items()]
    lines += ["", "## Bench", ""]
    lines += [f"- {r}" for r in summary["bench"]] if isinstance(summary["bench"], list) else ["- missing"]
    lines += ["", "## Grid", ""]
    lines += [f"- {r}" for r in summary["grid"]] if isinstance(summary["grid"], list) else ["- missing"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
