"""REPORT.md: what resx measured, beside what the papers published, with the figures.

`write_report(results_dir)` reads only files on disk (the studies' CSVs, run_info.json / provenance.json /
config.yaml / stages.json) and the papers' numbers in `resx.reference`, so it runs anywhere without torch and can
be rerun after any study finishes. Sections for studies that have not run are left out.

Sources of the comparisons: He et al. 2015 Table 6 and Fig. 6 (degradation), Li et al. 2018 (nets without
shortcuts), Veit et al. 2016 Figs. 3, 5 and 6 (lesions, paths).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

import resx
from resx import reference
from resx.atomic import write_text_atomic
from resx.errors import ResxError
from resx.markdown import DASH, duration, figures, heading, link, markdown_table, pct, pct_pm
from resx.plots import bench as bench_plots
from resx.plots import degradation as degradation_plots
from resx.plots import lesion as lesion_plots
from resx.plots import paths as paths_plots
from resx.plots.discover import LOOKED_FOR, find_studies
from resx.plots.paths import distribution_centre, effective_window

__all__ = ["effective_window", "markdown_table", "write_report"]

PROVENANCE_FILES = ("run_info.json", "provenance.json", "config.yaml")
# shown first, in this order; everything else found goes into a collapsed list
PROVENANCE_KEYS = (
    "machine", "host", "gpu", "device_name", "device", "dataset", "profile", "seeds", "seed", "model", "precision",
    "cuda_graph", "batch_size", "epochs", "iterations", "total_iterations", "resx_version", "git_commit", "python",
    "torch", "cuda", "cudnn",
)


# --- provenance ---------------------------------------------------------------------------------------------------
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; short lists of scalars become "x, y"."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return {prefix: ", ".join(map(str, obj))}
        return {prefix: json.dumps(obj, default=str)[:120]}
    return {prefix: obj}


def _read_provenance_file(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception:  # OSError, JSON or YAML errors: lenient, a broken file is listed, not fatal
        return None
    return data if isinstance(data, dict) else None


def collect_provenance(results_dir: Path) -> tuple[dict[str, list[str]], list[Path], list[Path]]:
    """{key: distinct values} over every provenance file under results_dir, the files read and the unreadable."""
    values: dict[str, list[str]] = {}
    read, broken = [], []
    for root, dirs, files in os.walk(results_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name not in PROVENANCE_FILES:
                continue
            path = Path(root) / name
            data = _read_provenance_file(path)
            if data is None:
                broken.append(path)
                continue
            read.append(path)
            for key, value in _flatten(data).items():
                if not key:
                    continue
                text = str(value)
                seen = values.setdefault(key, [])
                if text not in seen:
                    seen.append(text)
    return values, read, broken


def _summarise_values(values: list[str], limit: int = 6) -> str:
    try:
        values = sorted(values, key=float)
    except ValueError:
        pass
    if len(values) <= limit:
        return ", ".join(values)
    return f"{len(values)} values: {', '.join(values[:limit])}, …"


def provenance_section(results_dir: Path, meta: dict[str, Any] | None) -> tuple[list[str], bool]:
    """The provenance section, and whether the dataset looks like the JPEG ImageFolder copy of CIFAR-10."""
    lines = ["## Provenance", ""]
    meta = dict(meta or {})
    run_file = results_dir / "reproduce.json"  # written by `resx reproduce`: profile, data, machine, commit
    recorded = _read_provenance_file(run_file) if run_file.is_file() else None
    for key, value in (recorded or {}).items():
        meta.setdefault("dataset" if key == "data" else key, value)
    meta.setdefault("resx_version", resx.__version__)
    found, read, broken = collect_provenance(results_dir)
    rows = [(key, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
            for key, v in meta.items() if v is not None and key not in ("stages", "notes")]
    lines += [markdown_table(["what", "value"], rows), ""]

    stages = dict(meta.get("stages") or {})
    stages_file = results_dir / "stages.json"
    if stages_file.is_file():
        data = _read_provenance_file(stages_file)
        if data is None:
            lines += ["`stages.json` could not be read.", ""]
        else:
            stages.update(data)
    # Only finished stages with a wall time are stages (stages.json may also hold other entries).
    stages = {k: v for k, v in stages.items() if isinstance(v, dict) and _is_number(v.get("seconds"))}
    if stages:
        extra_keys = sorted({k for info in stages.values() if isinstance(info, dict) for k in info} - {"seconds"})
        stage_rows = []
        for name, info in stages.items():
            info = info if isinstance(info, dict) else {"seconds": info}
            stage_rows.append([name, duration(info.get("seconds")) if "seconds" in info else DASH,
                               *[info.get(k, DASH) for k in extra_keys]])
        total = sum(float(i["seconds"]) for i in stages.values() if isinstance(i, dict) and _is_number(i.get("seconds")))
        lines += ["Wall time per stage:", "", markdown_table(["stage", "wall time", *extra_keys], stage_rows), ""]
        if total:
            lines += [f"Total: {duration(total)}.", ""]

    if read:
        priority = [k for k in PROVENANCE_KEYS if k in found]
        rest = [k for k in found if k not in priority]
        lines += [f"From {len(read)} provenance file(s) ({', '.join(sorted({p.name for p in read}))}) under the "
                  f"results folder; distinct values over all runs:", ""]
        if priority:
            lines += [markdown_table(["key", "value(s)"], [(k, _summarise_values(found[k])) for k in priority]), ""]
        if rest:
            lines += ["<details><summary>all other keys</summary>", "",
                      markdown_table(["key", "value(s)"], [(k, _summarise_values(found[k], 4)) for k in rest]),
                      "", "</details>", ""]
    else:
        lines += ["No run_info.json, provenance.json or config.yaml found under the results folder.", ""]
    if broken:
        lines += ["Unreadable: " + ", ".join(f"`{link(p, results_dir)}`" for p in broken), ""]

    texts = [str(v) for vs in found.values() for v in vs] + [str(v) for v in meta.values()]
    jpeg = any("imagefolder" in t.lower() or "jpeg" in t.lower() for t in texts)
    if jpeg:
        lines += ["> **Dataset note.** The provenance mentions an ImageFolder / JPEG dataset: most likely the JPEG "
                  "(quality 75) copy of CIFAR-10. JPEG loss makes every error a few points higher "
                  "than the papers' numbers on the original images; the orderings (plain-56 worse than plain-20, "
                  "ResNet-56 better than ResNet-20) should still show.", ""]
    notes = meta.get("notes")
    if notes:
        lines += ["Choices of this profile: " + " ".join(str(notes).split()), ""]
    lines += [recipe_line(found), ""]
    return lines, jpeg


def recipe_line(found: dict[str, list[str]]) -> str:
    """What the runs under the results folder trained with, read from their config.yaml files (distinct values
    joined with ' / '), beside He et al. 2015 §4.2's recipe."""
    def values(key: str, default: str = "?") -> str:
        seen = [v for v in found.get(key, []) if v not in ("None", "")]
        return " / ".join(seen) if seen else default

    augment = found.get("augment", [])
    crops = ("pad-4 crop and flip" if set(augment) <= {"None", "True"} else
             "no augmentation" if set(augment) == {"False"} else "pad-4 crop and flip for some runs, none for others")
    warmups = [v for v in found.get("warmup_lr", []) if v != "None"]
    milestones = values("lr_milestones")
    parts = [f"SGD, momentum {values('momentum')}, weight decay {values('weight_decay')}, batch {values('batch_size')}",
             f"lr {values('lr')} x {values('lr_decay', '0.1')} at {milestones} of training" if milestones != "?"
             else f"lr {values('lr')}", crops]
    if warmups:
        parts.append(f"warm-up at lr {' / '.join(warmups)} for the runs whose config names it, until an epoch's "
                     "training error is below 80%")
    if "True" in found.get("zero_init_residual", []):
        parts.append("residual branches zero-initialised (Goyal et al. 2017) for the residual nets")
    precision = " / ".join(v for v in found.get("precision", []) if v not in ("auto", "None"))  # what it resolved to
    if precision:
        parts.append(f"arithmetic: {precision} (weights, BN statistics and the optimizer in fp32)")
    return ("Recipe of these runs: " + "; ".join(parts) + ". He et al. 2015 §4.2: SGD, momentum 0.9, weight decay "
            "1e-4, batch 128, lr 0.1 /10 at 32k and 48k of 64k iterations, pad-4 crop and flip, warm-up at 0.01 for "
            "ResNet-110 only. resx standardises inputs per channel where the paper subtracts the per-pixel mean "
            "(crops are padded with the mean colour, as in the paper). One iteration is one training batch.")


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


# --- degradation --------------------------------------------------------------------------------------------------
def degradation_verdicts(summary: pd.DataFrame) -> list[str]:
    """Does the degradation show (He et al. 2015 Fig. 6 left), and does depth help the residual nets (right)?"""
    lines = []

    def compare(part: pd.DataFrame, which: str) -> tuple[pd.Series, pd.Series, float, float]:
        part = part.sort_values("depth")
        shallow, deep = part.iloc[0], part.iloc[-1]
        diff = float(deep[f"final_{which}_error_mean"] - shallow[f"final_{which}_error_mean"])
        spread = float(pd.Series([shallow[f"final_{which}_error_std"], deep[f"final_{which}_error_std"]])
                       .fillna(0).pow(2).sum() ** 0.5)
        return shallow, deep, diff, spread

    def within(diff: float, spread: float) -> str:
        if spread > 0 and abs(diff) <= spread:
            return f" — but the difference ({100 * abs(diff):.2f} points) is within the seeds' spread ({100 * spread:.2f})"
        return ""

    plain = summary[~summary["residual"]]
    if plain["depth"].nunique() >= 2:
        shallow, deep, diff, spread = compare(plain, "train")
        shows = diff > 0
        lines.append(
            f"- **Degradation (He et al. Fig. 6, left): {'shows' if shows else 'does not show'}.** The deepest plain net "
            f"({deep['model']}, depth {deep['depth']}) ends at {pct(deep['final_train_error_mean'])}% training error, "
            f"the shallowest ({shallow['model']}, depth {shallow['depth']}) at {pct(shallow['final_train_error_mean'])}%"
            + (within(diff, spread) if shows else "") + ".")
    else:
        lines.append("- Degradation: needs plain nets of at least two depths.")
    residual = summary[summary["residual"]]
    if residual["depth"].nunique() >= 2:
        shallow, deep, diff, spread = compare(residual, "test")
        _, _, train_diff, _ = compare(residual, "train")
        better = diff < 0
        lines.append(
            f"- **Residual nets {'improve' if better else 'do not improve'} with depth (He et al. Fig. 6, right; "
            f"Table 6).** {deep['model']} ends at {pct(deep['final_test_error_mean'])}% test error, "
            f"{shallow['model']} at {pct(shallow['final_test_error_mean'])}%"
            + (within(diff, spread) if better else "")
            + f"; training error {'falls' if train_diff < 0 else 'rises'} with depth "
            f"({pct(shallow['final_train_error_mean'])}% → {pct(deep['final_train_error_mean'])}%).")
    else:
        lines.append("- Residual vs depth: needs residual nets of at least two depths.")
    seeds = summary["seeds"] if "seeds" in summary.columns else None
    if seeds is not None and (seeds.fillna(1) <= 1).any():
        lines.append("- Some models have a single seed: no spread over seeds to judge a difference against "
                     "(the public reproduction saw ±0.5 points between runs of ResNet-56).")
    return lines


def degradation_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    curves = degradation_plots.read_curves(folder)
    summary = degradation_plots.read_summary(folder)
    if summary is None and curves is not None:
        summary = degradation_plots.summarize_curves(curves)
    if summary is None:
        return []
    summary = summary.sort_values(["residual", "depth"]).reset_index(drop=True)
    lines = [heading(folder, results_dir, "Degradation: plain vs residual (He et al. 2015)", several), ""]
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
            f"{float(params) / 1e6:.2f}M" if params is not None and _is_number(params) and not pd.isna(params) else DASH,
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


# --- lesion -------------------------------------------------------------------------------------------------------
def lesion_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    single = lesion_plots.read_single(folder)
    delete_k = lesion_plots.read_delete_k(folder)
    swap = lesion_plots.read_swap(folder)
    if single is None and delete_k is None and swap is None:
        return []
    lines = [heading(folder, results_dir, "Lesion study (Veit et al. 2016)", several), ""]
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


def single_deletion_verdicts(single: pd.DataFrame) -> list[str]:
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
                         f"({'as' if within >= 0.5 else 'NOT as'} Veit et al. Fig. 3: most deletions change little).")
        else:
            lowest, highest = float(part["test_error"].min()), float(part["test_error"].max())
            lines.append(f"- {run} (plain): its single deletions give {pct(lowest)} to {pct(highest)}% error against "
                         f"{pct(baseline)}% ({'as' if within == 0 else 'NOT as'} Veit et al.: a plain net without "
                         "any one of its layers falls towards chance).")
    return lines


def delete_k_verdicts(means: pd.DataFrame) -> list[str]:
    """Veit et al. 2016 Fig. 5a: the mean error grows smoothly with the number of deleted blocks k."""
    lines = []
    for run, part in means.groupby("run", sort=False):
        part = part.sort_values("k")
        values = part["mean"].to_numpy()
        rises = sum(b >= a for a, b in zip(values, values[1:]))
        lines.append(f"- {run}: mean error {pct(values[0])}% at k = {int(part['k'].iloc[0])}, {pct(values[-1])}% at "
                     f"k = {int(part['k'].iloc[-1])}; it rises at {rises} of {len(values) - 1} steps of k.")
    return lines


# --- paths --------------------------------------------------------------------------------------------------------
def block_gradient_ratios(blocks: pd.DataFrame) -> pd.DataFrame:
    """Per run and state (init/trained): gradient norm at the first and last block and their ratio."""
    rows = []
    for (run, residual, trained), part in blocks.groupby(["run", "residual", "trained"], sort=False):
        part = part.sort_values("block")
        first, last = float(part["grad_norm"].iloc[0]), float(part["grad_norm"].iloc[-1])
        rows.append({"run": run, "residual": bool(residual), "trained": bool(trained), "blocks": len(part),
                     "first": first, "last": last, "ratio": first / last if last else float("nan")})
    return pd.DataFrame(rows).sort_values(["trained", "residual", "run"]).reset_index(drop=True)


def paths_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    distribution = paths_plots.read_distribution(folder)
    total = paths_plots.read_total(folder)
    gradients = paths_plots.read_gradients(folder)
    blocks = paths_plots.read_block_gradients(folder)
    if all(frame is None for frame in (distribution, total, gradients, blocks)):
        return []
    lines = [heading(folder, results_dir, "Paths and gradients (Veit et al. 2016)", several), ""]
    veit_lo, veit_hi = reference.VEIT_EFFECTIVE_WINDOW
    n_veit = reference.VEIT_BLOCKS
    rows = []
    n = None
    if distribution is not None:
        n = int(distribution["k"].max())
        centre = distribution_centre(distribution["k"], distribution["fraction"])
        rows.append(["blocks n", n, n_veit])
        rows.append(["centre of the path-length distribution", f"{centre:.1f}", reference.VEIT_PATH_LENGTH_CENTRE])
    if total is not None:
        lo, hi, captured = effective_window(total["k"], total["total"])
        n = n if n is not None else int(total["k"].max())
        rows.append(["effective window: shortest k range holding 90% of the total gradient",
                     f"{lo} to {hi} ({100 * captured:.1f}% of the gradient)", f"{veit_lo} to {veit_hi}"])
        rows.append(["the window as a share of n", f"{lo / n:.2f} to {hi / n:.2f}" if n else DASH,
                     f"{veit_lo / n_veit:.2f} to {veit_hi / n_veit:.2f}"])
        # Veit et al. name no threshold for "almost all": on an exponential curve, 5..17 of 54 holds about 96%.
        lo95, hi95, captured95 = effective_window(total["k"], total["total"], 0.95)
        rows.append(["shortest k range holding 95%", f"{lo95} to {hi95} ({100 * captured95:.1f}%)", DASH])
        if n:
            a, b = round(veit_lo * n / n_veit), round(veit_hi * n / n_veit)
            share = total[(total["k"] >= a) & (total["k"] <= b)]["total"].sum() / total["total"].sum()
            rows.append([f"share of the total gradient in Veit's range, scaled to n ({a} to {b})",
                         f"{100 * share:.1f}%", "almost all"])
        peak = int(total.loc[total["total"].idxmax(), "k"])
        rows.append(["path length with the most total gradient", peak, DASH])
        if distribution is not None:
            inside = distribution[(distribution["k"] >= lo) & (distribution["k"] <= hi)]["fraction"].sum()
            rows.append(["share of all paths inside the window", f"{100 * inside:.2f}%",
                         f"{100 * reference.VEIT_WINDOW_PATH_FRACTION:.2f}%"])
            below = hi < centre
            rows.append(["the window lies below the distribution's centre (short paths carry the gradient)",
                         "yes" if below else f"NO: it reaches k = {hi}, the centre is {centre:.1f}", "yes"])
    if gradients is not None and len(gradients) >= 2:
        g = gradients.sort_values("k")
        g = g[g["grad_norm_mean"] > 0]
        if len(g) >= 2:
            import numpy as np

            slope = np.polyfit(g["k"].astype(float), np.log(g["grad_norm_mean"].astype(float)), 1)[0]
            rows.append(["gradient per path: factor per extra block (log-linear fit)", f"{np.exp(slope):.3f}",
                         "falls exponentially"])
    if rows:
        lines += [markdown_table(["", "resx", f"Veit et al. (n = {n_veit})"], rows), ""]
    if blocks is not None:
        ratios = block_gradient_ratios(blocks)
        table = [[r["run"], "residual" if r["residual"] else "plain", "trained" if r["trained"] else "init",
                  f"{r['first']:.3g}", f"{r['last']:.3g}", f"{r['ratio']:.3g}"] for _, r in ratios.iterrows()]
        lines += ["**Gradient norm per block**, first block (input side) against last:", "",
                  markdown_table(["run", "shortcut", "state", "first block", "last block", "first / last"], table,
                                 align="lllrrr"), ""]
        init = ratios[~ratios["trained"]]
        for blocks_count, same_depth in init.groupby("blocks"):  # compare twins of one depth, never across depths
            plain, res = same_depth[~same_depth["residual"]], same_depth[same_depth["residual"]]
            if len(plain) and len(res):
                p_ratio, r_ratio = plain["ratio"].iloc[0], res["ratio"].iloc[0]
                lines += [f"At initialisation, {blocks_count} blocks ({plain['run'].iloc[0]} vs {res['run'].iloc[0]}): the "
                          f"first/last ratio is {p_ratio:.3g} without shortcuts and {r_ratio:.3g} with them: "
                          + ("the plain net's gradient shrinks towards the input, the residual net's much less."
                             if p_ratio < r_ratio
                             else "here the plain net does NOT lose more gradient towards the input (with BatchNorm, "
                                  "gradients of deep plain nets grow towards the input at initialisation)."), ""]
    lines += figures(folder, ["paths", "block_gradients"], report_dir, {
        "paths": "Path lengths, gradient per path length and total gradient per length; cf. Veit et al. 2016 Fig. 6",
        "block_gradients": "Gradient norm reaching each block: plain vs residual, at init (dashed) and trained",
    })
    return lines


# --- bench --------------------------------------------------------------------------------------------------------
def bench_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    frame = bench_plots.read_bench(folder)
    if frame is None:
        return []
    lines = [heading(folder, results_dir, "Training speed", several), ""]
    has_memory = "peak_memory_mb" in frame.columns
    agg = frame.groupby(["model", "method", "batch_size"], sort=False).agg(
        images_per_second=("images_per_second", "mean"),
        **({"peak_memory_mb": ("peak_memory_mb", "max")} if has_memory else {}))
    rows = [[m, method, int(b), f"{r['images_per_second']:,.0f}",
             f"{r['peak_memory_mb']:,.0f}" if has_memory and not pd.isna(r["peak_memory_mb"]) else DASH]
            for (m, method, b), r in agg.iterrows()]
    lines += [markdown_table(["model", "method", "batch", "images/s", "peak memory (MB)"], rows, align="llrrr"), ""]
    ref_rows = [[model, *[v for v in methods.values()]]
                for model, methods in reference.BENCH_H100_IMAGES_PER_SECOND.items()]
    lines += ["For comparison, reference runs of the same nets outside resx (one H100, batch 128, images/s):", "",
              markdown_table(["model", *reference.BENCH_H100_METHODS.values()], ref_rows, align="lrrrr"), ""]
    lines += figures(folder, ["bench"], report_dir, {"bench": "Training throughput per model and method"})
    return lines


# --- the report ---------------------------------------------------------------------------------------------------
SECTIONS = {"degradation": degradation_section, "lesion": lesion_section, "paths": paths_section,
            "bench": bench_section}


def write_report(results_dir: str | Path, out: str | Path | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write REPORT.md (default `results_dir/REPORT.md`) and return its path.

    Sections: provenance (from `meta`, stages.json and every run_info.json / provenance.json / config.yaml found),
    then one per study found under `results_dir`: degradation (summary table beside He et al. Table 6 and Li et
    al. 2018; does the degradation show; do ResNets improve with depth), lesion (single, delete-k and swap errors
    beside Veit et al.), paths (the 90% effective window and the distribution's centre beside Veit et al.; the
    first/last block gradient ratio of plain vs residual nets), bench. Figures already drawn (see
    `resx.plots.plot_results`) are linked with paths relative to the report.

    `meta` may hold machine, gpu, dataset, profile, seeds, git_commit, wall time ('stages': {name: {'seconds': s}})
    or anything else worth a line."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResxError(f"no such folder: {results_dir}")
    out = Path(out) if out is not None else results_dir / "REPORT.md"
    if out.is_dir():
        out = out / "REPORT.md"
    report_dir = out.parent
    studies = find_studies(results_dir)

    lines = ["# resx: residual networks, reproduced", "",
             f"Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by resx "
             f"{resx.__version__} from the CSVs under `{results_dir}`. Errors are test error in % on the dataset "
             "named under Provenance; the papers' numbers (CIFAR-10 unless said otherwise) are in "
             "`resx/reference.py`.", ""]
    provenance, _ = provenance_section(results_dir, meta)
    lines += provenance
    body: list[str] = []
    for kind, section in SECTIONS.items():
        folders = studies[kind]
        for folder in folders:
            body += section(folder, results_dir, report_dir, several=len(folders) > 1)
    if not body:
        body = [f"No study results found under `{results_dir}` (looked for {LOOKED_FOR}).", ""]
    lines += body
    return write_text_atomic(out, "\n".join(lines).rstrip() + "\n")
