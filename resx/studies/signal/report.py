"""The signal study's section of REPORT.md, from its CSVs and signal_info.json: do the plain nets' gradients vanish
or explode across their blocks, are the residual blocks' Jacobians near the identity (He et al. 2016, §3), and do
the deep linear nets scale the signal by a^l? Every sentence that states a result is computed from the files here."""

import math
from pathlib import Path
from typing import TYPE_CHECKING

from resx.markdown import computed_with, figures, heading, markdown_table
from resx.studies.signal import draw as signal_plots
from resx.studies.signal.declare import FIGURES, NEAR_IDENTITY, TITLE, VANISH_FACTOR
from resx.studies.signal.draw import max_rel_error, number, state, twin_groups

if TYPE_CHECKING:
    import pandas as pd

def _pairs(summary: "pd.DataFrame") -> "list[tuple[str, pd.Series, pd.Series]]":
    """(description, plain row, residual row) for every twin pair in one state (final checkpoints and fresh nets)."""
    final = summary[summary["final"]] if "final" in summary.columns else summary
    final = final.assign(_group=twin_groups(final))
    pairs = []
    for (group, trained), part in final.groupby(["_group", "trained"], sort=False):
        plain, res = part[~part["residual"]], part[part["residual"]]
        if len(plain) and len(res):
            pairs.append(("trained" if trained else "at initialisation", plain.iloc[0], res.iloc[0]))
    return pairs


def _gain_words(gain: float) -> str:
    import pandas as pd

    if gain is None or pd.isna(gain):
        return "not measured"
    if gain > VANISH_FACTOR:
        return f"grows {gain:.3g}x towards the input (explodes)"
    if gain < 1 / VANISH_FACTOR:
        return f"shrinks to {gain:.3g} of its size towards the input (vanishes)"
    return f"changes by {gain:.3g}x, within a factor {VANISH_FACTOR:g} (neither vanishes nor explodes)"


def _comparison(plain_gain, residual_gain) -> str:
    """How much less (or more) the shortcuts let the gradient change across the blocks, on a log scale."""
    try:
        p, r = abs(math.log(float(plain_gain))), abs(math.log(float(residual_gain)))
    except (TypeError, ValueError):
        return ""
    if math.isnan(p) or math.isnan(r) or max(p, r) < math.log(2):
        return ""
    return " (the shortcuts make the change smaller)" if r < p else " (the shortcuts do NOT make the change smaller)"


def verdicts(summary: "pd.DataFrame", post_activation: set[str]) -> list[str]:
    """Plain sentences: do the plain nets' gradients vanish or explode across their blocks, and are the residual
    blocks' Jacobians near the identity (median distance below NEAR_IDENTITY)?"""
    import pandas as pd

    lines, vanish, near, judged = [], 0, 0, 0
    healthy_plain: list[str] = []  # plain nets whose gradient neither vanishes nor explodes
    far_residual: list[str] = []  # residual nets whose blocks are not near the identity
    for when, plain, res in _pairs(summary):
        judged += 1
        p_gain, r_gain = plain.get("gradient_gain"), res.get("gradient_gain")
        p_bad = p_gain is not None and not pd.isna(p_gain) and not (1 / VANISH_FACTOR <= p_gain <= VANISH_FACTOR)
        vanish += p_bad
        p_dist, r_dist = plain.get("median_dist_identity"), res.get("median_dist_identity")
        r_near = r_dist is not None and not pd.isna(r_dist) and r_dist < NEAR_IDENTITY
        near += r_near
        if not p_bad:
            healthy_plain.append(str(plain["run"]))
        if not r_near:
            far_residual.append(str(res["run"]))
        lines.append(
            f"- {plain['run']} vs {res['run']} ({when}): without shortcuts the gradient {_gain_words(p_gain)}; with "
            f"them it {_gain_words(r_gain)}{_comparison(p_gain, r_gain)}. Median ||J - I||_F / ||I||_F per block: "
            f"{number(p_dist)} plain, {number(r_dist)} residual: the residual blocks are {'' if r_near else 'NOT '}near the identity"
            + (" (a ReLU after the addition: J = D(I + dF/dx), the mask D keeps it away from I)"
               if not r_near and res["run"] in post_activation else "") + ".")
    if judged:
        lines.append(
            f"- **What the classic arguments claim** (Bengio, Simard, Frasconi 1994; He et al. 2016, §3: plain nets' gradients vanish or explode with depth; residual blocks' "
            f"Jacobians stay near the identity): the plain gradient vanishes or explodes in {vanish} of {judged} "
            f"pairs, and the residual blocks are near the identity in {near} of {judged}. "
            + ("The measurement shows both claims." if vanish == near == judged else
               "The measurement does not show both claims everywhere."
               + (f" Plain gradients that neither vanish nor explode: {', '.join(healthy_plain)}"
                  + (" (He et al. 2015, §4.1, saw the same: with BatchNorm, plain nets' gradients keep healthy norms; "
                     "the trouble of deep plain nets is optimisation, not vanishing gradients)"
                     if any(not run.startswith("linear") for run in healthy_plain) else "")
                  + "." if healthy_plain else "")
               + (f" Residual blocks not near the identity: {', '.join(far_residual)}." if far_residual else "")))
        lines.append(f"  (Thresholds of this report: a factor {VANISH_FACTOR:g} across the blocks; a distance "
                     f"below {NEAR_IDENTITY:g}.)")
    return lines


def _linear_lines(info: dict) -> list[str]:
    import pandas as pd

    linear = pd.DataFrame(info.get("linear") or [])
    if linear.empty:
        return []
    rows = [[r["run"], f"{r['scale']:g}", r["depth"], r["init_scheme"], number(r.get("expected")),
             number(r["forward_gain"]), number(r["gradient_gain"]), number(r.get("sigma_max")),
             number(max_rel_error(r))]
            for _, r in linear.iterrows()]
    lines = ["**Deep linear nets** (resx/models/linear.py: W = aB in the plain net, a branch of (a/l)B in the "
             "residual one; float64): the factor by which the blocks scale the signal (forward: last block's output "
             "RMS / first block's input RMS) and the gradient (first block's input / last block's output), against "
             "the exact a^l and (1 + a/l)^l:", "",
             markdown_table(["net", "a", "l", "init", "exact", "forward", "gradient", "stack σmax", "max rel. error"],
                            rows, align="lrrlrrrrr"), ""]
    exact = linear[linear["expected"].notna()] if "expected" in linear.columns else linear.iloc[0:0]
    if len(exact):
        worst = max(max_rel_error(r) for _, r in exact.iterrows())
        lines += [f"Measured and exact agree to {worst:.2g} relative at worst"
                  + (": a^l exactly, as a product of l layers predicts." if worst < 1e-6 else ": NOT to float precision.") , ""]
    return lines


def signal_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    layers = signal_plots.read_layers(folder)
    jacobians = signal_plots.read_jacobians(folder)
    if layers is None and jacobians is None:
        return []
    info = signal_plots.read_info(folder)
    summary = signal_plots.summarise(layers, jacobians, info)
    lines = [heading(folder, results_dir, TITLE, several), ""]
    provenance = computed_with(info)
    if provenance:
        lines += [provenance, ""]
    if info:
        lines += [f"{info.get('batch', '')}; loss: {info.get('loss', 'mean cross-entropy')}; BatchNorm in "
                  f"{info.get('batchnorm', 'eval mode')}; {info.get('precision', 'fp32')}. Block Jacobians on "
                  f"{info.get('jacobian_examples', '?')} examples, {info.get('lanczos_steps', '?')} Lanczos steps: "
                  f"{info.get('jacobian', '')}. Stack: {info.get('whole_net_map', '')}.", ""]
    if not summary.empty:
        rows = [[r["run"], "residual" if r["residual"] else "plain", state(r), number(r.get("blocks")),
                 number(r.get("gradient_gain")), number(r.get("forward_gain")), number(r.get("median_sigma_max")),
                 number(r.get("median_dist_identity")), number(r.get("whole_sigma_max"))]
                for _, r in summary.iterrows()]
        lines += ["Gradient gain: gradient RMS at the first block's input over that at the last block's output "
                  "(above 1 it grows towards the input, below 1 it vanishes).", "",
                  markdown_table(["run", "shortcut", "state", "blocks", "gradient gain", "forward gain",
                                  "median σmax", "median ‖J−I‖/‖I‖", "stack σmax"], rows, align="lllrrrrrr"), ""]
        post = {w["run"] for w in info.get("whole_net", []) if w.get("post_activation")}
        lines += verdicts(summary, post) + [""]
    lines += _linear_lines(info)
    lines += figures(folder, list(FIGURES), report_dir, {
        "signal_layers": "Activation and gradient RMS per weighted layer: plain vs residual, at init (dashed) and trained",
        "signal_blocks": "RMS of each block's output and of the gradient at its input",
        "block_jacobians": "Per block: largest singular value, smallest (estimate), distance from the identity",
    })
    return lines
