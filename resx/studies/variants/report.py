"""The variants study's section of REPORT.md (He et al. 2016, Tables 1 and 2, eqs. 4-6), from its CSVs, beside the
paper's numbers. Every sentence that states a result is computed here from the CSVs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resx import reference
from resx.markdown import DASH, computed_with, figures, heading, is_missing, markdown_table, pct, pct_pm, read_info
from resx.studies.variants.declare import INFO_NAME, ORIGINAL, TITLE


def variants_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.studies.variants import draw

    summary = draw.read_summary(folder)
    if summary is None:
        return []
    info = read_info(folder / INFO_NAME)
    lines = [heading(folder, results_dir, TITLE, several), ""]
    line = computed_with(info)
    if line:
        lines += [line, ""]
    lines += [_recipe(info, summary), ""]
    for kind, table in (("shortcut", "Table 1 of the paper"), ("block", "Table 2 of the paper"),
                        ("cardinality", "nets of one parameter budget with C groups; Xie et al. 2017, Table 3")):
        part = summary[summary["kind"] == kind]
        if part.empty:
            continue
        rows = [[r["variant"], f"{int(r['params']) / 1e6:.3f}M" if not is_missing(r.get("params")) else DASH,
                 f"{int(r['seeds'])} of {int(r.get('runs', r['seeds']))}",
                 pct_pm(r.get("final_train_error_mean"), r.get("final_train_error_std")),
                 pct_pm(r.get("final_test_error_mean"), r.get("final_test_error_std")),
                 pct(r.get("best_test_error")), _failed(r), _paper(r)] for _, r in part.iterrows()]
        lines += [f"**{kind.capitalize()} variants** ({table}; errors in %):", "",
                  markdown_table(["variant", "params", "finished", "final train error", "final test error",
                                  "best test error", "failed (diverged)", "paper"], rows, align="lrrrrrrr"), ""]
        lines += verdicts(part, kind) + [""]
    lines += gain_lines(draw.read_gains(folder)) + [""]
    lines += figures(folder, ["variants_curves", "variants_vs_paper", "variants_gains"], report_dir, {
        "variants_curves": "Training (dashed) and test (solid) error of every variant; cf. He et al. 2016 Figs. 3 and 6",
        "variants_vs_paper": "Final test error beside the paper's (ResNet-110, Tables 1 and 2)",
        "variants_gains": "Forward and backward gain over the blocks at initialisation; dashed: the shortcut path "
                          "alone; dotted: lambda^l (eqs. 4-6)",
    })
    return lines


def _recipe(info: dict[str, Any], summary) -> str:
    train = info.get("train") if isinstance(info.get("train"), dict) else {}
    model = summary["model"].iloc[0]
    its = info.get("iteration") or "one SGD step"
    length = f"{train['epochs']} epochs" if train.get("epochs") else f"{train.get('iterations') or 64000:,} iterations"
    return (f"Base net **{model}** on {train.get('data', '?')}, {length}, batch {train.get('batch_size', '?')}, "
            f"lr {train.get('lr', '?')} (an iteration is {its}). The paper's numbers are for ResNet-110 (Table 2 also "
            "ResNet-164) trained 64,000 iterations, median of 5 runs; \"fail\" there means a test error above "
            f"{100 * reference.IDENTITY_FAIL_ABOVE:.0f}%. Here \"failed\" counts runs whose loss became NaN or infinite.")


def _failed(row) -> str:
    failed = int(row.get("failed_runs") or 0)
    if not failed:
        return "0"
    at = row.get("diverged_at_iteration")
    return f"{failed}" + (f" (from iteration {int(at):,})" if not is_missing(at) else "")


def _paper(row) -> str:
    result = row.get("paper_result")
    if is_missing(result) or str(result) in ("", "nan"):
        return DASH
    return f"{result} ({row.get('paper_model')})"


def verdicts(part, kind: str) -> list[str]:
    """What the table shows against the paper, per variant: better or worse than the unmodified net, and whether
    the paper's ranking (which variants beat the original) holds."""
    original = part[part["variant"] == ORIGINAL[kind]]
    if original.empty or is_missing(original["final_test_error_mean"].iloc[0]):
        return [f"The unmodified net ({ORIGINAL[kind]}) is not among the finished runs: no comparison."]
    base = float(original["final_test_error_mean"].iloc[0])
    base_train = original["final_train_error_mean"].iloc[0]
    lines = []
    for _, r in part.iterrows():
        if r["variant"] == ORIGINAL[kind]:
            continue
        paper = r.get("paper_test_error")
        paper_text = str(r.get("paper_result") or "")
        if is_missing(r.get("final_test_error_mean")):
            lines.append(f"- {r['variant']}: no finished run ({_failed(r)} diverged); paper: {paper_text or DASH}.")
            continue
        ours = float(r["final_test_error_mean"])
        train_gap = (float(r["final_train_error_mean"]) - float(base_train)) if not is_missing(base_train) else None
        ours_word = "worse than" if ours > base else "no worse than"
        if kind == "cardinality":
            first = 100 * reference.RESNEXT_TABLE3_TOP1_ERROR[50][1]
            paper_word = (f"Xie et al.'s ImageNet ResNeXt-50 at this C: {paper_text}% top-1 against {first:.1f}% at C=1"
                          if paper_text else "not in Xie et al.'s Table 3")
        elif paper_text == "fail":
            paper_word = "the paper's net failed (above 20%)"
        elif not is_missing(paper):
            paper_orig = (reference.IDENTITY_SHORTCUT_TEST_ERROR["identity"] if kind == "shortcut"
                          else reference.ACTIVATION_PLACEMENT_TEST_ERROR["original"][110])
            paper_word = f"the paper's was {'worse' if float(paper) > paper_orig else 'better'} ({paper_text}%)"
        else:
            paper_word = "not in the paper"
        gap = f"; training error {100 * train_gap:+.2f} points" if train_gap is not None else ""
        lines.append(f"- {r['variant']}: test error {pct(ours)}%, {ours_word} {ORIGINAL[kind]} ({pct(base)}%){gap}; "
                     f"{paper_word}.")
    return lines


def gain_lines(gains) -> list[str]:
    """The shortcut path's gain from the first to the last block at initialisation, against lambda^L."""
    if gains is None:
        return []
    import pandas as pd

    from resx.studies.variants.draw import relative_to_identity

    gains = relative_to_identity(gains[gains["kind"] == "shortcut"])
    rows = []
    for _, part in gains.groupby("variant", sort=False):
        part = part.sort_values("block", kind="stable")
        r, f = part.iloc[-1], part.iloc[0]  # forward: the last block's output; backward: the first block's input
        predicted = pd.to_numeric(pd.Series([r.get("predicted_forward_gain")]), errors="coerce").iloc[0]
        rows.append([r["variant"], int(r["blocks"]), _num(r["forward_gain"]), _num(f["backward_gain"]),
                     _num(r["shortcut_forward_gain"]), _num(f.get("shortcut_backward_gain")), _num(predicted)])
    if not rows:
        return []
    return ["**The product over blocks (eqs. 4-6), measured at initialisation**: forward, the signal at the last block's "
            "output over that at the first block's input; backward, the gradient at the first block's input over that at "
            "the last block's input; the shortcut path is the net with every branch removed, relative to the identity "
            "net's (which removes the CIFAR nets' zero-padding); lambda^L where the shortcut is a constant scale:", "",
            markdown_table(["shortcut", "blocks L", "forward gain", "backward gain", "shortcut path, forward",
                            "shortcut path, backward", "lambda^L (forward)"], rows, align="lrrrrrr")]


def _num(value) -> str:
    if value is None or is_missing(value):
        return DASH
    value = float(value)
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"
