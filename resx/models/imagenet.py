"""ImageNet-style ResNet-18/34 and their plain twins (He et al. 2015, Table 1; torchvision's structure).

Four stages of basic blocks with 64, 128, 256, 512 filters; option B (projection) shortcuts where the shape
changes, as torchvision. For inputs of 64 pixels or less (`input_size`), the 7x7/2 conv and max-pool stem is
replaced by a 3x3/1 conv so that small images are not reduced to nothing.
"""

from __future__ import annotations

from torch import nn

from resx.models.blocks import basic_branch, build_stages, conv3x3
from resx.models.net import BlockNet, GlobalPoolClassifier, init_weights

STAGE_WIDTHS = (64, 128, 256, 512)
LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def imagenet_resnet(
    depth: int,
    *,
    residual: bool = True,
    shortcut: str = "B",
    num_classes: int = 1000,
    in_channels: int = 3,
    input_size: int = 224,
    stochastic_depth: float | None = None,
    **_ignored,
) -> BlockNet:
    if depth not in LAYOUTS:
        raise ValueError(f"ImageNet-style depth {depth} not available; allowed: {sorted(LAYOUTS)}")
    if input_size <= 64:
        stem = nn.Sequential(conv3x3(in_channels, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
    else:
        stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    blocks, channels = build_stages(basic_branch, STAGE_WIDTHS, LAYOUTS[depth], 64,
                                    shortcut=shortcut if residual else None, post_activation=True)
    net = BlockNet(stem, blocks, GlobalPoolClassifier(channels, num_classes))
    init_weights(net)
    net.set_stochastic_depth(stochastic_depth)
    return net
