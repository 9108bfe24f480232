"""What a trained net does far outside the data, and on a grid around it.

Class 1 is where the net's class-1 margin m(z) = logit_1(z) - logit_0(z) is positive (p_class1 = sigmoid(m) > 1/2;
a net with a single logit: m is that logit). The theory (Hanin & Sellke 2017; Lu et al. 2017): every connected part
of {m > 0} of a ReLU net whose hidden layers are at most d wide is unbounded; a one-neuron ResNet's need not be
(Lin & Jegelka 2018). Two measurements per circle of radius r, centred at the origin:

- the share of FAR_ANGLES equally spaced points on the circle that the net puts in class 1 (`far_class1_share_r*`).
  A share above 0 at r = 500 shows class 1 reaching 500, far beyond the data (radius <= 5.5);
- the largest margin on the circle (`far_margin_max_r*`), found by SEARCH_ANGLES equally spaced angles and then two
  finer searches around the best ones. An unbounded class-1 region may be a strip of fixed width, whose share of a
  circle of radius r falls like width / (2 pi r) and can be missed by 720 points; its margin along the strip's centre
  line stays positive, which the search finds. A margin below 0 on the circle means no class-1 point was found there:
  evidence, not proof, that the region is bounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from resx.studies.approximate.declare import FAR_ANGLES, RADII, SEARCH_ANGLES

REFINE_BEST = 8  # angles refined around in each finer search
REFINE_POINTS = 101  # angles per refinement window
REFINE_ROUNDS = 2  # each round narrows the window by a factor (REFINE_POINTS - 1) / 2


@torch.no_grad()
def class1_margin(net: nn.Module, points: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """m(z) = logit_1 - logit_0 (or the single logit) of each point, in eval mode (the caller's mode restored)."""
    was_training = net.training
    net.eval()
    try:
        outs = []
        for start in range(0, len(points), chunk):
            logits = net(points[start:start + chunk])
            outs.append(logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0])
        return torch.cat(outs)
    finally:
        net.train(was_training)


def class1_probability(net: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """p(class 1 | z) = sigmoid(m(z)): softmax's second entry for two logits, the logistic model for one."""
    return torch.sigmoid(class1_margin(net, points))


def circle(radius: float, angles: torch.Tensor) -> torch.Tensor:
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1)


def _device_dtype(net: nn.Module) -> tuple[torch.device, torch.dtype]:
    first = next(iter(net.parameters()), None)
    return (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.float32)


@dataclass(frozen=True)
class FarField:
    radius: float
    share: float  # of FAR_ANGLES equally spaced points on the circle, put in class 1
    margin_max: float  # the largest class-1 margin found on the circle


def largest_margin(net: nn.Module, radius: float, search: int = SEARCH_ANGLES) -> float:
    """The largest m on the circle: `search` equal steps, then REFINE_ROUNDS finer windows around the best angles
    (computed in float64 angles, the points in the net's dtype)."""
    device, dtype = _device_dtype(net)
    step = 2 * math.pi / search
    angles = torch.arange(search, dtype=torch.float64) * step
    margins = class1_margin(net, circle(radius, angles).to(device, dtype)).double().cpu()
    best_angles, best = angles, margins
    for _ in range(REFINE_ROUNDS):
        top = best_angles[torch.topk(best, min(REFINE_BEST, len(best))).indices]
        offsets = torch.linspace(-step, step, REFINE_POINTS, dtype=torch.float64)
        candidates = (top[:, None] + offsets[None, :]).reshape(-1)
        values = class1_margin(net, circle(radius, candidates).to(device, dtype)).double().cpu()
        best_angles, best = torch.cat([best_angles, candidates]), torch.cat([best, values])
        step = 2 * step / (REFINE_POINTS - 1)
    return float(best.max())


def far_field(net: nn.Module, radii: Sequence[float] = RADII, angles: int = FAR_ANGLES,
              search: int = SEARCH_ANGLES) -> list[FarField]:
    """The share of each circle in class 1, and the largest class-1 margin on it."""
    device, dtype = _device_dtype(net)
    grid = torch.arange(angles, dtype=torch.float64) * (2 * math.pi / angles)
    out = []
    for radius in radii:
        margin = class1_margin(net, circle(radius, grid).to(device, dtype))
        out.append(FarField(float(radius), float((margin > 0).double().mean()), largest_margin(net, radius, search)))
    return out


def decision_grid(net: nn.Module, extent: float, points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, p_class1) on a points x points grid over [-extent, extent]^2, x fastest, as flat CPU tensors."""
    device, dtype = _device_dtype(net)
    axis = torch.linspace(-extent, extent, points, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    flat = torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)
    p = class1_probability(net, flat.to(device, dtype)).double().cpu()
    return x.reshape(-1), y.reshape(-1), p
