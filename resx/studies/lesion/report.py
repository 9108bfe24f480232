"""The lesion study's section of REPORT.md, from its CSVs, beside Veit et al. 2016's numbers (Figs. 3 and 5).
Every sentence that states a result is computed from the CSVs here, so that it cannot drift from them."""

from pathlib import Path
from typing import TYPE_CHECKING

from resx import reference
from resx.markdown import DASH, computed_with, figures, heading, markdown_table, pct, pct_pm, read_info
from resx.studies.lesion.declare import INFO_NAME

if TYPE_CHECKING:  # pandas is imported by the readers in draw.py
    import pandas as pd


def lesion_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.studies.lesion import draw as lesion_plots

    single = lesion_plots.read_single(folder)
    delete_k = lesion_plots.read_delete_k(folder)
    swap = lesion_plots.read_swap(folder)
    if single is None and delete_k is None and swap is None:
        return []
    lines = [heading(folder, results_dir, "Lesion study (Veit et al. 2016)", several), ""]
    provenance = computed_with(read_info(folder / INFO_NAME))
    if provenance:
        lines += [provenance, ""]
    if single is not None:
        rows = []
        for run, part in single.groupby("run", sort=False):
            top = part.loc[part["test_error"].idxmax()]
            down = part[part["downsampling"]].sort_values("block")
            rows.append([
                run, pct(part["baseline_error"].mean()),
                f"{pct(part['test_error'].min())} to {pct(part['test_error'].max())}",
                f"{int(top['block'])} ({pct(top['test_error'])})",
                ", ".join(f"{int(b)}: {pct(e)}" for b, e in zip(down["block"], down["test_error"])) or DASH,
                f"{pct(part.loc[~part['downsampling'], 'test_error'].median())}",
            ])
        # Veit et al. number blocks from 1; resx from 0: their block b is resx's b - 1.
        lo, hi = reference.VEIT_SINGLE_TYPICAL_RANGE
        rows.append([
            "Veit et al. (pre-ResNet-110)", pct(reference.VEIT_BASELINE_ERROR),
            f"mostly {pct(lo, 1)} to {pct(hi, 1)}", f"0 ({pct(reference.VEIT_SINGLE_LARGEST[1], 0)})",
            ", ".join(f"{b - 1}: {pct(reference.VEIT_SINGLE_LARGEST[b], 1)}" for b in reference.VEIT_DOWNSAMPLING_BLOCKS),
            DASH,
        ])
        sd_lo, sd_hi = reference.VEIT_STOCHASTIC_DEPTH_SINGLE_RANGE
        rows.append(["Veit et al., with stochastic depth", pct(reference.VEIT_STOCHASTIC_DEPTH_BASELINE_ERROR),
                     f"{pct(sd_lo, 1)} to {pct(sd_hi, 1)}", DASH, DASH, DASH])
        lines += ["**Deleting one block** (Fig. 3), test error %:", "",
                  markdown_table(["run", "no deletion", "single deletions", "worst block",
                                  "downsampling blocks", "median, other blocks"], rows), "",
                  "Blocks are numbered from 0 (Veit et al. number them from 1: their blocks 1, 19 and 37 are 0, 18 "
                  "and 36 here). A plain (VGG-style) net drops to chance "
                  f"(about {pct(reference.VEIT_PLAIN_SINGLE_DELETION_ERROR, 0)}% error) when any one layer is removed; "
                  "for a plain net, resx deletes one block at a time, i.e. two conv layers (the block's branch "
                  "becomes the identity).", ""]
        lines += single_deletion_verdicts(single) + [""]
    if delete_k is not None:
        means = lesion_plots.delete_k_means(delete_k)
        runs = list(dict.fromkeys(means["run"]))
        rows = []
        for k, veit in reference.VEIT_DELETE_K_ERROR.items():
            row = [k]
            for run in runs:
                hit = means[(means["run"] == run) & (means["k"] == k)]
                row.append(pct_pm(hit["mean"].iloc[0], hit["std"].iloc[0]) if len(hit) else DASH)
            rows.append(row + [pct(veit, 1)])
        lines += ["**Deleting k random blocks** (Fig. 5a), mean ± std test error % over draws:", "",
                  markdown_table(["k", *runs, "Veit et al."], rows, align="r" * (len(runs) + 2)), ""]
        if len(means):
            kmax = int(means["k"].max())
            lines += [f"resx deleted up to k = {kmax} blocks.", ""]
            lines += delete_k_verdicts(means) + [""]
    if swap is not None:
        means = lesion_plots.swap_means(swap)
        if means is not None:
            runs = list(dict.fromkeys(means["run"]))
            rows = []
            for swaps, veit in reference.VEIT_SWAP_ERROR.items():
                row = [swaps]
                for run in runs:
                    hit = means[(means["run"] == run) & (means["swaps"] == swaps)]
                    row.append(f"{pct_pm(hit['mean'].iloc[0], hit['std'].iloc[0])} (τ {hit['kendall_tau'].iloc[0]:.2f})"
                               if len(hit) else DASH)
                rows.append(row + [pct(veit, 1)])
            lines += ["**Reordering blocks** (Fig. 5b), mean test error % after random swaps (mean Kendall τ):", "",
                      markdown_table(["swaps", *runs, "Veit et al."], rows, align="r" * (len(runs) + 2)), ""]
        else:
            lines += ["lesion_swap.csv has no `swaps` column: see the figure for error against Kendall's tau.", ""]
    lines += figures(folder, ["lesion_single", "lesion_delete_k", "lesion_swap"], report_dir, {
        "lesion_single": "Test error when one block is deleted; cf. Veit et al. 2016 Fig. 3",
        "lesion_delete_k": "Test error against the number of deleted blocks; cf. Veit et al. 2016 Fig. 5a",
        "lesion_swap": "Test error against Kendall's tau after swapping blocks; cf. Veit et al. 2016 Fig. 5b",
    })
    return lines


SMALL_CHANGE = 0.02  # "no noticeable change" when deleting one block: within 2 points of the net's own error


def single_deletion_verdicts(single: "pd.DataFrame") -> list[str]:
    """Veit et al. 2016 Fig. 3, checked per run: a residual net survives the deletion of almost any one block
    (within SMALL_CHANGE of its error), a plain net does not (any deletion sends it towards chance)."""
    lines = []
    for run, part in single.groupby("run", sort=False):
        baseline = float(part["baseline_error"].mean())
        within = float(((part["test_error"] - baseline) <= SMALL_CHANGE).mean())
        residual = bool(part["residual"].iloc[0]) if "residual" in part.columns else True
        if residual:
            lines.append(f"- {run} (residual): {100 * within:.0f}% of its {len(part)} single deletions stay within "
                         f"{100 * SMALL_CHANGE:.0f} points of its {pct(baseline)}% error "
                         f"({'as' if within >= 0.5 else 'NOT as'} Veit et al. Fig. 3: most deletions change little); "
                         f"the deletions that hurt most: {worst_blocks(part)}.")
        else:
            lowest, highest = float(part["test_error"].min()), float(part["test_error"].max())
            lines.append(f"- {run} (plain): its single deletions give {pct(lowest)} to {pct(highest)}% error against "
                         f"{pct(baseline)}% ({'as' if within == 0 else 'NOT as'} Veit et al.: a plain net without "
                         "any one of its layers falls towards chance).")
    return lines


def worst_blocks(part: "pd.DataFrame", count: int = 4) -> str:
    """The `count` single deletions with the highest error, worst first, downsampling blocks marked: e.g.
    'block 9 (31.50%, downsampling), block 0 (28.80%), ...' (ties keep the lower block first)."""
    ranked = part.sort_values(["test_error", "block"], ascending=[False, True]).head(count)
    down = ranked["downsampling"] if "downsampling" in ranked.columns else [False] * len(ranked)
    return ", ".join(f"block {int(b)} ({pct(e)}%{', downsampling' if bool(d) else ''})"
                     for b, e, d in zip(ranked["block"], ranked["test_error"], down))


def delete_k_verdicts(means: "pd.DataFrame") -> list[str]:
    """Veit et al. 2016 Fig. 5a: the mean error grows smoothly with the number of deleted blocks k."""
    lines = []
    for run, part in means.groupby("run", sort=False):
        part = part.sort_values("k")
        values = part["mean"].to_numpy()
        rises = sum(b >= a for a, b in zip(values, values[1:]))
        lines.append(f"- {run}: mean error {pct(values[0])}% at k = {int(part['k'].iloc[0])}, {pct(values[-1])}% at "
                     f"k = {int(part['k'].iloc[-1])}; it rises at {rises} of {len(values) - 1} steps of k.")
    return lines


