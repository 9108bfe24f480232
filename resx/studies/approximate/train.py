"""Training one net on a 2-D task: Adam on the mean cross-entropy, a fixed number of steps, seeded.

The recipe (recorded in approximation_info.json): Adam (betas 0.9, 0.999, no weight decay) with learning rate `lr`,
divided by 10 at 50% and 75% of the steps (resx's He et al. schedule, so that the loss settles rather than jitters at
a constant rate); full batch by default (every step sees every training point: 1,000 points cost less than the
per-step overhead), or shuffled minibatches of `batch_size` (a new permutation each pass, from the seed). A step is
one Adam update. Nets with BatchNorm (mlp_*) train with batch statistics; afterwards their running statistics are
replaced by those of the whole training set (one pass, cumulative average), so that the net evaluated (eval mode, an
affine map per BN layer) is the net that was trained: with a full batch, exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from resx.studies.approximate.declare import LR_MILESTONES
from resx.studies.common import calibrate_batchnorm, has_batchnorm

CURVE_POINTS = 100  # the training loss is recorded about this many times (and at the last step)


@dataclass
class Trained:
    net: nn.Module
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss of that step's batch)
    final_loss: float = float("nan")  # mean cross-entropy on the whole training set, eval mode, after training
    seconds: float = 0.0

    def loss_at(self, fraction: float) -> float:
        """The recorded loss nearest to `fraction` of the steps."""
        if not self.curve:
            return float("nan")
        last = self.curve[-1][0]
        return min(self.curve, key=lambda sl: abs(sl[0] - fraction * last))[1]


def milestones(steps: int) -> list[int]:
    return sorted({max(1, int(round(f * steps))) for f in LR_MILESTONES if 0 < f < 1})


def train_net(net: nn.Module, points: torch.Tensor, labels: torch.Tensor, *, steps: int, lr: float,
              batch_size: int | None, seed: int) -> Trained:
    """Train `net` (already on the points' device) in place; returns it with its loss curve and final loss."""
    start = time.perf_counter()
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones(steps), gamma=0.1)
    n = len(points)
    full = batch_size is None or batch_size >= n
    generator = torch.Generator().manual_seed(seed)
    order, at = torch.randperm(n, generator=generator), 0
    every = max(1, steps // CURVE_POINTS)
    curve: list[tuple[int, float]] = []
    for step in range(1, steps + 1):
        if full:
            x, y = points, labels
        else:
            if at + batch_size > n:  # a new pass over the points (a short remainder is left out)
                order, at = torch.randperm(n, generator=generator), 0
            index = order[at:at + batch_size].to(points.device)
            at += batch_size
            x, y = points[index], labels[index]
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step == 1 or step % every == 0 or step == steps:
            curve.append((step, float(loss.detach())))
    if has_batchnorm(net):
        calibrate_batchnorm(net, points)  # the whole training set's statistics, then eval mode
    net.eval()
    with torch.no_grad():
        final = float(F.cross_entropy(net(points), labels))
    return Trained(net, curve, final, time.perf_counter() - start)


@torch.no_grad()
def predictions(net: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """The predicted class of each point (eval mode)."""
    net.eval()
    return net(points).argmax(dim=1)
