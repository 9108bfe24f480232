"""How much memory this machine has for resx, and the one refusal of a size that cannot fit it.

Every dataset is sized before it is decoded (resx.data.load_dataset; a copy onto a GPU in ImageData.to), every net
before it is built (resx.models.registry: its weights), and every training run before its net is built
(resx.engine.run: weights, gradients, momentum and a batch's activations). Each calls `check_fits`, which refuses in
one line what would take more than `USABLE_SHARE` of the memory available now: the size asked for, its estimate,
what the machine has and what to change. A size that cannot fit thus stops in a second, not after minutes of
allocating, or with the kernel's out-of-memory killer.

Available memory: on the CPU, Linux's MemAvailable (/proc/meminfo; what can be allocated without swapping), lowered to
what a cgroup (a container, a SLURM job) still allows; elsewhere the free physical pages; on CUDA,
torch.cuda.mem_get_info. Unknown (None) means no check. No torch at import: CUDA is asked only for a CUDA device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from resx.errors import ResxError

# Estimates are rough (allocator rounding, the framework's own buffers, the rest of the process), and a machine
# that is filled to the last byte swaps or kills: refuse above this share of what is available.
USABLE_SHARE = 0.8

UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")

CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def format_bytes(size: float) -> str:
    """Bytes in decimal units, three significant digits: 512 B, 150 MB, 1.2 TB (and 30,000 EB beyond)."""
    size = float(size)
    for unit in UNITS:
        if abs(size) < 1000 or unit == UNITS[-1]:
            break
        size /= 1000
    if unit == "B":
        return f"{size:.0f} B"
    return f"{size:,.0f} {unit}" if abs(size) >= 1000 else f"{size:.3g} {unit}"


def _device_type(device: Any) -> str:
    if device is None:
        return "cpu"
    return str(getattr(device, "type", None) or str(device).split(":")[0])


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:  # not Linux (or an old kernel): the free physical pages, which leaves out the page cache
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_folders() -> list[Path]:
    """The memory cgroup folders of this process (v2, then v1), from /proc/self/cgroup, and their mount roots (a
    container sees its own cgroup there)."""
    folders = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            folders.append(CGROUP_V2 / path.lstrip("/"))
        elif "memory" in controllers.split(","):
            folders.append(CGROUP_V1 / path.lstrip("/"))
    return folders + [CGROUP_V2, CGROUP_V1]


def _cgroup_left() -> int | None:
    """What this process's cgroup still allows (limit - usage, the reclaimable page cache counted as free), where it
    has a limit: a container or a SLURM job sees the host's MemAvailable in /proc/meminfo, not its own limit."""
    left = []
    for folder in dict.fromkeys(_cgroup_folders()):
        for limit, usage in (("memory.max", "memory.current"), ("memory.limit_in_bytes", "memory.usage_in_bytes")):
            cap, used = _read_int(folder / limit), _read_int(folder / usage)
            if cap is None or used is None or cap >= 1 << 60:  # v1 writes a huge number for no limit, v2 "max"
                continue
            left.append(max(0, cap - used + _inactive_file(folder)))
    return min(left) if left else None


def _inactive_file(folder: Path) -> int:
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key in ("inactive_file", "total_inactive_file"):
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def available_bytes(device: Any = None) -> int | None:
    """Memory that `device` (None or 'cpu': this machine's RAM; a CUDA device: its free GPU memory) can still give,
    in bytes; None when unknown."""
    if _device_type(device) == "cuda":
        import torch

        try:
            free, _total = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError):  # no driver, or CUDA not built in: nothing to check against
            return None
        return int(free)
    sizes = [s for s in (_meminfo_available(), _cgroup_left()) if s is not None]
    return min(sizes) if sizes else None


def check_fits(what: str, needed: float, fix: str, device: Any = None) -> None:
    """Refuse (ResxError, one line) `what` when its estimated `needed` bytes exceed USABLE_SHARE of what `device`
    has available: '<what> needs about 1.2 TB of memory; this machine has 19.3 GB available (resx uses at most 80%
    of it); <fix>'. `what` names the request and its size; `fix` says what to change."""
    have = available_bytes(device)
    if have is None or needed <= USABLE_SHARE * have:
        return
    kind = _device_type(device)
    where = "GPU memory" if kind == "cuda" else "memory"
    holder = f"{device} has" if kind == "cuda" else "this machine has"
    raise ResxError(f"{what} needs about {format_bytes(needed)} of {where}; {holder} {format_bytes(have)} available "
                    f"(resx uses at most {USABLE_SHARE:.0%} of it); {fix}")
