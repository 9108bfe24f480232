"""Choosing the device and the arithmetic precision."""

from __future__ import annotations

import torch

from resx.errors import ResxError


def resolve_device(name: str = "auto") -> torch.device:
    """auto: CUDA when available, else CPU. Asking for CUDA on a machine without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ResxError(f"--device {name} asked for, but this machine has no usable CUDA GPU; use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ResxError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        if device.index is not None:
            # One GPU per process: make it the current device, so that default streams, graph capture (its side
            # stream and capture stream are the current device's) and allocations all land on the one asked for.
            # (Plain "cuda" already is the current device; set_device refuses a device without an index.)
            torch.cuda.set_device(device)
        return device
    raise ResxError(f"unknown device {name!r}; allowed: auto, cpu, cuda")


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 autocast on CUDA GPUs that compute in bf16 natively (Ampere, compute capability 8.0, and later;
    weights and BN statistics stay fp32), fp32 elsewhere: older GPUs (T4, V100) only emulate bf16, slowly."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
            return "bf16"
        return "fp32"
    if precision not in ("fp32", "bf16"):
        raise ResxError(f"unknown precision {precision!r}; allowed: auto, fp32, bf16")
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast context (cache disabled: required inside CUDA graph capture)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)
