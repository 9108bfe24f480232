"""The gradient norm reaching each block (the vanishing-gradient picture, measured): for each block, the mean over
the batch of the per-example L2 norm of d(loss_i)/d(block input), with BatchNorm in eval mode (examples independent),
for plain and residual nets alike (Veit et al. 2016 §5 compare it with the gradient per path length).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch
import torch.nn.functional as F

from resx.models.net import BlockNet
from resx.studies.common import analysis_mode
from resx.studies.paths.declare import BLOCK_COLUMNS
from resx.studies.paths.path_gradients import PathsProgress, chunks

if TYPE_CHECKING:
    from resx.studies.paths.nets import StudiedNet


def block_gradient_norms(
    net: BlockNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None
) -> list[float]:
    """For each block, the mean over the examples of ||d loss_i / d x_i|| where x_i is the example's input to
    that block and loss_i its own cross-entropy (eval-mode BN: examples are independent). Works for plain nets
    too. Block 0's input is the stem's output."""
    n = len(net.blocks)
    sums = torch.zeros(n, dtype=torch.float64)
    batch_size = batch_size or len(images)
    with analysis_mode(net):
        for x, y in chunks(images, labels, batch_size):
            with torch.no_grad():
                h = net.stem(x)
            h.requires_grad_(True)
            inputs = []
            for block in net.blocks:
                inputs.append(h)
                h = block(h)
            loss = F.cross_entropy(net.head(h), y, reduction="sum")
            grads = torch.autograd.grad(loss, inputs)
            for i, g in enumerate(grads):
                sums[i] += g.flatten(1).norm(dim=1).double().sum().cpu()
    return (sums / len(images)).tolist()


def block_gradients(nets: Sequence["StudiedNet"], images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    progress: PathsProgress | None) -> pd.DataFrame:
    """block_gradients.csv: every net's gradient norm at each block (`block_gradient_norms`)."""
    rows = []
    for i, entry in enumerate(nets):
        norms = block_gradient_norms(entry.net, images, labels, batch_size)
        rows += [dict(run=entry.label, residual=entry.net.residual, trained=entry.trained, block=b, grad_norm=g)
                 for b, g in enumerate(norms)]
        if progress:
            progress("block gradients", i + 1, len(nets))
    return pd.DataFrame(rows, columns=list(BLOCK_COLUMNS))


def first_last_ratios(blocks: pd.DataFrame) -> dict[str, float]:
    """Per net: the gradient norm at its first block over that at its last (inf when the last is 0)."""
    ratios = {}
    for label, group in blocks.groupby("run", sort=False):
        g = group.sort_values("block")["grad_norm"].to_numpy()
        ratios[label] = float(g[0] / g[-1]) if g[-1] > 0 else float("inf")
    return ratios
