"""Batch augmentation and normalisation on the device, one gather per batch.

He et al. 2015 §4.2 (after Lee et al. 2015): "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip". Each image of the batch gets its own crop offset and
flip; both are folded into one index so the whole batch is augmented by a single `gather`. The random offsets
and flips are drawn apart from the gather (`draw_crop_flip`), a whole epoch at a time, from each run's own
generator: a captured CUDA graph then reads them like any other input and holds no random-number state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_crop_flip(
    count: int,
    batch: int,
    *,
    pad: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of `random_crop_flip` for `count` batches at once: crop offsets int64 [count, batch, 2]
    (y, x in 0..2*pad) and flips bool [count, batch]. The training step draws a whole epoch's worth up front
    from its run's own generator, so no random number is drawn inside a captured CUDA graph (see engine/step.py)."""
    offsets = torch.randint(0, 2 * pad + 1, (count, batch, 2), generator=generator, device=device)
    if flip:
        flips = torch.rand((count, batch), generator=generator, device=device) < 0.5
    else:
        flips = torch.zeros((count, batch), dtype=torch.bool, device=device)
    return offsets, flips


def crop_flip(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = 4, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """uint8 [B, C, H, W] -> uint8 [B, C, H, W]: pad by `pad`, crop at `offsets` [B, 2] (y, x), then flip
    horizontally where `flips` [B] is true. One gather for the whole batch.
    `fill` (uint8 [C]): the padding's colour; zeros (black) when None. The training step pads with the channel
    means, which normalise to 0, as in He et al.'s recipe, where images had their mean subtracted before padding."""
    b, c, h, w = images.shape
    device = images.device
    if fill is None:
        padded = F.pad(images, (pad, pad, pad, pad))
    else:
        padded = fill.view(1, c, 1, 1).expand(b, c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, :, pad : pad + h, pad : pad + w] = images
    pw = w + 2 * pad
    rows = offsets[:, 0:1] + torch.arange(h, device=device)  # [B, H]
    cols = torch.arange(w, device=device).expand(b, w)  # [B, W]
    cols = torch.where(flips.view(b, 1), (w - 1) - cols, cols)
    cols = offsets[:, 1:2] + cols
    index = (rows[:, :, None] * pw + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).reshape(b, c, h, w)


def random_crop_flip(
    images: torch.Tensor, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 [B, C, H, W] -> uint8 [B, C, H, W]: zero-pad by `pad`, random crop, random horizontal flip."""
    offsets, flips = draw_crop_flip(1, images.shape[0], pad=pad, flip=flip, generator=generator, device=images.device)
    return crop_flip(images, offsets[0], flips[0], pad=pad)


def normalize(
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32, scaled to [0, 1] and standardised per channel.
    `mean` and `std` are float tensors of shape [1, C, 1, 1] on the same device."""
    x = images.to(torch.float32).div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
