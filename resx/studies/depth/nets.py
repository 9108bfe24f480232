"""The study's nets: Telgarsky's constructed sawtooth net, a constructed shallow parity net, and the trained plain
and residual nets, several seeds of one shape trained side by side as one module (torch).

Constructed (exact weights, no training):
  * `sawtooth_ops(k)`: the tent map m(x) = 2 relu(x) - 4 relu(x - 1/2), which is 2x on [0, 1/2] and 2 - 2x on
    [1/2, 1], composed k times (Telgarsky 2015, arXiv 1509.08101; 2016, COLT "Benefits of depth in neural
    networks"): k ReLU layers of 2 units, each layer's two units reading 2 h1 - 4 h2 of the layer
    before. m maps [0, 1] onto itself twice, so m^k has 2^k linear pieces (2^(k-1) teeth), with 2k units, while
    a net of l layers of m units has at most (m + 1)^l pieces on a line (resx.studies.depth.shapes), so one of
    depth l needs about 2^(k/l) units per layer to match it: exponentially many for l fixed.
  * `parity_sum_ops(n)`: parity of n bits in {0, 1} is s mod 2 of the sum s, and the piecewise-linear
    interpolation s - 2 relu(s - 1) + 2 relu(s - 2) - ... of s mod 2 takes n ReLUs of s in one hidden layer. So a
    ReLU net computes parity shallowly with n units: Håstad's (1986) exponential lower bound is for circuits of
    AND, OR and NOT gates (Bengio 2009, §2: a DNF needs 2^(n-1) terms, a tree of XORs O(n log n) units), not for units
    that sum their inputs. What the study measures for parity is what gradient descent finds at matched budgets.

Trained (`MemberNets`): S nets of one shape (resx.studies.depth.shapes) whose weights are stacked on a leading
member axis and applied with batched matrix products (torch.baddbmm), so that the 5 seeds of a net cost about
what one does. The loss is the sum of the members' own losses, so each member's gradient is its own, and Adam
(elementwise) trains each exactly as if alone. Member s is initialised from torch.Generator seeded with its seed,
so its weights do not depend on which members share its batch (a resumed study trains the same nets).

Initialisation: weights N(0, 2/fan_in) (He et al. 2015, for ReLU layers), the output layer N(0, 1/fan_in), and a
residual branch's last matrix V scaled by 1/sqrt(depth) so that the stream's variance grows by about a constant
over the blocks, not a factor per block; biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's Linear default) so
that the first layer's kinks -b/w spread over the input interval instead of all sitting at x = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from resx.studies.depth.pieces import Ops
from resx.studies.depth.shapes import Shape


# --- constructed nets -------------------------------------------------------------------------------------------
def sawtooth_ops(k: int) -> Ops:
    """Telgarsky's net for m^k on [0, 1]: k ReLU layers of 2 units and a linear output (2 h1 - 4 h2)."""
    if k < 1:
        raise ValueError(f"the sawtooth needs k >= 1 compositions, got {k}")
    first = ("linear", np.array([[1.0, 1.0]]), np.array([0.0, -0.5]))  # x -> (x, x - 1/2)
    # the next layer's units read m = 2 h1 - 4 h2, and subtract 1/2 for the second unit
    middle = ("linear", np.array([[2.0, 2.0], [-4.0, -4.0]]), np.array([0.0, -0.5]))
    out = ("linear", np.array([[2.0], [-4.0]]), np.array([0.0]))
    ops: Ops = [first, ("relu",)]
    for _ in range(k - 1):
        ops += [middle, ("relu",)]
    return ops + [out]


def sawtooth_units(k: int) -> tuple[int, int]:
    """(depth, width) of the constructed sawtooth net: k ReLU layers of 2 units."""
    return k, 2


def parity_sum_ops(n: int) -> Ops:
    """One hidden layer of n ReLUs computing the parity of n bits given as ±1 inputs (the study's encoding): the
    sum of the bits read as 0/1 is s = sum (x_i + 1) / 2, unit j reads relu(s - j), j = 0..n-1, and the output
    relu(s) + sum_{j>=1} 2 (-1)^j relu(s - j) is s mod 2 at every integer s (see the module docstring)."""
    w = np.full((n, n), 0.5)
    b = 0.5 * n - np.arange(n, dtype=np.float64)
    c = np.array([1.0] + [2.0 * (-1) ** j for j in range(1, n)])[:, None]
    return [("linear", w, b), ("relu",), ("linear", c, np.array([0.0]))]


# --- trained nets -----------------------------------------------------------------------------------------------
class MemberNets(nn.Module):
    """len(seeds) nets of one `shape`, side by side: input (S, N, d_in) -> output (S, N)."""

    def __init__(self, shape: Shape, seeds: Sequence[int]):
        super().__init__()
        self.shape, self.seeds = shape, list(seeds)
        w, d = shape.width, shape.depth
        gens = [torch.Generator().manual_seed(int(s)) for s in self.seeds]

        def weight(fan_in: int, fan_out: int, gain: float = 2.0, scale: float = 1.0) -> nn.Parameter:
            std = scale * math.sqrt(gain / fan_in)
            return nn.Parameter(torch.stack([torch.randn(fan_in, fan_out, generator=g) * std for g in gens]))

        def bias(fan_in: int, fan_out: int) -> nn.Parameter:
            bound = 1.0 / math.sqrt(fan_in)
            return nn.Parameter(torch.stack([(torch.rand(1, fan_out, generator=g) * 2 - 1) * bound for g in gens]))

        # built in the order of the forward pass, from each member's own generator
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        if shape.residual:
            self.weights.append(weight(shape.d_in, w, gain=1.0))  # the stem: linear, no ReLU after it
            self.biases.append(bias(shape.d_in, w))
            for _ in range(d):
                self.weights.append(weight(w, w))  # U, before the ReLU
                self.biases.append(bias(w, w))
                self.weights.append(weight(w, w, gain=1.0, scale=1.0 / math.sqrt(d)))  # V, the branch's output
                self.biases.append(bias(w, w))
        else:
            fan_in = shape.d_in
            for _ in range(d):
                self.weights.append(weight(fan_in, w))
                self.biases.append(bias(fan_in, w))
                fan_in = w
        self.weights.append(weight(w, 1, gain=1.0))
        self.biases.append(bias(w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ws, bs = list(self.weights), list(self.biases)
        h = x
        if self.shape.residual:
            h = torch.baddbmm(bs[0], h, ws[0])
            for i in range(self.shape.depth):
                u, c, v, d = ws[1 + 2 * i], bs[1 + 2 * i], ws[2 + 2 * i], bs[2 + 2 * i]
                h = h + torch.baddbmm(d, torch.relu(torch.baddbmm(c, h, u)), v)
        else:
            for w, b in zip(ws[:-1], bs[:-1]):
                h = torch.relu(torch.baddbmm(b, h, w))
        return torch.baddbmm(bs[-1], h, ws[-1]).squeeze(-1)

    def member_ops(self, member: int) -> Ops:
        """Member `member` as ops of resx.studies.depth.pieces (float64 copies of its weights)."""
        ws = [w[member].detach().cpu().double().numpy() for w in self.weights]
        bs = [b[member, 0].detach().cpu().double().numpy() for b in self.biases]
        if self.shape.residual:
            ops: Ops = [("linear", ws[0], bs[0])]
            for i in range(self.shape.depth):
                branch = [("linear", ws[1 + 2 * i], bs[1 + 2 * i]), ("relu",), ("linear", ws[2 + 2 * i], bs[2 + 2 * i])]
                ops.append(("residual", branch))
        else:
            ops = []
            for w, b in zip(ws[:-1], bs[:-1]):
                ops += [("linear", w, b), ("relu",)]
        return ops + [("linear", ws[-1], bs[-1])]

    def count_parameters(self) -> int:
        """Parameters of one member (what shapes.param_count says)."""
        return sum(p[0].numel() for p in self.parameters())
