"""CIFAR ResNeXt (Xie, Girshick, Dollár, Tu, He, "Aggregated Residual Transformations for Deep Neural Networks",
CVPR 2017, arXiv 1611.05431, §5.3 and Table 7).

ResNeXt-29: a 3x3 conv stem with 64 filters, then 3 stages of 3 bottleneck blocks (9 blocks x 3 layers + stem + fc
= 29 layers) on maps of 32, 16 and 8 pixels, global average pooling and a fully connected layer. Each block is the
paper's template (c), with grouped convolution:

    1x1 conv, in -> C*d  - BN - ReLU - 3x3 conv, C groups, C*d -> C*d  - BN - ReLU - 1x1 conv, C*d -> out - BN
    out = relu(branch(x) + shortcut(x))        post-activation, as the original ResNet

Stage output widths 256, 512, 1024; the bottleneck width C*d at the first stage (C = 8, d = 64: 512), doubling at
each stage (the group width d doubles with it); stride 2 in the grouped 3x3 conv of the first block of stages 2
and 3; projection shortcuts (1x1 conv + BN) where the shape changes (every stage's first block: 64 -> 256,
256 -> 512, 512 -> 1024), identity elsewhere. This is the structure of the official Torch code
(facebookresearch/ResNeXt, models/resnext.lua, CIFAR) and of the well-known PyTorch port (prlz77/ResNeXt.pytorch).
Parameters (10 classes), checked by tests/test_resnext_densenet.py against the paper's Table 7:
    resnext29_8x64d   34,426,698  (paper 34.4M)        resnext29_16x64d   68,155,210  (paper 68.1M)

Name grammar (resx.models.registry): `resnextN_CxDd[_wW]`: N = 9n+2 layers (n blocks per stage), cardinality C,
group width d at the first stage, and W the first stage's output width (default 256, the paper's). The stem has
W/4 filters and the stages W, 2W, 4W outputs: W = 256 is the paper's layout (stem 64); W = 64 is the layout of
He et al. 2016's CIFAR bottleneck ResNets (stem 16; outputs 64, 128, 256, 4x resnet56's 16, 32, 64), used for
nets of a small parameter budget (resx.models.budget): e.g. resnext56_4x8d_w64, 56 layers (6 blocks per stage,
the depth of resnet56), about resnet56's 0.85M parameters. C = 1 is a plain bottleneck ResNet of that layout.
"""

from __future__ import annotations

from torch import nn

from resx.models.blocks import build_stages, conv1x1, conv3x3
from resx.models.net import BlockNet, GlobalPoolClassifier, init_weights

PAPER_WIDTH = 256  # the first stage's output width in the paper (stem 64, stages 256, 512, 1024)


def resnext_depth_blocks(depth: int) -> int:
    """n, the blocks per stage of a 9n+2-layer ResNeXt; ValueError naming the allowed depths."""
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"ResNeXt depth {depth} is not 9n+2 (3 stages of n bottleneck blocks; allowed: 11, 20, 29, 38, ...)")
    return (depth - 2) // 9


def resnext_branch(in_channels: int, out_channels: int, stride: int, cardinality: int, width: int) -> nn.Sequential:
    """The aggregated transformation (Xie et al. 2017, Fig. 3c): 1x1 reduce to `width` = C*d, a 3x3 conv in
    `cardinality` groups (carrying the stride), 1x1 expand to `out_channels`, each followed by BN; ReLU between.
    The ReLU after the addition is the block's (post-activation)."""
    grouped = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False)
    return nn.Sequential(
        conv1x1(in_channels, width),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        grouped,
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        conv1x1(width, out_channels),
        nn.BatchNorm2d(out_channels),
    )


def check_resnext(depth: int, cardinality: int, group_width: int, width: int) -> int:
    """Validate the shape of a ResNeXt; returns n (blocks per stage)."""
    n = resnext_depth_blocks(depth)
    if cardinality < 1 or group_width < 1:
        raise ValueError(f"cardinality and group width must be at least 1, got {cardinality}x{group_width}d")
    if width < 4 or width % 4:
        raise ValueError(f"the first stage's output width must be a positive multiple of 4 (the stem has width/4 "
                         f"filters), got {width}")
    return n


def cifar_resnext(
    depth: int = 29,
    cardinality: int = 8,
    group_width: int = 64,
    *,
    width: int = PAPER_WIDTH,
    num_classes: int = 10,
    in_channels: int = 3,
    stochastic_depth: float | None = None,
    **_ignored,
) -> BlockNet:
    """ResNeXt-`depth` (9n+2 layers) with cardinality C = `cardinality` and group width d = `group_width` at the first
    stage; `width` is the first stage's output width (256 in the paper). Blocks are `ResidualBlock`s (branch =
    the grouped bottleneck, projection shortcuts where the shape changes), so lesion and path studies apply."""
    n = check_resnext(depth, cardinality, group_width, width)
    stage_widths = (width, 2 * width, 4 * width)
    stem_width = width // 4

    def branch(block_in: int, block_out: int, stride: int) -> nn.Sequential:
        scale = block_out // width  # 1, 2, 4: the bottleneck doubles with the output width at every stage
        return resnext_branch(block_in, block_out, stride, cardinality, cardinality * group_width * scale)

    blocks, channels = build_stages(branch, stage_widths, [n] * 3, stem_width, shortcut="B", post_activation=True)
    stem = nn.Sequential(conv3x3(in_channels, stem_width), nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True))
    net = BlockNet(stem, blocks, GlobalPoolClassifier(channels, num_classes))
    init_weights(net)
    net.set_stochastic_depth(stochastic_depth)
    return net


def resnext_name(depth: int, cardinality: int, group_width: int, width: int = PAPER_WIDTH) -> str:
    """The registry name of a ResNeXt: resnext29_8x64d (paper layout), resnext56_4x8d_w64 (another first-stage width)."""
    suffix = "" if width == PAPER_WIDTH else f"_w{width}"
    return f"resnext{depth}_{cardinality}x{group_width}d{suffix}"
