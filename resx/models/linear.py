"""Deep linear nets: the textbook case of vanishing and exploding signals, as `BlockNet`s.

    linear_plain:  h_{i+1} = W_i h_i                 block Jacobian W_i
    linear_res:    h_{i+1} = h_i + W_i h_i           block Jacobian I + W_i

No nonlinearity and no bias (unless `bias=True`), so the map from the first block's input to the last block's
output is the matrix product of the block Jacobians, and the gradient flowing back is the transposed product.
With every W_i = a I the plain net computes a^l x: for l = 50, a = 0.5 gives 8.9e-16 (vanishing), a = 1.5 gives
6.4e8 (exploding), and the gradient carries the same factor (Saxe et al. 2014, "Exact solutions to the nonlinear
dynamics of learning in deep linear neural networks"; He et al. 2016, "Identity mappings in deep residual
networks", §3: a residual block's Jacobian is I + dF/dx, so the product stays well conditioned while the branches
are small).

`depth` counts the blocks, i.e. the matrices W_1..W_l of the product (default 50); the classifier head (and the
input projection below) come on top. The weights: W_i = s_i B_i with B_i from `init`:
  scaled-identity  B_i = I
  he               B_i ~ N(0, 1/width): He et al. 2015's variance-preserving rule (ICCV, "Delving deep into
                   rectifiers") for a linear unit, gain 1 (the factor 2 there is for ReLUs, which this net has not)
  orthogonal       B_i a random orthogonal matrix (Saxe et al. 2014: every singular value of the product is s^l)
and the scale s_i:
  linear_plain     s = a                         (scaled-identity: the product is a^l)
  linear_res       s = a / depth                 (scaled-identity: the product is (1 + a/l)^l, below e^a)
The residual branch is scaled down by the depth so that one `scale` a serves both twins and the residual net's
blocks are within a/l of the identity: the simplest form of the depth-scaled residual branches of Hanin & Rolnick
2018 ("How to start training: the effect of initialization and architecture") and Fixup (Zhang et al. 2019).
Without it, x + a x would give (1 + a)^l, exploding as fast as a plain net of gain 1 + a; pass scale = a * depth
to get that net. Same seed, same B_i in both twins (built in the same order).

Inputs: with no data options the net takes vectors of size `width` (the stem only flattens), which is what
`resx signal --model linear_plain` feeds it (Gaussian vectors). Given image data options (in_channels, input_size)
or `input_dim`, the stem is a fixed-variance linear projection (std 1/sqrt(input_dim)) of the flattened input to
`width`, so that the net trains on flattened images like the MLPs (`resx train --model linear_res --depth 10`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from resx.models.blocks import ResidualBlock
from resx.models.net import BlockNet

INITS = ("scaled-identity", "he", "orthogonal")


def branch_scale(scale: float, depth: int, residual: bool) -> float:
    """s of W_i = s B_i: a for the plain net, a / depth for the residual net's branches (see the module docstring)."""
    return scale / depth if residual else scale


def expected_gain(scale: float, depth: int, residual: bool, init: str = "scaled-identity") -> float | None:
    """The exact factor by which the net's blocks scale every input (and every gradient), where one exists:
    scaled-identity a^l (plain) or (1 + a/l)^l (residual), orthogonal a^l (plain only). None otherwise."""
    s = branch_scale(scale, depth, residual)
    if init == "scaled-identity":
        return (1.0 + s) ** depth if residual else s ** depth
    if init == "orthogonal" and not residual:
        return abs(s) ** depth
    return None


def _init_block_weight(weight: torch.Tensor, init: str, s: float) -> None:
    with torch.no_grad():
        if init == "scaled-identity":
            weight.copy_(torch.eye(weight.shape[0], dtype=weight.dtype))
        elif init == "he":
            nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="linear")
        else:
            nn.init.orthogonal_(weight)
        weight.mul_(s)


def linear_net(
    depth: int = 50,
    *,
    width: int = 64,
    residual: bool = False,
    init: str = "scaled-identity",
    scale: float = 1.0,
    bias: bool = False,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_size: int | None = None,
    input_dim: int | None = None,
    **_ignored,
) -> BlockNet:
    """A deep linear net of `depth` blocks of `width` units (see the module docstring)."""
    if depth < 1:
        raise ValueError(f"linear net depth (the number of blocks) must be at least 1, got {depth}")
    if width < 1:
        raise ValueError(f"linear net width must be positive, got {width}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale}")
    if input_dim is None and (in_channels is not None or input_size is not None):
        input_dim = (in_channels or 1) * (input_size or 1) ** 2
    layers: list[nn.Module] = [nn.Flatten()]
    if input_dim is not None:
        projection = nn.Linear(input_dim, width, bias=False)
        meta = projection.weight.is_meta
        if not meta:
            nn.init.normal_(projection.weight, std=1.0 / math.sqrt(input_dim))
        layers.append(projection)
    stem = nn.Sequential(*layers)
    s = branch_scale(scale, depth, residual)
    blocks = []
    for _ in range(depth):
        layer = nn.Linear(width, width, bias=bias)
        if not layer.weight.is_meta:
            _init_block_weight(layer.weight, init, s)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        blocks.append(ResidualBlock(nn.Sequential(layer), nn.Identity() if residual else None, in_channels=width,
                                    out_channels=width, stride=1, post_activation=False, stage=0))
    head = nn.Linear(width, num_classes)
    if not head.weight.is_meta:
        nn.init.normal_(head.weight, std=1.0 / math.sqrt(width))
        nn.init.zeros_(head.bias)
    return BlockNet(stem, blocks, head)
