"""The study's two targets as training and test tensors, one slice per seed (torch).

  sawtooth  m^k on [0, 1] (resx.studies.depth.draw.sawtooth), regression with the mean squared error. Training
            inputs: the grid i / 2^(k+1) (declare.sawtooth_train_points: every kink and every piece's midpoint, at
            least 129 points); test inputs: the midpoints of 4096 equal cells, none of them a training input.
            The same data for every seed.
  parity    n bits as ±1 inputs (centred, so that no input is all zeros), label 1 when an odd number of them is
            +1 (the parity of the bits read as 0/1), classification with the logistic loss on one logit. With
            train_fraction 1 (the default) every seed trains and is tested on all 2^n inputs: the question is
            whether gradient descent fits parity at a given budget, as Håstad's and Bengio's claims are about
            representation. Below 1, each seed draws its own split (a permutation from its seed): train on that
            fraction of the 2^n inputs (at least one), test on the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from resx.errors import ResxError
from resx.studies.depth.declare import TEST_POINTS, sawtooth_train_points
from resx.studies.depth.draw import sawtooth


@dataclass
class Task:
    """Inputs (S, N, d_in) and targets (S, N) of every seed; `loss` is 'mse' or 'logistic'."""

    target: str
    k: int
    d_in: int
    loss: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def train_points(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def test_points(self) -> int:
        return int(self.x_test.shape[1])

    def to(self, device: torch.device) -> "Task":
        return Task(self.target, self.k, self.d_in, self.loss, self.x_train.to(device), self.y_train.to(device),
                    self.x_test.to(device), self.y_test.to(device))


def sawtooth_task(k: int, members: int) -> Task:
    x = np.linspace(0.0, 1.0, sawtooth_train_points(k))
    xt = (np.arange(TEST_POINTS) + 0.5) / TEST_POINTS

    def stack(values: np.ndarray, column: bool) -> torch.Tensor:
        t = torch.tensor(values, dtype=torch.float32)
        t = t[:, None] if column else t
        return t.unsqueeze(0).expand(members, *t.shape).contiguous()

    return Task("sawtooth", k, 1, "mse", stack(x, True), stack(sawtooth(x, k), False), stack(xt, True),
                stack(sawtooth(xt, k), False))


def parity_inputs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All 2^n inputs as ±1 (row i holds the bits of i, most significant first) and their parity labels (0/1)."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)[None, :]) & 1
    return (2.0 * bits - 1.0), (bits.sum(axis=1) % 2).astype(np.float64)


def parity_task(n: int, seeds: Sequence[int], train_fraction: float) -> Task:
    if not 0 < train_fraction <= 1:
        raise ResxError(f"--train-fraction must be in (0, 1], got {train_fraction}")
    x, y = parity_inputs(n)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    total = len(x)
    if train_fraction == 1:
        rows = len(seeds)
        return Task("parity", n, n, "logistic", x.expand(rows, -1, -1).contiguous(), y.expand(rows, -1).contiguous(),
                    x.expand(rows, -1, -1).contiguous(), y.expand(rows, -1).contiguous())
    count = min(total - 1, max(1, round(train_fraction * total)))  # at least one input on each side
    orders = [torch.randperm(total, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    train = torch.stack([o[:count] for o in orders])
    test = torch.stack([o[count:] for o in orders])
    return Task("parity", n, n, "logistic", x[train], y[train], x[test], y[test])


def make_task(target: str, k: int, seeds: Sequence[int], train_fraction: float) -> Task:
    if target == "sawtooth":
        return sawtooth_task(k, len(seeds))
    return parity_task(k, seeds, train_fraction)
