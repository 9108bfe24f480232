"""Moving a net through weight space (Li, Xu, Taylor, Studer, Goldstein 2018, §3 and §4).

random       f(x, y) = L(theta + x d1 + y d2) (dims 2) or f(x) = L(theta + x d1) (dims 1), d1 and d2 random
             Gaussian directions drawn from a torch.Generator seeded by `seed`, parameter by parameter in the net's
             parameter order (d1 whole, then d2), so a residual net and its plain twin (identical parameter
             shapes: resnet56/plain56, mlp_res/mlp_plain) get identical raw directions. Normalised as `norm` says
             (Li et al. §4):
               filter  each filter of the direction (an output channel of a conv weight, a row of a linear weight)
                       rescaled to the norm of the same filter of theta: d_ij <- d_ij / |d_ij| |theta_ij|
               layer   each whole parameter tensor rescaled to the norm of theta's tensor
               none    the raw Gaussian (every parameter, 1-D ones included)
             With filter and layer, 1-D parameters (BatchNorm weights and biases, every bias) get a zero direction,
             as Li et al. do ("ignore biasbn"): they stay at their trained values.
interpolate  f(a) = L((1 - a) theta0 + a theta1), a over the span (Goodfellow et al. 2015, Li et al. §3): between
             two runs (e.g. two seeds), or with --init and one run from the freshly initialised net (seed) to the
             trained one. torch.lerp is exact at both ends; the BN running statistics are interpolated too (Li et
             al.'s "states" directions), the variance clamped at 0 beyond the ends.

One model per run: its weights are written in place for each point (theta + x d1 + y d2 under no_grad, no new
module).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from resx.studies.landscape.declare import NORMS
from resx.studies.landscape.options import check_choice


def random_directions(net: nn.Module, count: int, seed: int) -> list[list[torch.Tensor]]:
    """`count` raw Gaussian directions (CPU, float32), each one tensor per parameter in `net.parameters()` order,
    drawn from one torch.Generator seeded with `seed`: direction 1 whole, then direction 2. Nets with the same
    parameter shapes in the same order get the same directions."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(tuple(p.shape), generator=generator, dtype=torch.float32) for p in net.parameters()]
            for _ in range(count)]


def normalize_direction(direction: Sequence[torch.Tensor], weights: Sequence[torch.Tensor],
                        norm: str) -> list[torch.Tensor]:
    """Li et al. 2018 §4, Eq. in "Filter-Wise Normalization": scale each filter d_ij of the direction to the norm
    of the filter theta_ij of the weights (`filter`), or each tensor to the weight tensor's norm (`layer`); 1-D
    parameters (BN weights and biases, biases) get a zero direction under both. `none` keeps the raw direction."""
    check_choice(norm, NORMS, "--norm")
    out = []
    for d, w in zip(direction, weights):
        d, w = d.detach().float().cpu(), w.detach().float().cpu()
        if norm == "none":
            out.append(d.clone())
        elif d.dim() <= 1:
            out.append(torch.zeros_like(d))
        elif norm == "layer":
            out.append(d * (w.norm() / (d.norm() + 1e-10)))
        else:  # one filter per output unit: dim 0 of a conv weight [out, in, k, k] or a linear weight [out, in]
            scale = w.flatten(1).norm(dim=1) / (d.flatten(1).norm(dim=1) + 1e-10)
            out.append(d * scale.view(-1, *([1] * (d.dim() - 1))))
    return out


def make_directions(net: nn.Module, dims: int, norm: str, seed: int) -> list[list[torch.Tensor]]:
    """`dims` normalised random directions around `net`'s current weights (see `random_directions`)."""
    weights = list(net.parameters())
    return [normalize_direction(d, weights, norm) for d in random_directions(net, dims, seed)]


# --- moving one net through weight space --------------------------------------------------------------------------
class Plane:
    """theta + x d1 (+ y d2), written into the net's parameters in place (Li et al. 2018 §4: random directions)."""

    def __init__(self, net: nn.Module, directions: Sequence[Sequence[torch.Tensor]]):
        params = list(net.parameters())
        self.theta = [p.detach().clone() for p in params]
        self.directions = [[d.to(device=p.device, dtype=p.dtype) for d, p in zip(ds, params)] for ds in directions]

    @torch.no_grad()
    def apply(self, net: nn.Module, x: float, y: float = 0.0) -> None:
        for k, p in enumerate(net.parameters()):
            p.copy_(self.theta[k])
            for direction, step in zip(self.directions, (x, y)):
                if step:
                    p.add_(direction[k], alpha=step)


def _float_buffers(net: nn.Module) -> list[torch.Tensor]:
    return [b for b in net.buffers() if b.is_floating_point()]


class Line:
    """(1 - a) theta0 + a theta1 (Goodfellow et al. 2015; Li et al. 2018 §3), written into the net in place with
    torch.lerp (exact at a = 0 and a = 1). The float buffers (BN running mean and variance) are interpolated too,
    the variance clamped at 0 beyond the ends; with recalibration they are recomputed anyway."""

    def __init__(self, net: nn.Module, start: nn.Module, end: nn.Module):
        device = next(net.parameters()).device
        self.theta0 = [p.detach().to(device).clone() for p in start.parameters()]
        self.theta1 = [p.detach().to(device).clone() for p in end.parameters()]
        self.buffers0 = [b.detach().to(device).clone() for b in _float_buffers(start)]
        self.buffers1 = [b.detach().to(device).clone() for b in _float_buffers(end)]
        self.variances = [name.endswith("running_var") for name, b in net.named_buffers() if b.is_floating_point()]

    @torch.no_grad()
    def apply(self, net: nn.Module, x: float, y: float = 0.0) -> None:
        for p, a, b in zip(net.parameters(), self.theta0, self.theta1):
            p.copy_(torch.lerp(a, b, float(x)))
        for buf, a, b, is_var in zip(_float_buffers(net), self.buffers0, self.buffers1, self.variances):
            buf.copy_(torch.lerp(a, b, float(x)))
            if is_var:
                buf.clamp_(min=0.0)
