"""The path study's section of REPORT.md, from its CSVs, beside Veit et al. 2016's numbers (§5, Fig. 6). Every
sentence that states a result is computed from the CSVs here, so that it cannot drift from them."""

from pathlib import Path
from typing import TYPE_CHECKING

from resx import reference
from resx.markdown import DASH, computed_with, figures, heading, markdown_table, read_info
from resx.studies.paths.declare import INFO_NAME, distribution_centre, effective_window

if TYPE_CHECKING:  # pandas is imported by the readers in draw.py
    import pandas as pd


def block_gradient_ratios(blocks: "pd.DataFrame") -> "pd.DataFrame":
    """Per run and state (init/trained): gradient norm at the first and last block and their ratio."""
    import pandas as pd

    rows = []
    for (run, residual, trained), part in blocks.groupby(["run", "residual", "trained"], sort=False):
        part = part.sort_values("block")
        first, last = float(part["grad_norm"].iloc[0]), float(part["grad_norm"].iloc[-1])
        rows.append({"run": run, "residual": bool(residual), "trained": bool(trained), "blocks": len(part),
                     "first": first, "last": last, "ratio": first / last if last else float("nan")})
    return pd.DataFrame(rows).sort_values(["trained", "residual", "run"]).reset_index(drop=True)


def paths_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    from resx.studies.paths import draw as paths_plots

    distribution = paths_plots.read_distribution(folder)
    total = paths_plots.read_total(folder)
    gradients = paths_plots.read_gradients(folder)
    blocks = paths_plots.read_block_gradients(folder)
    if all(frame is None for frame in (distribution, total, gradients, blocks)):
        return []
    lines = [heading(folder, results_dir, "Paths and gradients (Veit et al. 2016)", several), ""]
    provenance = computed_with(read_info(folder / INFO_NAME))
    if provenance:
        lines += [provenance, ""]
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
