"""The shortcut h(x) of a block: option A and B of He et al. 2015 and the variants of He et al. 2016, Table 1 / Fig. 2.

Every shortcut is a module mapping the block's input x to the shape of its output. A variant that also scales the
residual branch (frozen gating: L; exclusive gating: g(x)) says so with `branch_scale(x)`, which the block multiplies
the branch by; the shortcut module's own output is the whole shortcut term, so that a block with its branch removed
(a lesion, Veit et al. 2016) is post(shortcut(x)) for every variant.
Names are parsed in resx/models/variants.py (the one parser); `make_shortcut` builds what it returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resx.models.variants import ShortcutVariant, parse_shortcut


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


def projection_shortcut(in_channels: int, out_channels: int, stride: int = 1, *, vector: bool = False) -> nn.Sequential:
    """Option B (He et al. 2015, §3.3): a 1x1 conv + BN projection (Linear + BN for vectors)."""
    if vector:
        return nn.Sequential(nn.Linear(in_channels, out_channels, bias=False), nn.BatchNorm1d(out_channels))
    conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


class ScaledShortcut(nn.Module):
    """h(x) = scale * x (He et al. 2016, Table 1 "constant scaling", Fig. 2b): by eq. (4)-(5) the signal from block l to
    block L is then multiplied by scale^(L-l), which vanishes for scale < 1 (scale 0: a plain net). Frozen gating
    (Table 1 "exclusive gating" with a constant gate, 1-L on the shortcut and L on the branch) sets `branch`."""

    def __init__(self, base: nn.Module, scale: float, branch: float | None = None):
        super().__init__()
        self.base, self.scale, self.branch = base, float(scale), branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) * self.scale

    def branch_scale(self, x: torch.Tensor) -> float | None:
        return self.branch

    def extra_repr(self) -> str:
        return f"scale={self.scale}" + (f", branch={self.branch}" if self.branch is not None else "")


class GatedShortcut(nn.Module):
    """(1 - g(x)) * x with g(x) = sigmoid(W_g x + b_g), W_g a 1x1 conv (a Linear for vectors) with the block's stride
    from its input to its output channels (He et al. 2016, Fig. 2c/2d). `exclusive`: the branch is multiplied by g(x)
    (exclusive gating, Highway-network style); else only the shortcut is gated. The bias starts at `bias`: a very
    negative b_g keeps the gate near 0 at first, so the shortcut starts close to the identity (Table 1: -6 is best)."""

    def __init__(self, base: nn.Module, gate: nn.Module, *, bias: float, exclusive: bool):
        super().__init__()
        self.base, self.gate, self.bias_init, self.exclusive = base, gate, float(bias), exclusive

    def reset_gate_bias(self) -> None:
        """Set b_g to its initial value; init_weights (which zeroes every bias) calls it last."""
        if not self.gate.bias.is_meta:
            with torch.no_grad():
                self.gate.bias.fill_(self.bias_init)

    def gate_value(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.gate_value(x)) * self.base(x)

    def branch_scale(self, x: torch.Tensor) -> torch.Tensor | None:
        return self.gate_value(x) if self.exclusive else None

    def extra_repr(self) -> str:
        return f"{'exclusive' if self.exclusive else 'shortcut-only'}, bias_init={self.bias_init}"


class DropoutShortcut(nn.Module):
    """Dropout on the shortcut's output (He et al. 2016, Table 1 "dropout shortcut", Fig. 2f): in training each unit of
    h(x) is kept with probability 1-P. torch's (inverted) dropout, as Torch7's nn.Dropout does by default: kept
    units are scaled by 1/(1-P) in training, and at test time the shortcut is the identity. The paper (§3.1) reads
    the random mask as a scale on the shortcut (expectation 1-P before the rescaling); either way a unit's path
    through L shortcuts survives a step with probability (1-P)^L, which impedes propagation.
    Its masks come from torch's global generator (seeded with the run's seed before the net is built), not from the
    training step's own generator as the stochastic-depth draws do: a run is repeatable from its seed, but a resumed
    run does not redraw the masks an uninterrupted one would have."""

    def __init__(self, base: nn.Module, p: float):
        super().__init__()
        self.base, self.dropout = base, nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.base(x))


def _gate(in_channels: int, out_channels: int, stride: int, vector: bool) -> nn.Module:
    if vector:
        return nn.Linear(in_channels, out_channels, bias=True)
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=True)


def make_shortcut(kind: str | ShortcutVariant | None, in_channels: int, out_channels: int, stride: int, *,
                  vector: bool = False) -> nn.Module | None:
    """The shortcut of one block: None for a plain block (kind None). `kind`: any `shortcut` value that
    resx/models/variants.py parses (A, B, identity, scale-L, frozen-gate-L, exclusive-gate[-bN], shortcut-gate[-bN],
    conv1x1, dropout-P). `vector`: the block works on vectors (the MLPs): Linear and BatchNorm1d, no stride."""
    if kind is None:
        return None
    variant = kind if isinstance(kind, ShortcutVariant) else parse_shortcut(kind)
    if variant.kind == "conv1x1":  # a projection on every block (Table 1: 12.22%, worse than the identity's 6.61%)
        return projection_shortcut(in_channels, out_channels, stride, vector=vector)
    same_shape = stride == 1 and in_channels == out_channels
    if same_shape:
        base: nn.Module = nn.Identity()
    elif vector:
        raise ValueError(f"a vector block's shortcut cannot change its width ({in_channels} -> {out_channels})")
    elif variant.base == "B":
        base = projection_shortcut(in_channels, out_channels, stride)
    else:
        base = PadShortcut(in_channels, out_channels, stride)
    if variant.kind in ("A", "B"):
        return base
    if variant.kind == "scale":
        return ScaledShortcut(base, variant.value)
    if variant.kind == "frozen-gate":
        return ScaledShortcut(base, 1.0 - variant.value, branch=variant.value)
    if variant.kind == "dropout":
        return DropoutShortcut(base, variant.value)
    return GatedShortcut(base, _gate(in_channels, out_channels, stride, vector), bias=variant.value,
                         exclusive=variant.kind == "exclusive-gate")
