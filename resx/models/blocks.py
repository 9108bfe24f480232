"""Building blocks shared by every net in the zoo.

One block class, `ResidualBlock`, whose shortcut is a parameter: a plain net is the same net with the
shortcut switched off (He et al. 2015, §4.2: "plain/residual nets ... have the same number of parameters"),
so plain vs residual is one flag and the parameter counts match by construction.

    out = post(branch(x) + shortcut(x))          post = ReLU (original block) or identity (pre-activation)
    out = post(branch(x))                        plain block (shortcut=None)

The shortcut variants of He et al. 2016 (Table 1) are modules of resx/models/shortcuts.py; where BN and ReLU sit
(Table 2, Fig. 4: `block` = original, bn-after-add, relu-before-add, relu-only-preact, full-preact) is `BLOCK_LAYOUTS`
below: the branch's layers, what follows the addition, and what the stem and head around the blocks need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from resx.models.shortcuts import PadShortcut, make_shortcut, projection_shortcut  # noqa: F401 (re-exported)
from resx.models.variants import parse_block


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ResidualBlock(nn.Module):
    """One block of any net in the zoo, with the uniform interface that lesion and path studies use.

    Attributes the studies read:
      branch          the residual function f (convs, BNs, ReLUs)
      shortcut        nn.Module, or None for a plain block (resx/models/shortcuts.py: identity, option A/B, or a
                      variant of He et al. 2016, Table 1; one that also scales the branch has `branch_scale(x)`)
      post_activation True when something follows the addition: a ReLU (original ResNet), or BN-ReLU (`post`, block
                      bn-after-add); False when nothing does (pre-activation, ReLU before the addition)
      post            the module applied after the addition where it is more than a ReLU (BN-ReLU), else None
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
        post: nn.Module | None = None,
    ):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.post_activation = post_activation or post is not None
        self.post = post  # a module only where needed (bn-after-add): today's nets keep their state_dict keys
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
        """The map a deleted block is replaced by: its shortcut (identity, downsampling shortcut or a variant's
        whole shortcut term: L*x for scale-L, (1-g(x))*x for a gate, x for dropout at test time)."""
        return self.shortcut if self.shortcut is not None else self.lesion_shortcut

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        """What follows the addition: `post` (BN-ReLU), else a ReLU for post-activation blocks, else nothing."""
        if self.post is not None:
            return self.post(out)
        return F.relu(out) if self.post_activation else out

    _finish = finish

    def branch_output(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """f(x), times the shortcut's branch scale where it has one (frozen gate L, exclusive gate g(x); He et al.
        2016 Table 1), with stochastic depth applied (Huang et al. 2016, Eq. 2 and §3 'test time').
        `keep` (a 0-dim tensor, 1 or 0): this mini-batch's draw, made by the caller; the training step draws a
        whole epoch's in advance from its own generator (engine/step.py). Without it, the block draws itself."""
        out = self.branch(x)
        branch_scale = getattr(self.shortcut, "branch_scale", None)
        if branch_scale is not None:
            scale = branch_scale(x)
            if scale is not None:
                out = out * scale
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
        return self.finish(out)

    def forward_deleted(self, x: torch.Tensor) -> torch.Tensor:
        """The block deleted (Veit et al. 2016, §4): y = post(shortcut(x)), the branch removed; for bn-after-add the
        BN-ReLU after the addition still applies, to the shortcut alone."""
        return self.finish(self.skip_path()(x))

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
    post: Callable[[int], nn.Module | None] | None = None,
) -> tuple[list[ResidualBlock], int]:
    """The blocks of every stage in order: `branch(in, out, stride)` makes each residual function, `post(out)` what
    follows each addition if more than a ReLU; the first block of every stage after the first has stride 2 (He et
    al. 2015, §3.3 and §4.2). Returns (blocks, channels out)."""
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
                    post=post(width) if post is not None else None,
                )
            )
            channels = width
    return blocks, channels


# --- where BN and ReLU sit (He et al. 2016, Table 2 and Fig. 4) ------------------------------------------------------


@dataclass(frozen=True)
class BlockLayout:
    """One activation placement. recipe: the branch's layers in order: W1 the first weighted layer (in -> out, with
    the block's stride), W2 the second (out -> out), N a BN of `out` channels, Nin a BN of `in` channels, R a ReLU,
    R0 a ReLU that must not work in place (it reads the block's input, which the shortcut reads too).
    post: after the addition: 'relu', 'bn-relu' or None. stem_activation: the stem ends with BN-ReLU. head: the
    activation before pooling and the classifier: None, 'relu' or 'bn-relu'."""

    recipe: tuple[str, ...]
    post: str | None
    stem_activation: bool
    head: str | None


BLOCK_LAYOUTS = {
    # (a) He et al. 2015, Fig. 2: the ReLU after the addition is the block's.
    "original": BlockLayout(("W1", "N", "R", "W2", "N"), "relu", True, None),
    # (b) BN after the addition: the BN alters the signal passing through the shortcut (the paper's reading of its
    # 8.17%): the shortcut is no longer an identity. Same parameters as (a): the branch's last BN moves out.
    "bn-after-add": BlockLayout(("W1", "N", "R", "W2"), "bn-relu", True, None),
    # (c) ReLU before the addition: the branch's output is non-negative, so the forward signal can only grow
    # (7.84%). Nothing after the addition; stem and head as (a).
    "relu-before-add": BlockLayout(("W1", "N", "R", "W2", "N", "R"), None, True, None),
    # (d) ReLU-only pre-activation (6.71%). Stem as (a) (its BN-ReLU is the "activation right after conv1" that the
    # paper adopts for the first unit, §4.1); the last block's sum gets the extra activation the paper adds after the
    # last unit, here a ReLU alone. Same parameters as (a).
    "relu-only-preact": BlockLayout(("R0", "W1", "N", "R", "W2", "N"), None, True, "relu"),
    # (e) full pre-activation (6.37%; He et al. 2016 Fig. 1b): both the forward and backward paths between any two
    # blocks are identities (eqs. 4-5). Stem: conv only; head: BN-ReLU before pooling = preresnetN.
    "full-preact": BlockLayout(("Nin", "R0", "W1", "N", "R", "W2"), None, False, "bn-relu"),
}


def block_layout(block: str | None) -> BlockLayout:
    return BLOCK_LAYOUTS[parse_block(block or "original")]


def layout_branch(recipe: tuple[str, ...], in_channels: int, out_channels: int, stride: int, *,
                  vector: bool = False) -> nn.Sequential:
    """The branch of `recipe` (BlockLayout): 3x3 convs and BatchNorm2d, or Linear and BatchNorm1d for vectors."""
    norm = nn.BatchNorm1d if vector else nn.BatchNorm2d
    layers: list[nn.Module] = []
    for token in recipe:
        if token == "W1":
            layers.append(nn.Linear(in_channels, out_channels, bias=False) if vector
                          else conv3x3(in_channels, out_channels, stride))
        elif token == "W2":
            layers.append(nn.Linear(out_channels, out_channels, bias=False) if vector
                          else conv3x3(out_channels, out_channels))
        elif token in ("N", "Nin"):
            layers.append(norm(in_channels if token == "Nin" else out_channels))
        else:
            layers.append(nn.ReLU(inplace=token == "R"))
    return nn.Sequential(*layers)


def layout_post(layout: BlockLayout, *, vector: bool = False) -> Callable[[int], nn.Module | None] | None:
    """`post` for build_stages: BN-ReLU after the addition for bn-after-add, else None (a ReLU is post_activation)."""
    if layout.post != "bn-relu":
        return None
    norm = nn.BatchNorm1d if vector else nn.BatchNorm2d
    return lambda channels: nn.Sequential(norm(channels), nn.ReLU(inplace=True))


# --- branches -----------------------------------------------------------------------------------------


def basic_branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """conv3x3-BN-ReLU-conv3x3-BN (He et al. 2015, Fig. 2); the ReLU after the addition is the block's."""
    return layout_branch(BLOCK_LAYOUTS["original"].recipe, in_channels, out_channels, stride)


def preact_basic_branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 (He et al. 2016, Fig. 1b / 4e): nothing after the addition."""
    return layout_branch(BLOCK_LAYOUTS["full-preact"].recipe, in_channels, out_channels, stride)


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
    return layout_branch(BLOCK_LAYOUTS["original"].recipe, width, width, 1, vector=True)
