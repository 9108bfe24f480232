"""CIFAR nets of He et al. 2015 §4.2 and their pre-activation versions (He et al. 2016).

6n+2 weighted layers: a 3x3 conv with 16 filters, then three stages of n blocks (2n conv layers) on maps of
32, 16 and 8 pixels with 16, 32 and 64 filters (stride 2 at the first conv of stages 2 and 3), global average
pooling and a 10-way fully connected layer.

Parameters with option A shortcuts (He et al. 2015, Table 6), checked by tests/test_models.py:
    depth    20     32     44     56     110    1202
    params   0.27M  0.46M  0.66M  0.85M  1.7M   19.4M

Pre-activation bottleneck nets (He et al. 2016): 9n+2 layers, blocks 1x1-3x3-1x1 with 4x expansion,
stages of 64, 128, 256 output channels: ResNet-164 (n=18) 1.7M, ResNet-1001 (n=111) 10.2M parameters.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from resx.models.blocks import block_layout, build_stages, conv3x3, layout_branch, layout_post, preact_bottleneck_branch
from resx.models.net import BlockNet, GlobalPoolClassifier, init_weights

STAGE_WIDTHS = (16, 32, 64)


def blocks_per_stage(depth: int, layers_per_block: int) -> int:
    """n for a net of `layers_per_block`*3*n + 2 layers; raises ValueError with the allowed depths."""
    if depth < layers_per_block * 3 + 2 or (depth - 2) % (layers_per_block * 3):
        k = layers_per_block * 3
        raise ValueError(f"depth {depth} is not {k}n+2 (allowed: {k + 2}, {2 * k + 2}, {3 * k + 2}, ...)")
    return (depth - 2) // (layers_per_block * 3)


def cifar_resnet(
    depth: int,
    *,
    residual: bool = True,
    shortcut: str = "A",
    preact: bool = False,
    block: str | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    stochastic_depth: float | None = None,
    **_ignored,
) -> BlockNet:
    """The 6n+2-layer CIFAR net with basic blocks: ResNet (residual=True) or its plain twin (False).
    `block`: where BN and ReLU sit (He et al. 2016, Table 2 / Fig. 4; resx/models/blocks.py BLOCK_LAYOUTS), default
    original; `preact` is block full-preact (preresnetN). A plain net takes every block too: without an addition the
    placements differ only in where the chain of conv-BN-ReLU starts and ends, so each is still a sound plain net, and
    it is the twin with the same parameters as the residual net of that block (He et al. 2015 §4.2's comparison)."""
    if preact and block not in (None, "full-preact"):
        raise ValueError(f"a pre-activation net has block full-preact, not {block!r} (use resnet{depth} for others)")
    layout = block_layout("full-preact" if preact else block)
    n = blocks_per_stage(depth, 2)
    blocks, channels = build_stages(partial(layout_branch, layout.recipe), STAGE_WIDTHS, [n] * 3, STAGE_WIDTHS[0],
                                    shortcut=shortcut if residual else None, post_activation=layout.post is not None,
                                    post=layout_post(layout))
    stem: list[nn.Module] = [conv3x3(in_channels, STAGE_WIDTHS[0])]
    if layout.stem_activation:
        stem += [nn.BatchNorm2d(STAGE_WIDTHS[0]), nn.ReLU(inplace=True)]
    net = BlockNet(nn.Sequential(*stem), blocks, GlobalPoolClassifier(channels, num_classes, activation=layout.head))
    init_weights(net)
    net.set_stochastic_depth(stochastic_depth)
    return net


def cifar_preresnet_bottleneck(
    depth: int,
    *,
    residual: bool = True,
    shortcut: str = "B",
    num_classes: int = 10,
    in_channels: int = 3,
    stochastic_depth: float | None = None,
    **_ignored,
) -> BlockNet:
    """Pre-activation bottleneck net of 9n+2 layers (He et al. 2016, ResNet-164 and ResNet-1001).
    Projection shortcuts (option B) by default: the first block widens 16 -> 64 channels."""
    n = blocks_per_stage(depth, 3)
    blocks, channels = build_stages(preact_bottleneck_branch, [w * 4 for w in STAGE_WIDTHS], [n] * 3, STAGE_WIDTHS[0],
                                    shortcut=shortcut if residual else None, post_activation=False)
    net = BlockNet(conv3x3(in_channels, STAGE_WIDTHS[0]), blocks, GlobalPoolClassifier(channels, num_classes, preact=True))
    init_weights(net)
    net.set_stochastic_depth(stochastic_depth)
    return net
