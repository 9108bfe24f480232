"""Batch augmentation and normalisation on the device, one gather per batch.

He et al. 2015 §4.2 (after Lee et al. 2015): "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip". Each image of the batch gets its own crop offset and
flip; both are folded into one index so the whole batch is augmented by a single `gather`. Random numbers are
drawn on the device, so the step can be captured as a CUDA graph and replayed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """uint8 [B, C, H, W] -> uint8 [B, C, H, W]: zero-pad by `pad`, random crop, random horizontal flip."""
    b, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    pw = w + 2 * pad
    offset_y = torch.randint(0, 2 * pad + 1, (b, 1), device=device)
    offset_x = torch.randint(0, 2 * pad + 1, (b, 1), device=device)
    rows = offset_y + torch.arange(h, device=device)  # [B, H]
    cols = torch.arange(w, device=device).expand(b, w)  # [B, W]
    if flip:
        flipped = torch.rand((b, 1), device=device) < 0.5
        cols = torch.where(flipped, (w - 1) - cols, cols)
    cols = offset_x + cols
    index = (rows[:, :, None] * pw + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).reshape(b, c, h, w)


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
