"""The shapes of the study's trained nets, and their widths at a parameter budget (pure Python, no torch).

Both kinds of net map `d_in` inputs to one output, with `depth` ReLU layers on the longest path from input to output:

    plain     x -> [Linear(width) -> ReLU] x depth -> Linear(1)
    residual  x -> Linear(width) (the stem: no ReLU, so the stream keeps a linear path from the input)
                -> [h + V relu(U h + c) + d] x depth -> Linear(1)

so a plain net of depth 1 is the classic one-hidden-layer (shallow) net, and a residual block holds two weight
matrices (U, V: width x width) around one ReLU layer, like the pre-activation block of He et al. 2016 without
BatchNorm. "depth" counts ReLU layers in both, because that is what bounds the number of linear pieces in 1-D:
each ReLU layer of m units at most multiplies the pieces by m + 1 (every unit's pre-activation crosses zero at most
once per piece), so a net of l ReLU layers of m units has at most (m + 1)^l pieces on a line, the same order as
Telgarsky's bound (2m)^l for l layers of m ReLUs (2015, arXiv 1509.08101; 2016, COLT).

Parameter counts (weights and biases):
    plain:     d_in*w + w + (depth - 1)*(w^2 + w) + w + 1
    residual:  d_in*w + w + depth*(2 w^2 + 2 w) + w + 1
At a budget P, each net gets the integer width whose count is nearest P (`match_width`): the counts then differ
from P by at most about half the step between two widths, which is largest for deep nets at small budgets (a plain
net of depth 6 at 200 parameters: width 6 has 229, width 5 has 166). PARAM_TOLERANCE (declare.py) bounds it for
the study's default budgets and depths; every row of depth_fit.csv carries its own count and the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from resx.errors import ResxError


def param_count(d_in: int, width: int, depth: int, residual: bool) -> int:
    """Weights and biases of the net described in the module docstring."""
    w = width
    if residual:
        return d_in * w + w + depth * (2 * w * w + 2 * w) + w + 1
    return d_in * w + w + (depth - 1) * (w * w + w) + w + 1


def match_width(d_in: int, depth: int, residual: bool, budget: int) -> int:
    """The width whose parameter count is nearest `budget` (the narrower one on a tie; at least 1)."""
    if depth < 1 or budget < 1:
        raise ResxError(f"a net needs depth >= 1 and a budget >= 1 parameter, got depth {depth}, budget {budget}")
    best, best_gap, width = 1, abs(param_count(d_in, 1, depth, residual) - budget), 1
    while True:
        width += 1
        count = param_count(d_in, width, depth, residual)
        gap = abs(count - budget)
        if gap < best_gap:
            best, best_gap = width, gap
        if count > budget:
            return best


def piece_bound(width: int, depth: int) -> int:
    """At most this many linear pieces on a line: (width + 1)^depth (see the module docstring)."""
    return (width + 1) ** depth


@dataclass(frozen=True)
class Shape:
    """One trained net's shape: `model` is 'plain' or 'residual'; `budget` the parameter count asked for."""

    model: str
    depth: int
    width: int
    d_in: int
    budget: int

    @property
    def residual(self) -> bool:
        return self.model == "residual"

    @property
    def params(self) -> int:
        return param_count(self.d_in, self.width, self.depth, self.residual)

    @property
    def mismatch(self) -> float:
        """(params - budget) / budget."""
        return (self.params - self.budget) / self.budget


def shapes_for(d_in: int, depths: list[int], budgets: list[int]) -> list[Shape]:
    """Every net of the study at one input size: per budget, a plain net at each depth and a residual net at each
    depth above 1 (a residual net of depth 1 spends its budget on a width x width matrix that acts on a rank-one
    embedding of a 1-D input: a worse shallow net, not a residual one)."""
    shapes = []
    for budget in budgets:
        for depth in depths:
            for model in ("plain", "residual"):
                if model == "residual" and depth == 1:
                    continue
                width = match_width(d_in, depth, model == "residual", budget)
                shapes.append(Shape(model, depth, width, d_in, budget))
    return shapes
