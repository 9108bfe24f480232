"""Training one shape's seeds side by side (resx.studies.depth.nets.MemberNets), and what they learned.

Recipe (the same for every net, so that only the shape differs): full-batch Adam (Kingma & Ba 2015; betas 0.9,
0.999) for `steps` steps at learning rate `lr`, cosine-annealed to 0 (Loshchilov & Hutter 2017), no weight decay,
strict fp32 (no TF32 on CUDA). A step is one forward and backward pass over every training input of every seed.
The loss is the sum over seeds of each seed's mean loss, so each seed's gradient, and its Adam update, is its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from resx.studies.common import precision
from resx.studies.depth.nets import MemberNets
from resx.studies.depth.shapes import Shape
from resx.studies.depth.tasks import Task


def _losses(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Each seed's mean loss, shape (S,)."""
    if kind == "mse":
        return ((out - y) ** 2).mean(dim=1)
    return F.binary_cross_entropy_with_logits(out, y, reduction="none").mean(dim=1)


def _errors(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Each seed's error: the MSE (sawtooth) or the fraction of inputs classified wrong (parity)."""
    if kind == "mse":
        return ((out - y) ** 2).mean(dim=1)
    return ((out > 0).float() != (y > 0.5).float()).float().mean(dim=1)


def train_members(shape: Shape, seeds: Sequence[int], task: Task, steps: int, lr: float, device: torch.device,
                  progress: Callable[[int, int], None] | None = None) -> tuple[MemberNets, list[dict], float]:
    """Train `shape` once per seed on `task` (its slices, one per seed, in `seeds`' order); returns the nets, one
    dict of results per seed (train_error, test_error, train_loss, relative_error) and the seconds it took."""
    started = time.perf_counter()
    net = MemberNets(shape, seeds).to(device)
    task = task.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    every = max(1, steps // 20)
    with precision(device, tf32=False):
        for step in range(steps):
            loss = _losses(net(task.x_train), task.y_train, task.loss).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if progress and ((step + 1) % every == 0 or step + 1 == steps):
                progress(step + 1, steps)
        with torch.no_grad():
            train_out, test_out = net(task.x_train), net(task.x_test)
            train_loss = _losses(train_out, task.y_train, task.loss)
            train_error = _errors(train_out, task.y_train, task.loss)
            test_error = _errors(test_out, task.y_test, task.loss)
            if task.loss == "mse":  # the test MSE over the target's variance on the test inputs (1 - R^2)
                relative = test_error / task.y_test.var(dim=1, unbiased=False)
            else:
                relative = test_error
    rows = [dict(train_error=float(a), test_error=float(b), train_loss=float(c), relative_error=float(d))
            for a, b, c, d in zip(train_error.tolist(), test_error.tolist(), train_loss.tolist(), relative.tolist())]
    return net, rows, time.perf_counter() - started
