"""`BlockNet`: stem -> residual blocks in order -> head, the one structure every net in the zoo shares.

Lesion (Veit et al. 2016, §4) and path studies (§5) need to run a net with some blocks deleted, reordered,
or with their gradients rerouted, without knowing the net's class. Every registered model is a `BlockNet`, so
`net.blocks` lists its residual blocks in order and `forward_with` runs any lesioned variant.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from resx.models.blocks import ResidualBlock
from resx.models.shortcuts import GatedShortcut


@dataclass(frozen=True)
class BlockInfo:
    """What the studies need to know about one block."""

    index: int  # position in net.blocks, from 0
    stage: int  # group of blocks on maps of one size, from 0
    downsampling: bool  # changes the shape of its input (stride 2 or more channels)
    residual: bool  # has a shortcut
    in_channels: int
    out_channels: int


class BlockNet(nn.Module):
    """A net = `stem`, then `blocks` (each a `ResidualBlock`), then `head` (pooling and classifier)."""

    def __init__(self, stem: nn.Module, blocks: Sequence[ResidualBlock], head: nn.Module):
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        # Filled in by create_model: the registry name and options that rebuild this net.
        self.model_name: str = ""
        self.model_options: dict = {}

    # --- the plain forward pass --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """`keep` [n_blocks]: this mini-batch's stochastic-depth draws (1 keeps a block's branch, 0 drops it),
        made by the caller; read only by blocks with survival probability below 1, in training mode."""
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            h = block(h, keep[i]) if keep is not None and block.survival_prob < 1.0 else block(h)
        return self.head(h)

    def survival_probs(self) -> list[float]:
        """Each block's stochastic-depth survival probability (all 1.0 when it is off)."""
        return [block.survival_prob for block in self.blocks]

    # --- the uniform block interface -----------------------------------------------------------------------
    @property
    def residual(self) -> bool:
        """True when the blocks have shortcuts (a plain net has none)."""
        return any(b.residual for b in self.blocks)

    def block_info(self) -> list[BlockInfo]:
        return [
            BlockInfo(i, b.stage, b.downsampling, b.residual, b.in_channels, b.out_channels)
            for i, b in enumerate(self.blocks)
        ]

    def forward_with(
        self,
        x: torch.Tensor,
        *,
        order: Sequence[int] | None = None,
        deleted: Collection[int] = (),
    ) -> torch.Tensor:
        """Run the net with blocks deleted and/or reordered (Veit et al. 2016, §4.1 and §4.3).

        order:   the block indices in the order to run them (a permutation of a subset); default 0..n-1.
        deleted: block indices replaced by their shortcut (`ResidualBlock.forward_deleted`).
        A reorder must keep shapes consistent: swap only blocks of the same shape (see `swappable_pairs`).
        """
        n = len(self.blocks)
        order = range(n) if order is None else order
        bad = [i for i in list(order) + list(deleted) if not 0 <= i < n]
        if bad:
            raise IndexError(f"block index {bad[0]} out of range; this net has blocks 0..{n - 1}")
        deleted = set(deleted)
        h = self.stem(x)
        for i in order:
            block = self.blocks[i]
            h = block.forward_deleted(h) if i in deleted else block(h)
        return self.head(h)

    def set_stochastic_depth(self, final_survival_prob: float | None) -> None:
        """Stochastic depth (Huang et al. 2016, Eq. 4): p_l = 1 - (l / L)(1 - p_L), l = 1..L.
        None or 1.0 switches it off. Only residual blocks can be dropped (a dropped block is its shortcut)."""
        if final_survival_prob is None:
            final_survival_prob = 1.0
        if not 0.0 < final_survival_prob <= 1.0:
            raise ValueError(f"stochastic depth survival probability must be in (0, 1], got {final_survival_prob}")
        if final_survival_prob < 1.0 and not self.residual:
            raise ValueError("stochastic depth needs residual blocks; a plain net has no shortcut to fall back on")
        total = len(self.blocks)
        for l, block in enumerate(self.blocks, start=1):
            block.survival_prob = 1.0 - (l / total) * (1.0 - final_survival_prob)

    def zero_init_residual(self) -> None:
        """Start every residual branch at zero: the last BatchNorm of each branch gets weight 0, so each block is
        its shortcut and the net starts as a shallow one (Goyal et al. 2017, "Accurate, Large Minibatch SGD", §5.1;
        torchvision's zero_init_residual). Not in He et al. 2015's recipe; resx's demo uses it for its 50-layer
        residual MLP, which otherwise spends its first epochs near 50% training error. A plain net cannot take
        it: zeroing its branches would cut the signal."""
        if not self.residual:
            raise ValueError("zero_init_residual needs residual blocks; a plain net's branches are its only path")
        for block in self.blocks:
            norms = [m for m in block.branch.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
            if block.residual and norms and not norms[-1].weight.is_meta:
                nn.init.zeros_(norms[-1].weight)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(net: nn.Module) -> None:
    """He (Kaiming) initialisation (He et al. 2015, §3.4 citing He et al. ICCV 2015), BN to (1, 0)."""
    for m in net.modules():
        if getattr(getattr(m, "weight", None), "is_meta", False):
            continue  # built on the meta device to count parameters: nothing to initialise
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in net.modules():  # gated shortcuts (He et al. 2016, Table 1): b_g starts at its named value, not 0
        if isinstance(m, GatedShortcut):
            m.reset_gate_bias()


class GlobalPoolClassifier(nn.Sequential):
    """Head: [an activation], global average pooling, a fully connected layer. `activation`: None, 'relu' or 'bn-relu'
    (pre-activation nets; `preact=True` is 'bn-relu')."""

    def __init__(self, channels: int, num_classes: int, preact: bool = False, activation: str | None = None):
        layers: list[nn.Module] = head_activation("bn-relu" if preact else activation, channels)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
        super().__init__(*layers)


def head_activation(activation: str | None, channels: int, *, vector: bool = False) -> list[nn.Module]:
    """The layers before a pre-activation net's classifier. He et al. 2016 (§4.1 footnote): the last block's sum is
    not activated, so an extra activation follows it: BN-ReLU (full pre-activation), a ReLU alone (ReLU-only)."""
    if activation == "bn-relu":
        return [nn.BatchNorm1d(channels) if vector else nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    if activation == "relu":
        return [nn.ReLU(inplace=True)]
    return []
