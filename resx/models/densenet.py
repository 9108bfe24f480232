"""CIFAR DenseNets (Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks", CVPR 2017,
arXiv 1608.06993, §3-4 and Table 2).

Three dense blocks on maps of 32, 16 and 8 pixels. Layer l of a block reads the concatenation of everything before
it and adds k (the growth rate) new feature maps: x_l = [x_{l-1}, H_l(x_{l-1})]. Between blocks a transition,
BN-ReLU-1x1 conv-2x2 average pooling; after the last, BN-ReLU, global average pooling and a linear classifier.
    densenetL       (L = 3n+4; densenet40: k = 12, n = 12): 16-filter 3x3 conv stem, H = BN-ReLU-3x3 conv(k),
                    transitions keep the channels (no compression). 1,019,722 parameters (paper: 1.0M)
    densenet_bcL    (L = 6n+4; densenet_bc100: k = 12, n = 16): 2k-filter stem, bottleneck H = BN-ReLU-1x1 conv(4k)-
                    BN-ReLU-3x3 conv(k), compression 0.5 at the transitions. 769,162 parameters (paper: 0.8M)
(10 classes; the counts of the authors' Torch code and of the public PyTorch reproductions.) Dropout: none by
default; the paper uses 0.2 after each conv only without data augmentation (option `dropout`).

How a dense block fits resx's block interface (stem -> ResidualBlocks -> head): a block's features live in one
tensor of the block's final width W (its input channels + n*k); channels not yet computed are zero. Layer l reads
the first c_l channels and writes its k new maps into its own slot [c_l, c_l + k):

    y = x + pad(H_l(x[:, :c_l]))          = [x[:, :c_l], H_l(x[:, :c_l]), 0...]  = concat(x, H_l(x)), padded

the same function and the same parameters as the concatenation, with an identity shortcut and shapes that stay
fixed within a block. The stem zero-pads its output to the first block's width; the transition into the next block
(and its zero-padding) is the shortcut of that block's first layer, which is therefore the only "downsampling"
layer of its block, as a ResNet's stage-opening block keeps its projection shortcut.

Lesion (Veit et al. 2016 §4, resx lesion): deleting a layer keeps its shortcut and drops its branch, so its slot
stays zero: the layer's output concat(x, H(x)) becomes concat(x, 0), and every later layer and the classifier
see zeros where its k feature maps were. A deleted stage-opening layer keeps its transition. Swapping two layers of
one block (the swap study) runs them in the other order: the one moved forward sees the other's slot still empty.
The path study (resx paths) refuses DenseNets: see resx.studies.paths.path_gradients.check_residual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resx.models.blocks import PadShortcut, ResidualBlock, conv1x1, conv3x3
from resx.models.net import BlockNet, GlobalPoolClassifier, init_weights


class DenseBranch(nn.Module):
    """H_l of one dense layer on the first `read` channels, its `growth` maps written at [read, read + growth) of a
    `width`-channel tensor (zeros elsewhere)."""

    def __init__(self, layer: nn.Sequential, read: int, growth: int, width: int):
        super().__init__()
        self.layer = layer
        self.read, self.growth, self.width = read, growth, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.layer(x[:, : self.read])
        return F.pad(new, (0, 0, 0, 0, self.read, self.width - self.read - self.growth))

    def extra_repr(self) -> str:
        return f"reads {self.read}, writes [{self.read}, {self.read + self.growth}) of {self.width}"


class DenseLayer(ResidualBlock):
    """One dense layer as a `ResidualBlock`: y = s(x) + branch(s(x)), where the shortcut s is the identity, or, for
    the first layer of a block after the first, the transition (BN-ReLU-1x1 conv-avgpool) and the zero-padding to
    the block's width. Deleted (`forward_deleted`): s(x), i.e. concat(x, 0)."""

    concatenates = True  # read by resx paths: the layer's new features are concatenated, not added to its input

    def __init__(self, branch: DenseBranch, entry: nn.Module, *, in_channels: int, stride: int, stage: int):
        super().__init__(branch, entry, in_channels=in_channels, out_channels=branch.width, stride=stride,
                         post_activation=False, stage=stage)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        h = self.shortcut(x)
        return h + self.branch_output(h, keep)


def _with_dropout(layers: list[nn.Module], dropout: float) -> list[nn.Module]:
    return layers + [nn.Dropout(dropout)] if dropout > 0 else layers


def dense_function(channels: int, growth: int, bottleneck: bool, dropout: float) -> nn.Sequential:
    """H_l: BN-ReLU-3x3 conv(k), or with a bottleneck BN-ReLU-1x1 conv(4k)-BN-ReLU-3x3 conv(k) (DenseNet-B)."""
    layers: list[nn.Module] = [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    if bottleneck:
        layers = _with_dropout(layers + [conv1x1(channels, 4 * growth)], dropout)
        layers += [nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True)]
        channels = 4 * growth
    return nn.Sequential(*_with_dropout(layers + [conv3x3(channels, growth)], dropout))


def transition(in_channels: int, out_channels: int, width: int, dropout: float) -> nn.Sequential:
    """BN-ReLU-1x1 conv-[dropout]-2x2 average pooling, then zero channels up to the next block's `width`."""
    layers = _with_dropout([nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), conv1x1(in_channels, out_channels)],
                           dropout)
    return nn.Sequential(*layers, nn.AvgPool2d(2), PadShortcut(out_channels, width))


def densenet_layers(depth: int, bottleneck: bool) -> int:
    """n, the layers per dense block: L = 3n+4 (basic) or 6n+4 (bottleneck: two convs per layer)."""
    per_layer = 6 if bottleneck else 3
    if depth < per_layer + 4 or (depth - 4) % per_layer:
        first = [per_layer * i + 4 for i in (1, 2, 3)]
        raise ValueError(f"DenseNet{'-BC' if bottleneck else ''} depth {depth} is not {per_layer}n+4 "
                         f"(allowed: {', '.join(map(str, first))}, ...)")
    return (depth - 4) // per_layer


def cifar_densenet(
    depth: int = 40,
    *,
    bottleneck: bool = False,
    compression: float = 1.0,
    growth_rate: int = 12,
    dropout: float = 0.0,
    num_classes: int = 10,
    in_channels: int = 3,
    **_ignored,
) -> BlockNet:
    """DenseNet (bottleneck=False, compression=1) or DenseNet-BC (True, 0.5) of `depth` layers for CIFAR."""
    n = densenet_layers(depth, bottleneck)
    if growth_rate < 1:
        raise ValueError(f"growth_rate must be at least 1, got {growth_rate}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    channels = 2 * growth_rate if bottleneck else 16
    width = channels + n * growth_rate
    stem = nn.Sequential(conv3x3(in_channels, channels), PadShortcut(channels, width))
    layers: list[DenseLayer] = []
    for stage in range(3):
        if stage > 0:
            channels, previous = int(width * compression), width  # floor, as the authors' code
            width = channels + n * growth_rate
            entry: nn.Module = transition(previous, channels, width, dropout)
        else:
            previous, entry = width, nn.Identity()
        for i in range(n):
            branch = DenseBranch(dense_function(channels, growth_rate, bottleneck, dropout), channels, growth_rate, width)
            layers.append(DenseLayer(branch, entry if i == 0 else nn.Identity(), in_channels=previous if i == 0 else width,
                                     stride=2 if stage > 0 and i == 0 else 1, stage=stage))
            channels += growth_rate
    net = BlockNet(stem, layers, GlobalPoolClassifier(width, num_classes, preact=True))
    init_weights(net)
    return net
