"""Choosing the device, the arithmetic precision, the memory layout and the CPU threads.

bf16 autocast pays only where the hardware computes bf16 natively: CUDA GPUs of compute capability 8.0 and later,
and CPUs with AVX-512 BF16 or AMX (on a 2-core AMD Zen 5, bf16 autocast + channels_last trains ResNet-20 about
2x faster than eager fp32). Elsewhere bf16 is emulated and slower than fp32, so `auto` picks fp32 there.
Weights, BatchNorm statistics, the loss and the optimizer stay fp32 in every case (autocast casts per op).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from resx.errors import ResxError

PRECISIONS = ("auto", "fp32", "bf16")
# /proc/cpuinfo flags of CPUs whose bf16 dot products are instructions, not emulation.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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


def cpu_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[bool, str]:
    """(native, why): whether this CPU computes bf16 natively, read from the kernel's CPU flags."""
    try:
        flags = set()
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        return False, "CPU flags unreadable (no /proc/cpuinfo): bf16 support unknown"
    found = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if found:
        return True, f"CPU computes bf16 natively ({', '.join(found)})"
    return False, "CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag): bf16 would be emulated"


def precision_choice(precision: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) for `auto`, `fp32` or `bf16` on this device; `why` goes into run_info.json."""
    if precision not in PRECISIONS:
        raise ResxError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision, "asked for"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 0):
            return "bf16", f"auto: GPU of compute capability {major}.{minor} computes bf16 natively"
        return "fp32", f"auto: GPU of compute capability {major}.{minor} only emulates bf16 (8.0 or later needed)"
    if device.type == "cpu":
        native, why = cpu_native_bf16()
        return ("bf16" if native else "fp32"), f"auto: {why}"
    return "fp32", f"auto: no bf16 policy for device type {device.type}"


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision `precision_choice` picks, without the reason."""
    return precision_choice(precision, device)[0]


def autocast(device: torch.device, precision: str):
    """bf16 autocast context (cache disabled: required inside CUDA graph capture)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


def wants_channels_last(net: torch.nn.Module) -> bool:
    """channels_last (NHWC) for nets with convolutions, on every device: cuDNN and oneDNN both run their fastest
    convolutions in it (on the 2-core CPU, ResNet-56's fp32 step is 1.7x faster than in NCHW). MLPs gain nothing."""
    return any(isinstance(m, torch.nn.Conv2d) for m in net.modules())


def set_cpu_threads(threads: int | None) -> int:
    """Use `threads` intra-op threads on the CPU (None: torch's default, one per core); returns the number in use."""
    if threads is not None:
        if threads < 1:
            raise ResxError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, as taskset or a SLURM allocation sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
