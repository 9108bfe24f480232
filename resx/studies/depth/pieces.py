"""Exact linear pieces of a ReLU net with one input, on an interval (numpy, float64; no torch).

A net is given as a list of ops, applied in order to a row of features:
    ("linear", W, b)   h -> h @ W + b       (W: in x out, b: out)
    ("relu",)          h -> max(h, 0)
    ("residual", ops)  h -> h + ops(h)      (a residual block: its branch is itself a list of ops)
Every such net is continuous and piecewise linear in its input x. `linear_pieces` follows that function exactly:
it keeps a partition of [lo, hi] into intervals and, on each, every feature as an affine function a*x + b. A linear
op maps the coefficients; a ReLU splits an interval where a feature's line crosses zero inside it (root -b/a) and
then keeps or zeroes the feature on each part (decided at the part's midpoint, where its sign is certain); a
residual block runs its branch on the current partition and adds the input, carried to the branch's finer one.
No sampling: the kinks are found where they are, however narrow a piece, so the count is exact up to the two
tolerances below, which only decide what float64 arithmetic cannot:

  * ROOT_TOL: a zero crossing within 1e-9 of an existing breakpoint (or of lo, hi) is taken to be at it. The
    roots are ratios of float64 numbers computed from float32 weights, accurate to about 1e-12 on [0, 1] for the
    study's nets; the constructed sawtooth of k = 12 has its kinks 2^-12 = 2.4e-4 apart, so none is merged, while
    two kinks that coincide in exact arithmetic (a root computed twice along different paths) are not split into a
    sliver. Pieces narrower than ROOT_TOL are dropped for the same reason.
  * SLOPE_TOL: a breakpoint counts as a kink when the slope changes there by more than 1e-6 of the largest
    |slope| on the interval (or of 1, if that is smaller). A ReLU may switch on a feature whose influence on the
    output is zero (a unit of weight 0 downstream, or two kinks that cancel): no kink, and not a piece. A slope
    change below 1e-6 relative is at the level of the rounding of float32 weights (relative precision 6e-8) as
    it accumulates through a product of a few layers, so it is not read as a piece either.

The number of linear pieces is then 1 + the number of kinks (a continuous function's pieces are the maximal
intervals on which it is affine). Tested on functions whose pieces are known (resx tests: sums of shifted ReLUs,
|x - 1/2|, cancelling kinks, kinks outside the interval, the constructed sawtooth of Telgarsky 2016) and against
the nets' own forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ROOT_TOL = 1e-9
SLOPE_TOL = 1e-6

Ops = list[tuple[Any, ...]]


@dataclass
class PiecewiseLinear:
    """f(x) = slopes[i] * x + intercepts[i] on [knots[i], knots[i + 1]]: the net's output on its pieces."""

    knots: np.ndarray  # sorted, knots[0] = lo, knots[-1] = hi
    slopes: np.ndarray
    intercepts: np.ndarray

    @property
    def pieces(self) -> int:
        return len(self.slopes)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        i = np.clip(np.searchsorted(self.knots, x, side="right") - 1, 0, len(self.slopes) - 1)
        return self.slopes[i] * x + self.intercepts[i]

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, f(x)) at every knot: the function drawn exactly by joining them with straight lines."""
        return self.knots.copy(), self(self.knots)


class _State:
    """The partition (knots) and, per interval, every feature's slope a and intercept b (intervals x features)."""

    def __init__(self, knots: np.ndarray, a: np.ndarray, b: np.ndarray):
        self.knots, self.a, self.b = knots, a, b

    def refine(self, knots: np.ndarray) -> "_State":
        """The same features on a finer partition (each new interval inherits its parent's coefficients)."""
        parent = np.clip(np.searchsorted(self.knots, knots[:-1], side="right") - 1, 0, len(self.a) - 1)
        return _State(knots, self.a[parent], self.b[parent])


def _relu(state: _State) -> _State:
    left, right = state.knots[:-1, None], state.knots[1:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = np.where(state.a != 0, -state.b / state.a, np.nan)
    inside = (roots > left + ROOT_TOL) & (roots < right - ROOT_TOL)
    if inside.any():
        knots = np.unique(np.concatenate([state.knots, roots[inside]]))
        state = state.refine(_drop_slivers(knots))
    mid = 0.5 * (state.knots[:-1] + state.knots[1:])
    on = (state.a * mid[:, None] + state.b) > 0
    return _State(state.knots, np.where(on, state.a, 0.0), np.where(on, state.b, 0.0))


def _drop_slivers(knots: np.ndarray) -> np.ndarray:
    """Merge knots closer than ROOT_TOL (keeping the first and the last)."""
    keep = np.concatenate([[True], np.diff(knots) > ROOT_TOL])
    merged = knots[keep]
    merged[-1] = knots[-1]
    return merged


def _apply(ops: Ops, state: _State) -> _State:
    for op in ops:
        kind = op[0]
        if kind == "linear":
            w, bias = np.asarray(op[1], np.float64), np.asarray(op[2], np.float64)
            state = _State(state.knots, state.a @ w, state.b @ w + bias)
        elif kind == "relu":
            state = _relu(state)
        elif kind == "residual":
            branch = _apply(op[1], state)
            carried = state.refine(branch.knots)
            state = _State(branch.knots, carried.a + branch.a, carried.b + branch.b)
        else:
            raise ValueError(f"unknown op {kind!r} (linear, relu, residual)")
    return state


def linear_pieces(ops: Ops, lo: float = 0.0, hi: float = 1.0) -> PiecewiseLinear:
    """The net's output (its one output feature) on [lo, hi] as maximal affine pieces (see the module docstring)."""
    state = _apply(ops, _State(np.array([lo, hi], np.float64), np.ones((1, 1)), np.zeros((1, 1))))
    if state.a.shape[1] != 1:
        raise ValueError(f"the net has {state.a.shape[1]} outputs; linear_pieces counts a net with one")
    knots, a, b = state.knots, state.a[:, 0], state.b[:, 0]
    scale = max(1.0, float(np.abs(a).max()))
    kink = np.abs(np.diff(a)) > SLOPE_TOL * scale
    keep = np.concatenate([[0], np.flatnonzero(kink) + 1])  # the first interval of each maximal piece
    return PiecewiseLinear(np.concatenate([knots[keep], [knots[-1]]]), a[keep], b[keep])


def count_pieces(ops: Ops, lo: float = 0.0, hi: float = 1.0) -> int:
    return linear_pieces(ops, lo, hi).pieces


def evaluate(ops: Ops, x: np.ndarray) -> np.ndarray:
    """The net's forward pass in numpy (rows of `x` are inputs): to check the counter against the net."""
    h = np.asarray(x, np.float64)
    for op in ops:
        if op[0] == "linear":
            h = h @ np.asarray(op[1], np.float64) + np.asarray(op[2], np.float64)
        elif op[0] == "relu":
            h = np.maximum(h, 0.0)
        else:
            h = h + evaluate(op[1], h)
    return h


def grid_pieces(f, level: int = 14, tol: float = 1e-6) -> int:
    """Pieces of a continuous piecewise-linear f on [0, 1] read from its values on the dyadic grid of 2^level
    cells: 1 + the number of maximal runs of cells whose slope differs from the cell before by more than `tol`
    relative. Correct when every piece is longer than two cells (so no two kinks share a cell or neighbouring
    cells); a cross-check of `linear_pieces` for functions known to satisfy that, not the study's counter."""
    x = np.linspace(0.0, 1.0, 2**level + 1)
    slopes = np.diff(np.asarray(f(x), np.float64)) * 2**level
    change = np.abs(np.diff(slopes)) > tol * max(1.0, float(np.abs(slopes).max()))
    # a kink inside a cell gives that cell a slope between its neighbours': two changes in a row are one kink
    starts = change & ~np.concatenate([[False], change[:-1]])
    return 1 + int(starts.sum())
