"""Fully connected residual nets: He et al. 2015's block (Fig. 2) for flattened inputs.

    residual:  a[l+2] = relu(z[l+2] + a[l])        plain:  a[l+2] = relu(z[l+2])
with z[l+2] = BN(W[l+2] relu(BN(W[l+1] a[l]))). `depth` counts weighted layers: an input layer, 2 per block,
and the classifier, so depth = 2 * blocks + 2 (the same counting as the CIFAR nets' 6n+2).
Inputs: images of in_channels x input_size x input_size, flattened; or vectors of `input_dim` (e.g. 2 for points in
the plane, `resx approximate`), which replaces the image size. Every hidden layer has `width` units, so at width <= d
the net is one of the narrow ReLU nets whose decision regions are all unbounded (Hanin & Sellke 2017; Lu et al. 2017;
BatchNorm in eval mode is an affine map and changes no width).
`shortcut` and `block`: He et al. 2016's variants (Table 1, Table 2 / Fig. 4) with Linear and BatchNorm1d in place of
convs and BatchNorm2d (a gate is a Linear with a bias); every block keeps the width, so no shortcut changes a shape.
The plain MLP takes `block` as the plain CIFAR nets do (resx/models/cifar.py).
"""

from __future__ import annotations


from torch import nn

from resx.models.blocks import ResidualBlock, block_layout, layout_branch, layout_post, make_shortcut
from resx.models.net import BlockNet, head_activation, init_weights


def mlp_net(
    depth: int = 20,
    *,
    width: int = 128,
    residual: bool = True,
    shortcut: str | None = None,
    block: str | None = None,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    input_dim: int | None = None,
    stochastic_depth: float | None = None,
    **_ignored,
) -> BlockNet:
    if depth < 4 or depth % 2:
        raise ValueError(f"MLP depth {depth} is not 2 * blocks + 2 with at least one block (allowed: 4, 6, 8, ...)")
    if width < 1:
        raise ValueError(f"MLP width must be positive, got {width}")
    layout = block_layout(block)
    input_dim = input_dim or in_channels * input_size * input_size
    stem: list[nn.Module] = [nn.Flatten(), nn.Linear(input_dim, width, bias=False)]
    if layout.stem_activation:
        stem += [nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
    post = layout_post(layout, vector=True)
    blocks = [
        ResidualBlock(
            layout_branch(layout.recipe, width, width, 1, vector=True),
            make_shortcut(shortcut or "A", width, width, 1, vector=True) if residual else None,
            in_channels=width,
            out_channels=width,
            stride=1,
            post_activation=layout.post is not None,
            stage=0,
            post=post(width) if post is not None else None,
        )
        for _ in range((depth - 2) // 2)
    ]
    activation = head_activation(layout.head, width, vector=True)
    head = nn.Sequential(*activation, nn.Linear(width, num_classes)) if activation else nn.Linear(width, num_classes)
    net = BlockNet(nn.Sequential(*stem), blocks, head)
    init_weights(net)
    net.set_stochastic_depth(stochastic_depth)
    return net
