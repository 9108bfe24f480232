"""Gradient gates: identity in the forward pass, a per-example mask on the gradient in the backward pass.

Veit et al. 2016 (§5, Fig. 6) measure the gradient carried by paths of length k: forward a batch through the
whole net, then in the backward pass let the gradient flow only through the residual branch of k chosen blocks
and only through the shortcut of the others. A gate on the input of each branch (mask m) and of each shortcut
(mask 1 - m) does exactly that, without touching the forward pass:

    y = post(branch(gate(x, m)) + shortcut(gate(x, 1 - m)))

The masks are per example ([B] per block, broadcast over the other dimensions): in eval mode an example's loss
depends only on its own input, so with a summed loss each example's input gradient is its own measurement,
and one backward pass measures B different (k, block subset) samples at once.

The gates read their masks when the backward pass runs, not when the forward pass runs, so one forward pass
(with `retain_graph=True`) serves many backward passes with fresh masks written in place into the same tensor.
"""

from __future__ import annotations

import torch

from resx.models.blocks import ResidualBlock
from resx.models.net import BlockNet


class _GradientGate(torch.autograd.Function):
    """Forward: x. Backward: grad * mask[index] (or * (1 - mask[index]) for the shortcut), per example."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, masks: torch.Tensor, index: int, complement: bool) -> torch.Tensor:
        # Kept as a plain reference, not with save_for_backward: the masks are meant to change in place between
        # backward passes over one retained graph (save_for_backward would reject the modified tensor).
        ctx.masks, ctx.index, ctx.complement = masks, index, complement
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        mask = ctx.masks[ctx.index]
        if ctx.complement:
            mask = 1.0 - mask
        mask = mask.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1)))
        return grad * mask, None, None, None


def gate(x: torch.Tensor, masks: torch.Tensor, index: int, complement: bool = False) -> torch.Tensor:
    """Identity on `x`; the gradient flowing back is multiplied by masks[index] per example (by 1 - that
    when `complement`). `masks` is a float tensor [n_blocks, B] on x's device."""
    return _GradientGate.apply(x, masks, index, complement)


def gated_block(block: ResidualBlock, x: torch.Tensor, masks: torch.Tensor, index: int) -> torch.Tensor:
    """One residual block with its branch gated by masks[index] and its shortcut by 1 - masks[index].

    The forward value equals `block(x)`. A block that changes shape keeps its downsampling shortcut (option A
    or B): "only through the shortcut" means through that map (Veit et al. 2016, §4 and §5).
    Post-activation blocks (original ResNet, ReLU after the addition): the gates sit before the addition,
    so the ReLU's backward applies its forward mask to whatever gradient flows, as Veit et al. did; the
    gradients of all 2^n paths still sum to the true gradient, but the ReLU mask depends on both branches
    in the forward pass, so a path's share is not independent of the others. Pre-activation blocks have
    nothing after the addition and make the split exact.
    """
    if block.shortcut is None:
        raise ValueError("a plain block has no shortcut to route the gradient through")
    out = block.branch_output(gate(x, masks, index)) + block.shortcut(gate(x, masks, index, complement=True))
    return block.finish(out)  # ReLU, BN-ReLU (block bn-after-add) or nothing: what follows the block's addition


def gated_blocks_forward(net: BlockNet, h: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Run `h` (the stem's output) through every block of `net` with gates; returns the last block's output.
    `masks` [n_blocks, B]: 1 where the example's gradient goes through the block's branch, 0 through its shortcut."""
    if masks.shape[0] != len(net.blocks):
        raise ValueError(f"masks has {masks.shape[0]} rows; the net has {len(net.blocks)} blocks")
    for i, block in enumerate(net.blocks):
        h = gated_block(block, h, masks, i)
    return h
