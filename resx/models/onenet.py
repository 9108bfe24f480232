"""The one-neuron ResNet of Lin & Jegelka 2018 ("ResNet with one-neuron hidden layers is a Universal Approximator",
NeurIPS 2018): every block adds one ReLU unit's worth of change to a d-dimensional residual stream,

    x <- x + V relu(U x + b)        U: 1 x d, b: 1, V: d x 1   (2d + 1 parameters, one hidden unit per block)

followed by a linear read-out to the classes. A fully connected ReLU net whose hidden layers are no wider than the
input dimension d cannot enclose a bounded region (Hanin & Sellke 2017; Lu et al. 2017), however deep; this net can,
as its depth grows (Lin & Jegelka's theorem: it approximates any Lebesgue-integrable function on R^d in L1).
`depth` counts the blocks.

Inputs: vectors of size `input_dim` (default 2, points in the plane). Given image data options (in_channels,
input_size) instead, the input is flattened and d = in_channels * input_size^2, so that the net also trains on
flattened images (`resx train onenet_res --data mnist`), a one-unit-per-block net on 784 dimensions.

Initialisation (a choice of resx, not of the paper, which does not state one): U He-normal (std sqrt(2 / d)), so
that each unit's hyperplane passes through the data at a random angle; b = 0; V ~ N(0, 1 / depth^2) per entry, so
that the sum of the depth branches starts small and the net starts near the identity map (the depth-scaled branches
of Hanin & Rolnick 2018 and of resx's linear_res); the read-out as nn.Linear's default.
"""

from __future__ import annotations

import math

from torch import nn

from resx.models.blocks import ResidualBlock
from resx.models.net import BlockNet


def one_neuron_branch(dim: int) -> nn.Sequential:
    """V relu(U x + b): a Linear(d -> 1) with bias, a ReLU, a Linear(1 -> d) without: 2d + 1 parameters."""
    return nn.Sequential(nn.Linear(dim, 1, bias=True), nn.ReLU(), nn.Linear(1, dim, bias=False))


def onenet_res(
    depth: int = 10,
    *,
    num_classes: int = 2,
    input_dim: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    **_ignored,
) -> BlockNet:
    """Lin & Jegelka 2018's ResNet: `depth` one-neuron blocks on a residual stream of the input's dimension d."""
    if depth < 1:
        raise ValueError(f"onenet_res depth (the number of one-neuron blocks) must be at least 1, got {depth}")
    if input_dim is None:
        input_dim = (in_channels or 1) * (input_size or 1) ** 2 if (in_channels or input_size) else 2
    if input_dim < 1:
        raise ValueError(f"input_dim must be positive, got {input_dim}")
    blocks = []
    for _ in range(depth):
        branch = one_neuron_branch(input_dim)
        up, down = branch[0], branch[2]
        if not up.weight.is_meta:
            nn.init.normal_(up.weight, std=math.sqrt(2.0 / input_dim))
            nn.init.zeros_(up.bias)
            nn.init.normal_(down.weight, std=1.0 / depth)
        blocks.append(ResidualBlock(branch, nn.Identity(), in_channels=input_dim, out_channels=input_dim, stride=1,
                                    post_activation=False, stage=0))
    return BlockNet(nn.Flatten(), blocks, nn.Linear(input_dim, num_classes))


def hidden_units(net: BlockNet) -> list[int]:
    """The hidden units of each block of a one-neuron ResNet (the rows of U): [1, 1, ...]."""
    return [block.branch[0].out_features for block in net.blocks]
