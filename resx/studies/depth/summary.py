"""The depth study's tables, from its CSVs (pandas; no torch): shared by `resx depth`'s table and REPORT.md.

A net "found" its target by declare.py's thresholds (draw.found): the sawtooth when its test MSE is at most
FOUND_RELATIVE_MSE of the target's variance, parity when its test error is at most PARITY_SOLVED_ERROR.
"""

from __future__ import annotations

import pandas as pd

from resx.studies.depth.declare import PIECES_FRACTION
from resx.studies.depth.draw import found, net_label

NET_KEYS = ["target", "model", "depth", "budget"]


def constructed(pieces: pd.DataFrame | None) -> pd.DataFrame:
    """k, pieces, expected (2^k) and whether they match, for Telgarsky's constructed nets."""
    if pieces is None:
        return pd.DataFrame(columns=["k", "pieces", "expected", "matches"])
    built = pieces[(pieces["target"] == "sawtooth") & (pieces["built"] == "constructed")].sort_values("k")
    out = pd.DataFrame({"k": built["k"].astype(int), "pieces": built["pieces"].astype(int)})
    out["expected"] = 2 ** out["k"]
    out["matches"] = out["pieces"] == out["expected"]
    return out.reset_index(drop=True)


def per_k(fit: pd.DataFrame) -> pd.DataFrame:
    """Per target, net (model, depth, budget) and k: seeds, seeds that found it, the median error and width."""
    frame = fit.assign(found=found(fit))
    grouped = frame.groupby([*NET_KEYS, "k"], sort=True)
    return grouped.agg(seeds=("seed", "count"), found=("found", "sum"), width=("width", "first"),
                       params=("params", "first"), median_error=("relative_error", "median")).reset_index()


def per_net(fit: pd.DataFrame) -> pd.DataFrame:
    """Per target and net: the nets trained (k x seeds), how many found their target, and the largest k (n) that
    a majority of seeds found, with every smaller k of the study also found by a majority (0 when even the
    smallest is not)."""
    table = per_k(fit)
    rows = []
    for key, part in table.groupby(NET_KEYS, sort=True):
        part = part.sort_values("k")
        majority = part["found"] * 2 > part["seeds"]
        largest = 0
        for k, ok in zip(part["k"], majority):
            if not ok:
                break
            largest = int(k)
        first_fail = next((int(k) for k, ok in zip(part["k"], majority) if not ok), None)
        rows.append(dict(zip(NET_KEYS, key), width=int(part["width"].iloc[0]), params=int(part["params"].iloc[0]),
                         nets=int(part["seeds"].sum()), found=int(part["found"].sum()), largest=largest,
                         first_failure=first_fail, smallest_k=int(part["k"].min()), largest_k=int(part["k"].max()),
                         label=net_label(key[1], key[2], part["width"].iloc[0])))
    out = pd.DataFrame(rows)
    if len(out):
        out["rate"] = out["found"] / out["nets"]
    return out


def pieces_reached(pieces: pd.DataFrame | None) -> pd.DataFrame:
    """Per trained sawtooth net (model, depth, budget): nets, how many have at least PIECES_FRACTION x 2^k pieces,
    and the median of pieces / 2^k."""
    if pieces is None:
        return pd.DataFrame()
    trained = pieces[(pieces["target"] == "sawtooth") & (pieces["built"] == "trained")].copy()
    if not len(trained):
        return pd.DataFrame()
    trained["ratio"] = trained["pieces"] / 2.0 ** trained["k"]
    trained["reached"] = trained["ratio"] >= PIECES_FRACTION
    out = trained.groupby(["model", "depth", "budget"], sort=True).agg(
        nets=("pieces", "count"), reached=("reached", "sum"), median_ratio=("ratio", "median"),
        median_pieces=("pieces", "median")).reset_index()
    return out


def deep_vs_shallow(nets: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per budget: the shallow net's found rate and largest k beside the deepest plain and residual nets'."""
    part = nets[nets["target"] == target]
    rows = []
    for budget, here in part.groupby("budget", sort=True):
        deepest = int(here["depth"].max())
        row = {"budget": int(budget), "deepest": deepest}
        for name, sel in (("shallow", (here["model"] == "plain") & (here["depth"] == 1)),
                          ("plain", (here["model"] == "plain") & (here["depth"] == deepest)),
                          ("residual", (here["model"] == "residual") & (here["depth"] == deepest))):
            hit = here[sel]
            if len(hit) and not (name != "shallow" and deepest == 1):
                row.update({f"{name}_rate": float(hit["rate"].iloc[0]), f"{name}_largest": int(hit["largest"].iloc[0]),
                            f"{name}_found": int(hit["found"].iloc[0]), f"{name}_nets": int(hit["nets"].iloc[0]),
                            f"{name}_width": int(hit["width"].iloc[0])})
        rows.append(row)
    return pd.DataFrame(rows)


def residual_vs_plain(nets: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per depth above 1, summed over budgets and k: nets found by the plain and by the residual net."""
    part = nets[(nets["target"] == target) & (nets["depth"] > 1)]
    rows = []
    for depth, here in part.groupby("depth", sort=True):
        plain, residual = here[here["model"] == "plain"], here[here["model"] == "residual"]
        if len(plain) and len(residual):
            rows.append(dict(depth=int(depth), plain_found=int(plain["found"].sum()),
                             plain_nets=int(plain["nets"].sum()), residual_found=int(residual["found"].sum()),
                             residual_nets=int(residual["nets"].sum())))
    return pd.DataFrame(rows)
