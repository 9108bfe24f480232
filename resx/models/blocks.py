"""Building blocks shared by every net in the zoo.

One block class, `ResidualBlock`, whose shortcut is a parameter: a plain net is the same net with the
shortcut switched off (He et al. 2015, §4.2: "plain/residual nets ... have the same number of parameters"),
so plain vs residual is one flag and the parameter counts match by construction.

    out = post(branch(x) + shortcut(x))          post = ReLU (original block) or identity (pre-activation)
    out = post(branch(x))                        plain block (shortcut=None)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option A (He et al. 2015, §3.3): identity; where the shape changes, subsample by `stride` and
    zero-pad the new channels. It has no parameters, so plain and residual twins stay equal in size."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, stride={self.stride}"


def projection_shortcut(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Option B (He et al. 2015, §3.3): a 1x1 conv + BN projection where the shape changes."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def make_shortcut(kind: str | None, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The shortcut of one block: None for a plain block; identity where the shape is kept; option A or B
    where it changes. `kind` is 'A', 'B' or None."""
    if kind is None:
        return None
    if kind not in ("A", "B"):
        raise ValueError(f"unknown shortcut option {kind!r}; allowed: 'A' (identity + zero-pad), 'B' (projection), None (plain)")
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(in_channels, out_channels, stride)
    return projection_shortcut(in_channels, out_channels, stride)


class ResidualBlock(nn.Module):
    """One block of any net in the zoo, with the uniform interface that lesion and path studies use.

    Attributes the studies read:
      branch          the residual function f (convs, BNs, ReLUs)
      shortcut        nn.Module, or None for a plain block
      post_activation True when a ReLU follows the addition (original ResNet); False for pre-activation
      downsampling    True when the block changes the shape of its input (stride or channels)
      stage           index of the stage (group of blocks on maps of one size), from 0
      survival_prob   stochastic depth (Huang et al. 2016): probability that the branch is kept in training
    """

    def __init__(
        self,
        branch: nn.Module,
        shortcut: nn.Module | None,
        *,
        in_channels: int,
        out_channels: int,
        stride: int,
        post_activation: bool,
        stage: int,
    ):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.post_activation = post_activation
        self.stage = stage
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.downsampling = stride != 1 or in_channels != out_channels
        self.survival_prob = 1.0
        # What stands in for the block when it is deleted from a plain net (Veit et al. 2016, §4.1: a plain
        # layer is replaced by the identity); a parameter-free option A map where the shape changes.
        self.lesion_shortcut = (
            PadShortcut(in_channels, out_channels, stride) if shortcut is None and self.downsampling else nn.Identity()
        )

    @property
    def residual(self) -> bool:
        return self.shortcut is not None

    def skip_path(self) -> nn.Module:
        """The map a deleted block is replaced by: its shortcut (identity or downsampling shortcut)."""
        return self.shortcut if self.shortcut is not None else self.lesion_shortcut

    def _finish(self, out: torch.Tensor) -> torch.Tensor:
        return F.relu(out) if self.post_activation else out

    def branch_output(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """f(x), with stochastic depth applied (Huang et al. 2016, Eq. 2 and §3 'test time').
        `keep` (a 0-dim tensor, 1 or 0): this mini-batch's draw, made by the caller; the training step draws a
        whole epoch's in advance from its own generator (engine/step.py). Without it, the block draws itself."""
        out = self.branch(x)
        if self.survival_prob < 1.0:
            if self.training:
                if keep is None:  # one Bernoulli draw per mini-batch
                    keep = torch.rand((), device=out.device) < self.survival_prob
                out = out * keep.to(out.dtype)
            else:
                out = out * self.survival_prob
        return out

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        out = self.branch_output(x, keep)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self._finish(out)

    def forward_deleted(self, x: torch.Tensor) -> torch.Tensor:
        """The block deleted (Veit et al. 2016, §4): y = post(shortcut(x)), the branch removed."""
        return self._finish(self.skip_path()(x))

    def extra_repr(self) -> str:
        kind = "residual" if self.residual else "plain"
        act = "post-activation" if self.post_activation else "pre-activation"
        return f"{kind}, {act}, stage={self.stage}, downsampling={self.downsampling}"


def build_stages(
    branch,
    stage_widths,
    blocks_per_stage,
    in_channels: int,
    *,
    shortcut: str | None,
    post_activation: bool,
) -> tuple[list[ResidualBlock], int]:
    """The blocks of every stage in order: `branch(in, out, stride)` makes each residual function; the first block
    of every stage after the first has stride 2 (He et al. 2015, §3.3 and §4.2). Returns (blocks, channels out)."""
    blocks: list[ResidualBlock] = []
    channels = in_channels
    for stage, (width, count) in enumerate(zip(stage_widths, blocks_per_stage)):
        for i in range(count):
            stride = 2 if (stage > 0 and i == 0) else 1
            blocks.append(
                ResidualBlock(
                    branch(channels, width, stride),
                    make_shortcut(shortcut, channels, width, stride),
                    in_channels=channels,
                    out_channels=width,
                    stride=stride,
                    post_activation=post_activation,
                    stage=stage,
                )
            )
            channels = width
    return blocks, channels


# --- branches -----------------------------------------------------------------------------------------


def basic_branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """conv3x3-BN-ReLU-conv3x3-BN (He et al. 2015, Fig. 2); the ReLU after the addition is the block's."""
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        conv3x3(out_channels, out_channels),
        nn.BatchNorm2d(out_channels),
    )


def preact_basic_branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 (He et al. 2016, Fig. 1b / 4e): nothing after the addition."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        conv3x3(in_channels, out_channels, stride),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        conv3x3(out_channels, out_channels),
    )


def preact_bottleneck_branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """BN-ReLU-1x1-BN-ReLU-3x3-BN-ReLU-1x1 with a 4x expansion (He et al. 2016, ResNet-164/1001)."""
    mid = out_channels // 4
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        conv1x1(in_channels, mid),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        conv3x3(mid, mid, stride),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        conv1x1(mid, out_channels),
    )


def mlp_branch(width: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear-BN: z[l+2] of He et al. 2015's block (Fig. 2) written for vectors: a[l+2] = relu(z[l+2] + a[l])."""
    return nn.Sequential(
        nn.Linear(width, width, bias=False),
        nn.BatchNorm1d(width),
        nn.ReLU(inplace=True),
        nn.Linear(width, width, bias=False),
        nn.BatchNorm1d(width),
    )
