"""The degradation study's verdicts, one set of rules for REPORT.md (`degradation_verdicts`, used by report.py)
and the terminal (`verdict`, printed by `resx compare-plain` and `resx demo`): does the degradation show (He et al.
2015 Fig. 6 left: deeper plain nets train worse), and does depth help the residual nets (Fig. 6 right)?

Torch-free and pandas-free at import (the frames come from the caller), so that the report and the command can
both use it without importing the grid's training code.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from resx import reference
from resx.markdown import pct

if TYPE_CHECKING:  # pandas is imported by whoever builds the summary
    import pandas as pd


def compare(part: "pd.DataFrame", which: str) -> "tuple[pd.Series, pd.Series, float, float]":
    """The shallowest and deepest net of `part` (plain or residual rows of summary.csv), the difference of their
    final `which` (train/test) error, deep minus shallow, and the seeds' spread of that difference (the two stds
    added in quadrature; 0 with one seed). He et al. 2015 Fig. 6: deeper plain nets train worse (difference > 0),
    deeper residual nets test better (difference < 0)."""
    part = part.sort_values("depth")
    shallow, deep = part.iloc[0], part.iloc[-1]
    diff = float(deep[f"final_{which}_error_mean"] - shallow[f"final_{which}_error_mean"])
    stds = [float(row.get(f"final_{which}_error_std", float("nan"))) for row in (shallow, deep)]  # none: one seed
    spread = math.sqrt(sum(0.0 if math.isnan(v) else v * v for v in stds))
    return shallow, deep, diff, spread


def single_runs(part: "pd.DataFrame") -> bool:
    """Whether the shallowest or the deepest net of `part` is a single run (no spread over seeds to judge by)."""
    part = part.sort_values("depth")
    ends = part.iloc[[0, -1]]
    if "seeds" in ends.columns and ends["seeds"].notna().all():
        return bool((ends["seeds"] <= 1).any())
    return compare(part, "test")[3] == 0


def two_run_noise() -> float:
    """How far apart two runs of one recipe land: runs spread about ±reference.RUN_TO_RUN_SPREAD each, so the
    difference of two independent runs about sqrt(2) times that."""
    return math.sqrt(2) * reference.RUN_TO_RUN_SPREAD


def depth_effect(part: "pd.DataFrame", which: str) -> str:
    """What depth does to the final `which` (train/test) error of `part`'s nets (rows of summary.csv), deep against
    shallow: "lower", "higher", or "level" when the difference says nothing: single runs closer than two runs of
    one recipe land apart (two_run_noise), or seeds whose spread covers it."""
    _, _, diff, spread = compare(part, which)
    margin = two_run_noise() if single_runs(part) else spread
    if abs(diff) <= margin:
        return "level"
    return "lower" if diff < 0 else "higher"


def depth_helps(residual: "pd.DataFrame") -> str:
    """He et al. 2015 Fig. 6 right, for the residual rows of summary.csv: "improve" when the deepest net tests
    better than the shallowest, "worse" when it tests worse, "level" when the difference says nothing
    (depth_effect)."""
    return {"lower": "improve", "higher": "worse", "level": "level"}[depth_effect(residual, "test")]


def residual_claim(residual: "pd.DataFrame") -> str:
    """The headline of He et al. Fig. 6 right, the same words on the terminal and in REPORT.md."""
    outcome = depth_helps(residual)
    if outcome != "level":
        return {"improve": "improve with depth", "worse": "do not improve with depth"}[outcome]
    trains = {"lower": "; the deeper trains better", "higher": "; the deeper trains worse",
              "level": " and train level too"}[depth_effect(residual, "train")]
    return f"test level at both depths{trains}"


def any_level(part: "pd.DataFrame") -> bool:
    """Whether the test or the training error of `part`'s shallowest and deepest net is called level."""
    return any(depth_effect(part, which) == "level" for which in ("test", "train"))


def level_reason(part: "pd.DataFrame") -> str:
    """The sentence that says why a difference between `part`'s shallowest and deepest net is called level."""
    if single_runs(part):
        return (f"One run each: two runs of one recipe differ by about {100 * two_run_noise():.1f} points (runs of "
                f"ResNet-56 spread ±{100 * reference.RUN_TO_RUN_SPREAD:.1f} in the public reproduction), so a smaller "
                "difference says nothing about which net is better.")
    return "The seeds' spread covers the difference called level."


# --- REPORT.md -----------------------------------------------------------------------------------------------------
def degradation_verdicts(summary: "pd.DataFrame") -> list[str]:
    """Does the degradation show (He et al. 2015 Fig. 6 left), and does depth help the residual nets (right)?
    REPORT.md's bullets."""
    lines = []

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
        level = any_level(residual)
        lines.append(
            f"- **Residual nets {residual_claim(residual)} (He et al. Fig. 6, right; Table 6).** {deep['model']} ends "
            f"at {pct(deep['final_test_error_mean'])}% test error, {shallow['model']} at "
            f"{pct(shallow['final_test_error_mean'])}% ({100 * abs(diff):.2f} points apart); training error "
            f"{'falls' if train_diff < 0 else 'rises'} with depth ({pct(shallow['final_train_error_mean'])}% → "
            f"{pct(deep['final_train_error_mean'])}%)." + (f" {level_reason(residual)}" if level else ""))
    else:
        lines.append("- Residual vs depth: needs residual nets of at least two depths.")
    seeds = summary["seeds"] if "seeds" in summary.columns else None
    if seeds is not None and (seeds.fillna(1) <= 1).any():
        lines.append("- Some models have a single seed: no spread over seeds to judge a difference against "
                     "(the public reproduction saw ±0.5 points between runs of ResNet-56).")
    return lines


# --- the terminal --------------------------------------------------------------------------------------------------
def verdict(summary: "pd.DataFrame") -> list[str]:
    """Plain sentences: does the degradation show, and do the residual nets improve with depth?"""
    lines = []
    for residual in (False, True):
        part = summary[summary["residual"] == residual].sort_values("depth")
        if len(part) < 2:
            continue
        shallow, deep, train_diff, _ = compare(part, "train")  # the same rule as REPORT.md's
        a, b = 100 * shallow["final_train_error_mean"], 100 * deep["final_train_error_mean"]
        if not residual:
            shows = train_diff > 0
            lines.append(
                f"Degradation {'SHOWS' if shows else 'does NOT show'}: {deep['model']} ends with training error "
                f"{b:.2f}% vs {a:.2f}% for {shallow['model']} (He et al. 2015 Fig. 6 left: deeper plain nets train worse)."
            )
        else:
            ta, tb = 100 * shallow["final_test_error_mean"], 100 * deep["final_test_error_mean"]
            claim = residual_claim(part).replace("do not", "do NOT")
            level = any_level(part)
            lines.append(
                f"Residual nets {claim}: {deep['model']} test error "
                f"{tb:.2f}% vs {ta:.2f}% for {shallow['model']}; training error {b:.2f}% vs {a:.2f}% "
                "(He et al. 2015 Fig. 6 right)." + (f" {level_reason(part)}" if level else "")
            )
    # The deepest depth with both twins (a grid with ResNet-110 has no plain-110).
    paired = [d for d, g in summary.groupby("depth") if g["residual"].nunique() == 2] if len(summary) else []
    if paired:
        deepest = max(paired)
        pair = summary[summary["depth"] == deepest]
        plain, res = pair[~pair["residual"]].iloc[0], pair[pair["residual"]].iloc[0]
        lines.append(
            f"At depth {deepest}: {res['model']} trains to {100 * res['final_train_error_mean']:.2f}% training error, "
            f"its plain twin {plain['model']} (same parameters) to {100 * plain['final_train_error_mean']:.2f}%."
        )
    return lines
