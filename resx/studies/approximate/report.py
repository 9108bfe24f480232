"""The approximation study's section of REPORT.md, from its CSVs and approximation_info.json, beside what the theory
(Hanin & Sellke 2017; Lu et al. 2017; Lin & Jegelka 2018) and public replications of Lin & Jegelka's toy claim.
Every sentence that states a result is computed from the files here, so that it cannot drift from them."""

from pathlib import Path
from typing import TYPE_CHECKING

from resx.markdown import computed_with, figures, heading, markdown_table
from resx.studies.approximate.declare import (CLAIM_NARROW, CLAIM_RESNET_ACCURACY, CLAIM_RESNET_DEPTH, CLAIM_SOURCE,
                                              CLAIM_THEORY, FIGURES, MARGIN_COLUMNS, RADII, TITLE)

if TYPE_CHECKING:  # pandas comes with draw.py's readers
    import pandas as pd

INPUT_DIM = 2  # every task of the study is points in the plane
BEATS_CONSTANT = 0.05  # a net "beats a constant" when its training accuracy is this far above the larger class


def _pct(x) -> str:
    return f"{100 * float(x):.1f}%"


def _range(row: "pd.Series", column: str) -> str:
    mean, low, high = (row.get(f"{column}_{k}") for k in ("mean", "min", "max"))
    if mean is None or mean != mean:
        return "—"
    return f"{100 * mean:.1f} ({100 * low:.1f}–{100 * high:.1f})" if row["seeds"] > 1 else f"{100 * mean:.1f}"


def narrow_nets(frame: "pd.DataFrame") -> "pd.Series":
    """Rows of fully connected ReLU nets no wider than the input (mlp_plain of width <= d): the theorem's nets."""
    return (frame["model"].astype(str) == "mlp_plain") & (frame["width"].astype(int) <= INPUT_DIM)


def narrow_verdict(frame: "pd.DataFrame") -> list[str]:
    """The replications' claim: the width-d net learns a constant (the class ratio) at every depth."""
    narrow = frame[narrow_nets(frame)]
    if narrow.empty or "train_class1_share" not in narrow.columns:
        return []
    lines = []
    for label, part in narrow.groupby("label", sort=False):
        constant = (part["train_class1_share"] == 0) | (part["train_class1_share"] == 1)
        margin = part["train_accuracy"] - part.get("majority_share", 0.5)
        means = part.groupby("depth")["train_accuracy"].mean()
        beating = sorted(int(d) for d, m in part.assign(_m=margin).groupby("depth")["_m"].mean().items()
                         if m > BEATS_CONSTANT)
        best = part.loc[part["train_accuracy"].idxmax()]
        shown = bool(constant.all())
        lines.append(
            f"- **{label}** (claim, from {CLAIM_SOURCE}: {CLAIM_NARROW}). Measured: {int(constant.sum())} of "
            f"{len(part)} nets put every training point in one class; the mean training accuracy over seeds runs "
            f"from {_pct(means.min())} (depth {int(means.idxmin())}) to {_pct(means.max())} (depth "
            f"{int(means.idxmax())}), the best single net {_pct(best['train_accuracy'])} (depth {int(best['depth'])}, "
            f"seed {int(best['seed'])}). "
            + ("The measurement shows the claim." if shown else
               "The measurement does NOT show the claim at every depth"
               + (f": the mean beats a constant by more than {100 * BEATS_CONSTANT:g} points at depth(s) "
                  f"{', '.join(map(str, beating))}." if beating else ": some nets do not learn a constant.")))
    return lines


def resnet_verdict(summary: "pd.DataFrame") -> list[str]:
    """The replications' claim: the one-neuron ResNet reaches about 98-99% training accuracy from depth 5 on."""
    res = summary[(summary["model"] == "onenet_res") & (summary["depth"] >= CLAIM_RESNET_DEPTH)]
    if res.empty:
        return []
    lines = []
    for label, part in res.groupby("label", sort=False):
        low = part.loc[part["train_accuracy_mean"].idxmin()]
        held = bool((part["train_accuracy_mean"] >= CLAIM_RESNET_ACCURACY).all())
        lines.append(
            f"- **{label}** (claim, from {CLAIM_SOURCE}: near {100 * CLAIM_RESNET_ACCURACY:g}–99% training accuracy "
            f"from depth {CLAIM_RESNET_DEPTH} on). Measured at depths {', '.join(str(int(d)) for d in part['depth'])}: "
            f"mean training accuracy {_pct(part['train_accuracy_mean'].min())} to "
            f"{_pct(part['train_accuracy_mean'].max())}, the lowest seed {_pct(part['train_accuracy_min'].min())}; "
            f"the lowest mean at depth {int(low['depth'])}. "
            + ("The measurement shows the claim." if held else
               f"The measurement does NOT show the claim: a mean below {100 * CLAIM_RESNET_ACCURACY:g}%."))
    return lines


def theory_lines(frame: "pd.DataFrame") -> list[str]:
    """The boundedness claim, checked on each trained net: does class 1 reach the far circles?"""
    column = MARGIN_COLUMNS[-1]
    if column not in frame.columns:
        return []
    far = RADII[-1]
    reaches = frame[column] > 0
    predicts = (frame.get("train_class1_share", 1.0) > 0) | reaches
    lines = [f"- **Theory**: {CLAIM_THEORY}. Measured on each trained net:"]
    narrow = narrow_nets(frame) & predicts
    if narrow.any():
        k, n = int((reaches & narrow).sum()), int(narrow.sum())
        lines.append(f"  - width-≤{INPUT_DIM} nets (mlp_plain) that put any training point in class 1: class 1 reaches "
                     f"the circle of radius {far:g} in {k} of {n}"
                     + (", as the theorem demands." if k == n else
                        f"; for the other {n - k} the search found no class-1 point on that circle: a class-1 region "
                        "thinner than the search resolves, or a measurement that misses it (the theorem allows none "
                        "bounded)."))
    others = frame[~narrow_nets(frame) & predicts]
    for label, part in others.groupby("label", sort=False):
        inside = part[part[column] <= 0]
        depths = sorted({int(d) for d in inside["depth"]})
        lines.append(f"  - {label}: of the {len(part)} nets that put any training point in class 1, class 1 stays inside "
                     f"the circle of radius {far:g} (no class-1 point found on it) in {len(inside)}"
                     + (f" (depths {', '.join(map(str, depths))})" if depths else "")
                     + ("; bounded as far as this measures." if len(inside) else "."))
    return lines


def flat_lines(frame: "pd.DataFrame", curves: "pd.DataFrame | None") -> list[str]:
    """How much the one-neuron ResNet's training loss still moved over the last quarter of training."""
    res = frame[frame["model"] == "onenet_res"]
    if res.empty or curves is None or "loss_three_quarters" not in res.columns:
        return []
    last = curves.sort_values("step").groupby(["label", "depth", "seed"])["loss"].last()
    moved = [abs(float(r.loss_three_quarters) - float(last.get((str(r.label), int(r.depth), int(r.seed)), float("nan"))))
             for r in res.itertuples()]
    moved = [m for m in moved if m == m]
    if not moved:
        return []
    return [f"- **Training length**: over the last quarter of the steps the one-neuron ResNets' training loss moved by "
            f"at most {max(moved):.3g} (median {sorted(moved)[len(moved) // 2]:.2g}) in absolute terms: "
            + ("flattened." if max(moved) < 0.01 else "NOT flat everywhere; more --steps may change the numbers.")]


def approximate_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.studies.approximate import draw

    frame = draw.read_results(folder)
    if frame is None:
        return []
    info = draw.read_info(folder)
    lines = [heading(folder, results_dir, TITLE, several), ""]
    provenance = computed_with(info)
    if provenance:
        lines += [provenance, ""]
    recipe = info.get("recipe") or {}
    if info:
        lines += [f"Task {info.get('task', '?')}: {info.get('task_about', '')}. {info.get('data', '')}. Training: "
                  f"{recipe.get('optimizer', 'Adam')}, {recipe.get('batch', '?')}, {recipe.get('steps', '?')} steps, "
                  f"lr {recipe.get('lr', '?')} {recipe.get('lr_schedule', '')}; {recipe.get('loss', '')}. Depth: "
                  f"{info.get('depth', 'blocks')}. Far field: {info.get('far_class1_share', '')}; "
                  f"{info.get('far_margin_max', '')}.", ""]
    summary = draw.summarise(frame)
    tags = [f"r{r:g}" for r in RADII]
    rows = [[r["label"], int(r["depth"]), r.get("hidden_layers", "—"), int(r["params"]), _range(r, "train_accuracy"),
             _range(r, "test_accuracy"), _range(r, "far_class1_share"),
             " / ".join(f"{r.get(f'reached_{t}', '—')}" for t in tags), f"{r.get('constant', '—')} of {r['seeds']}"]
            for _, r in summary.iterrows()]
    lines += [markdown_table(["model", "depth", "hidden layers", "params", "train acc. %", "test acc. %",
                              f"class 1 on r={RADII[-1]:g} circle %", f"class 1 reaches r={'/'.join(f'{r:g}' for r in RADII)} (nets)",
                              "constant (nets)"], rows, align="lrrrrrrrr"),
              "", "Mean over seeds (lowest–highest seed). Constant: nets that put every training point in one class.",
              ""]
    lines += narrow_verdict(frame) + resnet_verdict(summary) + theory_lines(frame)
    lines += flat_lines(frame, draw.read_curves(folder)) + [""]
    lines += figures(folder, list(FIGURES), report_dir, {
        "approximation_regions": "Decision regions of the first seed's nets (rows: models, columns: depths)",
        "approximation_accuracy": "Training and test accuracy against depth (mean, min–max over seeds)",
        "approximation_far": "Share of far circles put in class 1, and the nets whose class 1 reaches them",
        "approximation_loss": "Training loss along training (first seed)",
    })
    return lines
