"""The arithmetic beside `resx bench`'s images/s: what one image costs (forward multiply-accumulates; a training
step counts 3 x 2 x them: forward, and a backward of twice the forward's work, 2 FLOP per multiply-accumulate) and
what the device can do (the GFLOP/s of a large matmul in fp32 and in bf16, its measured peak).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from resx.data import ImageData
from resx.models import create_model
from resx.studies.bench.timing import sync


def forward_macs(model: str, data: ImageData) -> int:
    """Multiply-accumulates of one image's forward pass (convolutions and linear layers; what papers count)."""
    net = create_model(model, **data.model_options).eval()
    total = [0]

    def count(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros((1, *data.train_images.shape[1:])))
    for h in hooks:
        h.remove()
    return total[0]


def training_gflop_per_image(macs: int) -> float:
    """GFLOP of one image's training step: forward + backward (2x), 2 FLOP per multiply-accumulate."""
    return 6 * macs / 1e9


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0, n: int = 2048) -> float:
    """Measured peak: GFLOP/s of repeated n x n matmuls in `dtype` on every thread of the device."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        torch.mm(a, b)
    sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        steps += 1
        sync(device)
    return 2 * n**3 * steps / (time.perf_counter() - start) / 1e9
