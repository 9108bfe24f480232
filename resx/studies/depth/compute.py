"""Depth separation, built and trained: Telgarsky's sawtooth (2015, arXiv 1509.08101; 2016, COLT "Benefits of
depth in neural networks") and the parity of n bits (Håstad 1986; Bengio 2009, "Learning deep architectures for
AI", §2).

The claims. The tent map m(x) = 2 relu(x) - 4 relu(x - 1/2) composed k times has 2^k linear pieces on [0, 1], and
a ReLU net of k layers of 2 units computes it exactly; a net of l layers of m units has at most (m + 1)^l pieces on
a line (Telgarsky: (2m)^l), so a net of fixed depth needs exponentially many units in k to match it, and one with
fewer than about 2^k pieces stays a constant away from it in L1 (Telgarsky 2016, Theorem 1.1). Parity of n bits
needs a DNF of 2^(n-1) terms, and circuits of AND/OR gates of fixed depth need exponentially many gates (Håstad
1986), while a balanced tree of XORs of depth O(log n) needs only O(n log n) units (Bengio 2009).

What is measured:
  * the constructed sawtooth nets, k = 1..12 (and every k asked for): their exact number of linear pieces on
    [0, 1] (resx.studies.depth.pieces: exact, from the breakpoints, no sampling), into depth_pieces.csv
    (built: constructed, model: telgarsky), and the largest difference from m^k at their kinks and at random
    points (depth_info.json). Also, for parity, the constructed one-hidden-layer net of n units
    (resx.studies.depth.nets.parity_sum_ops) and its error on all 2^n inputs: 0, because ReLU units sum their
    inputs, so Håstad's bound does not carry over to ReLU nets as a statement about representation.
  * trained nets at matched parameter counts (resx.studies.depth.shapes: a plain net at each depth, a residual
    one at each depth above 1, each at the width whose parameter count is nearest the budget), `seeds` seeds each,
    trained side by side (resx.studies.depth.train: full-batch Adam, cosine schedule); per seed, train and test
    error (depth_fit.csv: the MSE for the sawtooth, the fraction of inputs classified wrong for parity),
    relative_error (sawtooth: test MSE / the target's variance), and for the sawtooth the exact number of linear
    pieces of the function learned (depth_pieces.csv, built: trained), and that function itself at its kinks
    for the first seed (depth_curves.csv), which draws it exactly.
Whether training "found" the target is decided by the thresholds in declare.py (FOUND_RELATIVE_MSE for the
sawtooth, PARITY_SOLVED_ERROR for parity), in the report, from the CSVs.

Library entry point: `run_depth(target, ...)`; resumable (resx.studies.depth.store). No typer or rich here:
progress is a callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resx.errors import ResxError
from resx.options import int_list
from resx.provenance import provenance
from resx.studies import guards
from resx.studies.depth.declare import (CONSTRUCTED_K, CONSTRUCTED_MODEL, DEFAULT_DEPTHS, DEFAULT_K, DEFAULT_LR,
                                        DEFAULT_PARAMS, DEFAULT_SEEDS, DEFAULT_STEPS, DEFAULT_TRAIN_FRACTION,
                                        FOUND_RELATIVE_MSE, MAX_K, PARAM_TOLERANCE, PARITY_SOLVED_ERROR,
                                        PIECES_FRACTION, TARGETS, TEST_POINTS)
from resx.studies.depth.draw import sawtooth
from resx.studies.depth.nets import parity_sum_ops, sawtooth_ops
from resx.studies.depth.pieces import ROOT_TOL, SLOPE_TOL, evaluate, linear_pieces
from resx.studies.depth.shapes import Shape, param_count, piece_bound, shapes_for
from resx.studies.depth.store import DepthStore
from resx.studies.depth.tasks import make_task, parity_inputs
from resx.studies.depth.train import train_members

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)
RECIPE_VERSION = 1  # bump when the training recipe changes, so that older results are not resumed into new ones
STEP = ("one full-batch Adam step: a forward and backward pass over every training input, for all seeds of a net "
        "at once (their losses summed, so each seed's update is its own)")


@dataclass
class DepthResult:
    out: Path
    fit: Any  # pandas DataFrames with the CSVs' columns (every target in the folder)
    pieces: Any
    info: dict
    trained: int = 0  # nets (seeds) trained by this call
    skipped: int = 0  # nets already done
    figures: list[Path] = field(default_factory=list)


def check_options(target: str, k: str | Sequence[int] | None, params: str | Sequence[int], depths: str | Sequence[int],
                  seeds: int, steps: int, lr: float, train_fraction: float) -> tuple[list[int], list[int], list[int]]:
    if target not in TARGETS:
        raise ResxError(f"unknown --target {target!r}; allowed: {', '.join(TARGETS)}")
    low = 2 if target == "parity" else 1
    ks = sorted(set(int_list(DEFAULT_K[target] if k is None else k, "--k", minimum=low, allow_empty=False)))
    if ks[-1] > MAX_K[target]:
        raise ResxError(f"--k {ks[-1]} is too large for {target} (its training inputs grow as 2^k); at most "
                        f"{MAX_K[target]}")
    budgets = sorted(set(int_list(params, "--params", minimum=1, allow_empty=False)))
    depth_list = sorted(set(int_list(depths, "--depths", minimum=1, allow_empty=False)))
    for option, value in (("--seeds", seeds), ("--steps", steps)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ResxError(f"{option} must be an integer of at least 1, got {value}")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ResxError(f"--lr must be a finite positive number, got {lr}")
    if not (isinstance(train_fraction, (int, float)) and 0 < train_fraction <= 1):
        raise ResxError(f"--train-fraction must be in (0, 1], got {train_fraction}")
    return ks, budgets, depth_list


def constructed_rows(ks: Sequence[int]) -> tuple[list[dict], list[dict]]:
    """depth_pieces.csv rows of Telgarsky's constructed nets, and their check against m^k (for the info file)."""
    rows, checks = [], []
    rng = np.random.default_rng(0)
    for k in ks:
        ops = sawtooth_ops(k)
        function = linear_pieces(ops)
        x = np.concatenate([function.knots, rng.random(1000)])
        gap = float(np.abs(evaluate(ops, x[:, None])[:, 0] - sawtooth(x, k)).max())
        rows.append(dict(target="sawtooth", k=k, model=CONSTRUCTED_MODEL, depth=k, width=2,
                         params=param_count(1, 2, k, False), seed=None, pieces=function.pieces, built="constructed",
                         residual=False, budget=None, max_pieces=piece_bound(2, k), target_pieces=2**k))
        checks.append(dict(k=k, pieces=function.pieces, expected=2**k, matches=function.pieces == 2**k,
                           max_abs_difference=gap))
    return rows, checks


def parity_sum_checks(ns: Sequence[int]) -> list[dict]:
    checks = []
    for n in ns:
        x, y = parity_inputs(n)
        predicted = (evaluate(parity_sum_ops(n), x)[:, 0] > 0.5).astype(np.float64)
        checks.append(dict(n=n, hidden_units=n, params=n * n + n + n + 1, error=float((predicted != y).mean())))
    return checks


def _recipe(target: str, steps: int, lr: float, train_fraction: float) -> dict[str, Any]:
    recipe: dict[str, Any] = {"steps": steps, "lr": lr, "recipe": RECIPE_VERSION}
    if target == "parity":
        recipe["train_fraction"] = train_fraction
    return recipe


@guards.one_writer("depth")
def run_depth(
    target: str = "sawtooth",
    k: str | Sequence[int] | None = None,
    params: str | Sequence[int] = DEFAULT_PARAMS,
    seeds: int = DEFAULT_SEEDS,
    *,
    depths: str | Sequence[int] = DEFAULT_DEPTHS,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
    seed: int | None = 0,
    device: str = "auto",
    out: str | Path = "results/depth",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    say: Callable[[str], None] = print,
    plot: bool = True,
    threads: int | None = None,
) -> DepthResult:
    """The depth study of one target (see the module docstring): `k` is k for the sawtooth (compositions of the
    tent map) and n for parity (bits): a range '1..8', a list '2,4,6' or a sequence; `params` the budgets; `depths`
    the trained depths (ReLU layers; depth 1 is the shallow net); seeds `seed`, `seed` + 1, ... (`seeds` of them).
    Writes depth_fit.csv, depth_pieces.csv, depth_curves.csv, depth_info.json and the figures into `out`; an
    earlier depth study there is resumed when its recipe matches, refused when not, replaced with `overwrite`.
    `threads`: CPU threads while it runs (default 1: the nets are so small that more threads only wait on each
    other, and on a shared machine a second thread made each step 10-100x slower in resx's measurements)."""
    from resx.engine import resolve_device

    ks, budgets, depth_list = check_options(target, k, params, depths, seeds, steps, lr, train_fraction)
    if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads < 1):
        raise ResxError(f"--threads must be an integer of at least 1, got {threads}")
    dev = resolve_device(device)
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads or 1))
    try:
        return _run(target, ks, budgets, depth_list, seeds, steps, lr, train_fraction, seed, dev, out, overwrite,
                    progress, say, plot)
    finally:
        torch.set_num_threads(previous)


def _run(target: str, ks: list[int], budgets: list[int], depth_list: list[int], seeds: int, steps: int, lr: float,
         train_fraction: float, seed: int | None, dev: torch.device, out: str | Path, overwrite: bool,
         progress: ProgressFn | None, say: Callable[[str], None], plot: bool) -> DepthResult:
    started = time.perf_counter()
    seed = 0 if seed is None else int(seed)
    seed_list = list(range(seed, seed + int(seeds)))
    recipe = _recipe(target, int(steps), float(lr), float(train_fraction))
    store = DepthStore(out, overwrite)
    store.open(target, recipe)
    info = _info(store.info, target, recipe, ks, budgets, depth_list, seed_list, dev)

    if target == "sawtooth":
        wanted = sorted(set(range(1, CONSTRUCTED_K + 1)) | set(ks))
        todo_k = [kk for kk in wanted if kk not in store.constructed_done()]
        rows, checks = constructed_rows(todo_k)
        store.add("pieces", rows)
        known = {c["k"]: c for c in info.get("constructed", [])}
        known.update({c["k"]: c for c in checks})
        info["constructed"] = [known[kk] for kk in sorted(known)]
    else:
        known = {c["n"]: c for c in info.get("parity_sum_net", [])}
        known.update({c["n"]: c for c in parity_sum_checks(ks)})
        info["parity_sum_net"] = [known[n] for n in sorted(known)]
    store.write(info)

    units = [(kk, shape) for kk in ks for shape in shapes_for(1 if target == "sawtooth" else kk, depth_list, budgets)]
    plan = [(kk, shape, [s for s in seed_list if s not in store.done_seeds(target, kk, shape.model, shape.depth,
                                                                             shape.budget)]) for kk, shape in units]
    todo = [(kk, shape, missing) for kk, shape, missing in plan if missing]
    skipped = sum(len(seed_list) - len(missing) for _, _, missing in plan)
    say(f"depth: {target}, {'k' if target == 'sawtooth' else 'n'} = {', '.join(map(str, ks))}; {len(units)} net "
        f"shapes x {len(seed_list)} seeds; {sum(len(m) for _, _, m in todo)} nets to train ({skipped} done before), "
        f"{steps} steps each, on {dev}")
    trained = 0
    for done, (kk, shape, missing) in enumerate(todo):
        seconds = _train_unit(store, info, target, kk, shape, missing, seed_list[0], recipe, dev, train_fraction,
                              progress)
        trained += len(missing)
        if done == 0 and len(todo) > 1:
            say(f"depth: the first net ({shape.model}, depth {shape.depth}, width {shape.width}, {len(missing)} "
                f"seeds) took {seconds:.1f} s")
        if progress:
            progress(f"{target}: nets", done + 1, len(todo))
    info["seconds"] = round(float(info.get("seconds", 0.0)) + time.perf_counter() - started, 2)
    store.write(info)
    figures: list[Path] = []
    if plot:
        from resx.studies.depth.draw import plot_depth

        figures = plot_depth(out)
    return DepthResult(Path(out), store.frames["fit"], store.frames["pieces"], info, trained, skipped, figures)


def _train_unit(store: DepthStore, info: dict, target: str, k: int, shape: Shape, seeds: list[int], first: int,
                recipe: dict, dev: torch.device, train_fraction: float, progress: ProgressFn | None) -> float:
    """Train `shape`'s missing `seeds` on the target at `k`, add their rows, and rewrite the files."""
    task = make_task(target, k, seeds, train_fraction)
    report = (lambda step, total: progress(f"{target}: steps of this net", step, total)) if progress else None
    net, results, seconds = train_members(shape, seeds, task, recipe["steps"], recipe["lr"], dev, report)
    common = dict(target=target, k=k, model=shape.model, depth=shape.depth, width=shape.width,
                  residual=shape.residual, params=shape.params, budget=shape.budget)
    fit_rows, piece_rows, curve_rows = [], [], []
    for member, (s, result) in enumerate(zip(seeds, results)):
        pieces = None
        if target == "sawtooth":
            function = linear_pieces(net.member_ops(member))
            pieces = function.pieces
            piece_rows.append(dict(common, seed=s, pieces=pieces, built="trained",
                                   max_pieces=piece_bound(shape.width, shape.depth), target_pieces=2**k))
            if s == first and not store.has_curve(target, k, shape.model, shape.depth, shape.budget):
                xs, ys = function.points()
                curve_rows += [dict(common, seed=s, x=float(x), y=float(y)) for x, y in zip(xs, ys)]
        fit_rows.append(dict(common, seed=s, **result, pieces=pieces, train_points=task.train_points,
                             test_points=task.test_points, steps=recipe["steps"], lr=recipe["lr"]))
    store.add("fit", fit_rows)
    store.add("pieces", piece_rows)
    store.add("curves", curve_rows)
    key = f"{target} k={k} {shape.model} depth={shape.depth} budget={shape.budget}"
    unit = info["units"].setdefault(key, {"width": shape.width, "params": shape.params, "seeds": [], "seconds": 0.0})
    unit["seeds"] = sorted(set(unit["seeds"]) | set(seeds))
    unit["seconds"] = round(unit["seconds"] + seconds, 3)
    store.write(info)
    return seconds


def _info(before: dict, target: str, recipe: dict, ks: list[int], budgets: list[int], depths: list[int],
          seeds: list[int], dev: torch.device) -> dict[str, Any]:
    """depth_info.json: the earlier one (a resumed study, or the other target's) with this call's settings added."""
    info = dict(before)
    targets = dict(info.get("targets") or {})
    own = dict(targets.get(target) or {})

    def union(key: str, values: list[int]) -> list[int]:
        return sorted(set(own.get(key) or []) | set(values))

    own.update(recipe=recipe, k=union("k", ks), params=union("params", budgets), depths=union("depths", depths),
               seeds=union("seeds", seeds))
    targets[target] = own
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    info.update(
        study="depth (Telgarsky 2015, 2016: the sawtooth; Håstad 1986, Bengio 2009: parity)",
        provenance=provenance(dev, "fp32", torch.get_num_threads()),
        device=str(dev), device_name=device_name, precision="fp32",
        devices=sorted(set(info.get("devices") or []) | {str(dev)}),
        targets=targets,
        step=STEP,
        optimizer="Adam (betas 0.9, 0.999), full batch, learning rate cosine-annealed to 0, no weight decay",
        init="weights N(0, 2/fan_in), output layer N(0, 1/fan_in), residual branch output x 1/sqrt(depth); biases "
             "U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
        errors={"sawtooth": "train_error, test_error: mean squared error; relative_error: test MSE / Var(target) on "
                            f"the test inputs (the midpoints of {TEST_POINTS} cells of [0, 1])",
                "parity": "train_error, test_error: fraction of inputs classified wrong (logit > 0 means odd); "
                          "inputs ±1; train_fraction 1: train and test on all 2^n inputs"},
        k_column="k holds k (compositions of the tent map) for the sawtooth and n (bits) for parity",
        thresholds={"found_relative_mse": FOUND_RELATIVE_MSE, "pieces_fraction": PIECES_FRACTION,
                    "parity_solved_error": PARITY_SOLVED_ERROR, "param_tolerance": PARAM_TOLERANCE},
        piece_counter={"method": "exact, from the breakpoints (resx.studies.depth.pieces)", "root_tol": ROOT_TOL,
                       "slope_tol": SLOPE_TOL},
        units=dict(info.get("units") or {}),
    )
    return info
