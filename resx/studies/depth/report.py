"""The depth study's section of REPORT.md, from its CSVs, beside the papers' claims (Telgarsky 2015/2016; Håstad
1986; Bengio 2009). Every sentence that states a result is computed from the CSVs here (and the constructed
parity check from depth_info.json), so that it cannot drift from them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from resx.markdown import DASH, computed_with, duration, figures, heading, markdown_table, read_info
from resx.studies.depth.declare import (FOUND_RELATIVE_MSE, INFO_NAME, PARAM_TOLERANCE, PARITY_SOLVED_ERROR,
                                        PIECES_FRACTION, TITLE)

if TYPE_CHECKING:  # pandas comes with the readers in draw.py
    import pandas as pd


def _rate(found: int, nets: int) -> str:
    return f"{found}/{nets} ({100 * found / nets:.0f}%)" if nets else DASH


def depth_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.studies.depth import draw, summary

    fit, pieces = draw.read_fit(folder), draw.read_pieces(folder)
    if fit is None and pieces is None:
        return []
    info = read_info(folder / INFO_NAME)
    lines = [heading(folder, results_dir, TITLE, several), ""]
    provenance = computed_with(info)
    if provenance:
        lines += [provenance, ""]
    lines += ["**The claims.** The tent map m(x) = 2 relu(x) − 4 relu(x − 1/2) composed k times has 2^k linear "
              "pieces on [0, 1] and is computed exactly by a ReLU net of k layers of 2 units, while a net of l layers "
              "of m units has at most (m + 1)^l pieces on a line (Telgarsky: (2m)^l), so a net of fixed depth needs "
              "exponentially many units in k (Telgarsky 2015, arXiv 1509.08101; 2016, COLT, Theorem 1.1). Parity of "
              "n bits needs exponentially many AND/OR gates at fixed depth (Håstad 1986: a DNF has 2^(n−1) "
              "terms) but only O(n log n) units in a balanced tree of XORs of depth O(log n) (Bengio 2009, §2). "
              "Here: the constructed nets counted exactly, then nets trained by gradient descent at matched "
              "parameter counts (within "
              f"{100 * PARAM_TOLERANCE:.0f}%: integer widths), to see whether training finds what depth allows.", ""]
    lines += _constructed(summary.constructed(pieces))
    nets = summary.per_net(fit) if fit is not None else None
    if nets is not None and len(nets) and (nets["target"] == "sawtooth").any():
        lines += _sawtooth(fit, nets, summary.deep_vs_shallow(nets, "sawtooth"), summary.pieces_reached(pieces))
    if nets is not None and len(nets) and (nets["target"] == "parity").any():
        lines += _parity(fit, nets, info)
    if info.get("seconds") is not None:
        lines += [f"Training and counting took {duration(info['seconds'])} in all on {info.get('device_name', '?')} "
                  f"(summed over the invocations that built this folder).", ""]
    lines += figures(folder, ["depth_fits", "depth_error_sawtooth", "depth_pieces", "depth_error_parity"], report_dir, {
        "depth_fits": "The k-fold sawtooth and what the nets learned (first seed, largest budget)",
        "depth_error_sawtooth": "Sawtooth: test MSE / Var(target) against parameters, per k",
        "depth_pieces": "Linear pieces against depth, beside 2^k (Telgarsky 2016)",
        "depth_error_parity": "Parity: test error against n, per budget",
    })
    return lines


def _constructed(table: "pd.DataFrame") -> list[str]:
    if not len(table):
        return []
    matches = int(table["matches"].sum())
    wrong = table[~table["matches"]]
    verdict = ("as Telgarsky's construction says" if not len(wrong) else
               "NOT as the construction says at k = " + ", ".join(str(k) for k in wrong["k"]))
    return [f"**Constructed.** Telgarsky's net (2 ReLU units in each of k layers) has exactly 2^k linear pieces "
            f"for {matches} of {len(table)} k (k = {table['k'].min()}..{table['k'].max()}; counted exactly from its "
            f"breakpoints), {verdict}: k = {table['k'].iloc[-1]} gives {table['pieces'].iloc[-1]:,} pieces from "
            f"{2 * int(table['k'].iloc[-1])} units.", ""]


def _per_k_rows(fit_part: "pd.DataFrame", nets: "pd.DataFrame") -> tuple[list[str], list[list]]:
    """Columns k (or n) = found/seeds, per net, then the total and the largest k found by most seeds."""
    from resx.studies.depth import summary

    table = summary.per_k(fit_part)
    ks = sorted(int(k) for k in table["k"].unique())
    rows = []
    for r in nets.sort_values(["budget", "depth", "model"]).itertuples():
        cells = []
        for k in ks:
            hit = table[(table["model"] == r.model) & (table["depth"] == r.depth) & (table["budget"] == r.budget)
                        & (table["k"] == k)]
            cells.append(f"{int(hit['found'].iloc[0])}/{int(hit['seeds'].iloc[0])}" if len(hit) else DASH)
        rows.append([r.label, int(r.budget), int(r.params), *cells, _rate(r.found, r.nets), r.largest or DASH])
    return [str(k) for k in ks], rows


def _upto(largest: int, what: str = "k", verb: str = "found") -> str:
    return (f"most seeds {verb} every {what} up to {int(largest)}" if largest
            else f"most seeds failed already at the smallest {what}")


def _sawtooth(fit: "pd.DataFrame", nets: "pd.DataFrame", versus: "pd.DataFrame", reached: "pd.DataFrame") -> list[str]:
    part = nets[nets["target"] == "sawtooth"]
    ks, rows = _per_k_rows(fit[fit["target"] == "sawtooth"], part)
    lines = [f"**Trained on the sawtooth.** A net *found* m^k when its test MSE is at most "
             f"{100 * FOUND_RELATIVE_MSE:g}% of the target's variance (R² ≥ {1 - FOUND_RELATIVE_MSE:g}). Seeds that "
             "found it, per k:", "",
             markdown_table(["net (depth x width)", "budget", "params", *[f"k={k}" for k in ks], "all",
                             "largest k (most seeds)"], rows, align="lrr" + "r" * (len(ks) + 2)), ""]
    for r in versus.itertuples():
        if not hasattr(r, "shallow_rate") or r.shallow_rate != r.shallow_rate:
            continue
        text = (f"- About {r.budget} parameters: the shallow net (1 x {int(r.shallow_width)}) found "
                f"{_rate(int(r.shallow_found), int(r.shallow_nets))} ({_upto(r.shallow_largest)})")
        if hasattr(r, "plain_rate") and r.plain_rate == r.plain_rate:
            text += (f"; plain, depth {r.deepest} (width {int(r.plain_width)}): "
                     f"{_rate(int(r.plain_found), int(r.plain_nets))} ({_upto(r.plain_largest)})")
        if hasattr(r, "residual_rate") and r.residual_rate == r.residual_rate:
            text += (f"; residual, depth {r.deepest} (width {int(r.residual_width)}): "
                     f"{_rate(int(r.residual_found), int(r.residual_nets))} ({_upto(r.residual_largest)})")
            if hasattr(r, "plain_rate") and r.plain_rate == r.plain_rate:
                more = ("more often than" if r.residual_found > r.plain_found else "as often as"
                        if r.residual_found == r.plain_found else "less often than")
                text += (f". With residual connections the deep narrow net found m^k {more} without "
                         f"({int(r.residual_found)} against {int(r.plain_found)} nets")
                text += f" of {int(r.plain_nets)})" if r.residual_nets == r.plain_nets else ")"
        lines.append(text + ".")
    lines += _within_reach(fit[fit["target"] == "sawtooth"])
    from resx.studies.depth.summary import residual_vs_plain

    pairs = residual_vs_plain(nets, "sawtooth")
    if len(pairs):
        lines.append("- Over every budget and k, residual against plain at the same depth: " + "; ".join(
            f"depth {r.depth}: {_rate(r.residual_found, r.residual_nets)} against {_rate(r.plain_found, r.plain_nets)}"
            for r in pairs.itertuples()) + ".")
    lines.append("")
    if len(reached):
        rows = [[_label(r.model, r.depth), int(r.budget), _rate(int(r.reached), int(r.nets)), f"{r.median_ratio:.2f}"]
                for r in reached.itertuples()]
        lines += [f"**Pieces of the learned functions** (exact). Nets with at least {PIECES_FRACTION:g} x 2^k pieces "
                  "(necessary to fit m^k, not sufficient: a wide shallow net has many kinks that each change "
                  "little), and the median of pieces / 2^k over k and seeds:", "",
                  markdown_table(["net", "budget", "≥ 2^k pieces", "median pieces / 2^k"], rows, align="lrrr"), ""]
    return lines


def _within_reach(fit: "pd.DataFrame") -> list[str]:
    """The largest k any seed found, and how many trained nets could have computed m^k exactly beyond it (depth
    >= k, width >= 2: Telgarsky's construction, the extra layers passing non-negative values through their ReLUs,
    or zero residual branches) yet did not find it."""
    from resx.studies.depth.draw import found

    hits = fit[found(fit)]
    largest = int(hits["k"].max()) if len(hits) else 0
    by = sorted({_label(m, d) for m, d in zip(hits.loc[hits["k"] == largest, "model"],
                                              hits.loc[hits["k"] == largest, "depth"])}) if largest else []
    beyond = fit[(fit["k"] > largest) & (fit["depth"] >= fit["k"]) & (fit["width"] >= 2)]
    text = (f"- The largest k found by any seed: {largest} ({', '.join(by)})." if largest
            else "- No seed of any net found m^k at any k tried.")
    if len(beyond):
        text += (f" Beyond it, {len(beyond)} trained nets (depth ≥ k, width ≥ 2) could compute m^k exactly "
                 "(Telgarsky's construction, with the extra layers passing non-negative values through their ReLUs, "
                 f"or zero residual branches), up to k = {int(beyond['k'].max())}; gradient descent found it in none.")
    return [text]


def _label(model: str, depth: int) -> str:
    from resx.studies.depth.draw import net_label

    return net_label(model, depth)


def _parity(fit: "pd.DataFrame", nets: "pd.DataFrame", info: dict) -> list[str]:
    part = nets[nets["target"] == "parity"]
    fraction = ((info.get("targets") or {}).get("parity") or {}).get("recipe", {}).get("train_fraction", 1.0)
    split = ("trained and tested on all 2^n inputs: can gradient descent fit parity at this budget?" if fraction == 1
             else f"trained on a seeded {100 * fraction:g}% of the 2^n inputs per seed, tested on the rest")
    ns, rows = _per_k_rows(fit[fit["target"] == "parity"], part)
    lines = [f"**Parity** of n bits as ±1 inputs, {split} A net *solved* n when its test error is at most "
             f"{100 * PARITY_SOLVED_ERROR:g}%. Seeds that solved it, per n (the width shown is at the smallest n: "
             "it shrinks as n grows at a fixed budget):", "",
             markdown_table(["net (depth x width)", "budget", "params", *[f"n={n}" for n in ns], "all",
                             "largest n (most seeds)"], rows, align="lrr" + "r" * (len(ns) + 2)), ""]
    for budget, here in part.groupby("budget", sort=True):
        shallow = here[(here["model"] == "plain") & (here["depth"] == 1)]
        deep = here[here["depth"] > 1].sort_values(["largest", "rate"], ascending=False)
        if not len(shallow):
            continue
        fail = shallow["first_failure"].iloc[0]
        failed = fail is not None and fail == fail
        text = (f"- About {int(budget)} parameters: the shallow net fails from n = {int(fail)} (most seeds)" if failed
                else f"- About {int(budget)} parameters: the shallow net solved every n tried (most seeds)")
        if len(deep):
            best = deep.iloc[0]
            text += f"; the best deeper net, {best['label']}: {_upto(best['largest'], 'n', 'solved')}"
        lines.append(text + ".")
    checks = info.get("parity_sum_net") or []
    if checks:
        exact = all(c.get("error") == 0 for c in checks)
        lines += ["", "A one-hidden-layer ReLU net of n units computes parity "
                  f"{'exactly' if exact else 'NOT exactly'} (error {'0' if exact else 'above 0'} on all 2^n inputs "
                  f"for n = {checks[0]['n']}..{checks[-1]['n']}, "
                  "constructed: the units read the sum of the bits), so for ReLU nets Håstad's bound for AND/OR "
                  "circuits says nothing about representation: what fails above is gradient descent."]
    return lines + [""]
