"""The degradation study's section of REPORT.md (He et al. 2015 Fig. 6 and Table 6), from its CSVs, beside the
papers' numbers. Every sentence that states a result is computed from the CSVs here or in verdict.py (the same
rules as the terminal's), so that it cannot drift from them."""

from pathlib import Path

from resx import reference
from resx.markdown import DASH, computed_with, figures, heading, is_number, markdown_table, pct, pct_pm, read_info
from resx.studies.degradation.declare import INFO_NAME
from resx.studies.degradation.verdict import degradation_verdicts


def degradation_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    import pandas as pd

    from resx.studies.degradation import draw as degradation_plots

    curves = degradation_plots.read_curves(folder)
    summary = degradation_plots.read_summary(folder)
    if summary is None and curves is not None:
        summary = degradation_plots.summarize_curves(curves)
    if summary is None:
        return []
    summary = summary.sort_values(["residual", "depth"]).reset_index(drop=True)
    lines = [heading(folder, results_dir, "Degradation: plain vs residual (He et al. 2015)", several), ""]
    provenance = grid_computed_with(folder)
    if provenance:
        lines += [provenance, ""]
    if curves is not None:
        runs = curves.groupby(["model", "seed"]).ngroups
        epochs = int(curves["epoch"].max())
        its = int(curves["iteration"].max())
        unfinished = ""
        if "finished" in curves.columns:
            done = curves[curves["finished"]].groupby(["model", "seed"]).ngroups
            unfinished = f" ({runs - done} not finished: left out of the table)" if done < runs else ""
        lines += [f"{runs} runs{unfinished}, up to {epochs} epochs ({its:,} iterations; the paper trains 64,000). "
                  "Errors in %, mean ± std over seeds; final = at the end of training (training error over the "
                  "last epoch's worth of batches).", ""]
    rows = []
    for _, r in summary.iterrows():
        depth = int(r["depth"])
        he = reference.HE_TABLE6_TEST_ERROR.get(depth) if r["residual"] else None
        he_text = pct(he)
        if r["residual"] and depth == 110:  # Table 6's 6.43 is the best of 5 runs; beside a mean, give their mean
            mean, std = reference.HE_RESNET110_MEAN_STD
            he_text = f"{pct_pm(mean, std)} (best {pct(he)})"
        li = reference.LI_TEST_ERROR.get(depth, {}).get("residual" if r["residual"] else "plain")
        params = r.get("params")
        rows.append([
            r["model"], "residual" if r["residual"] else "plain", depth,
            f"{float(params) / 1e6:.2f}M" if params is not None and is_number(params) and not pd.isna(params) else DASH,
            int(r["seeds"]) if "seeds" in r and not pd.isna(r["seeds"]) else DASH,
            pct_pm(r["final_train_error_mean"], r["final_train_error_std"]),
            pct_pm(r["final_test_error_mean"], r["final_test_error_std"]),
            pct(r.get("best_test_error_mean")),
            he_text, pct(li),
        ])
    lines += [markdown_table(
        ["model", "shortcut", "depth", "params", "seeds", "final train error", "final test error", "best test error",
         "He et al. Table 6", "Li et al. 2018"], rows, align="llrrrrrrrr"), ""]
    lines += ["He et al. Table 6 lists ResNets only (option A shortcuts, 64k iterations); Li et al. 2018 trained the "
              "same nets with and without shortcuts. ResNet parameters in the paper: "
              + ", ".join(f"{d}: {p}M" for d, p in reference.HE_PARAMS_MILLIONS.items()) + ".", ""]
    lines += degradation_verdicts(summary) + [""]
    lines += figures(folder, ["degradation_curves", "error_vs_depth"], report_dir, {
        "degradation_curves": "Training (dashed) and test (bold) error against iterations; cf. He et al. 2015 Fig. 6",
        "error_vs_depth": "Final error against depth, mean ± std over seeds",
    })
    return lines


def grid_computed_with(folder: Path) -> str:
    """The line saying which precision the grid computed in, and where that comes from: the provenance block of
    grid_info.json's last invocation that trained runs (or a shard's grid_info-shard*.json's), else the `precision`
    of the runs' run_info.json (a grid written before grid_info.json had provenance, or one whose runs were all
    trained by invocations it does not record); '' when neither says."""
    # the last invocation that trained runs (an invocation that only found them finished, e.g. on another machine
    # to redraw the figures, says nothing of how they were computed)
    for path in [folder / INFO_NAME, *sorted(folder.glob("grid_info-shard*.json"))]:
        info = read_info(path)
        history = info.get("history") if isinstance(info.get("history"), list) else []
        trained = [h for h in history if isinstance(h, dict) and isinstance(h.get("provenance"), dict)
                   and (h.get("trained") or 0) > 0]
        if trained:
            return (f"{computed_with({'provenance': trained[-1]['provenance']}).rstrip('.')} (from {path.name}'s "
                    "provenance block of the last invocation that trained runs).")
    precisions: dict[str, int] = {}
    devices: set[str] = set()
    for path in sorted(folder.glob("*/run_info.json")):
        info = read_info(path)
        if info.get("precision"):
            precisions[str(info["precision"])] = precisions.get(str(info["precision"]), 0) + 1
            if info.get("device_name") or info.get("device"):
                devices.add(str(info.get("device_name") or info.get("device")))
    if not precisions:
        return ""
    runs = sum(precisions.values())
    which = ", ".join(f"**{p}**" + (f" ({n} runs)" if len(precisions) > 1 else "") for p, n in sorted(precisions.items()))
    where = f" on {' and '.join(sorted(devices))}" if devices else ""
    whose = f"the {runs} runs'" if runs > 1 else "the one run's"
    return (f"Computed in {which}{where} (from the `precision` in {whose} run_info.json: {INFO_NAME} records no "
            "invocation that trained them).")
