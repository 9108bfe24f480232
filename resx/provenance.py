"""What a result needs to be trusted later: versions, device, git commit, time."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path

import resx


def git_commit(path: str | Path | None = None) -> str:
    """The commit of the resx checkout (with '+dirty' when it has changes), or 'unknown'.
    For resx's own checkout (no `path`) it is the commit when this module was first imported, i.e. the code this
    process runs: a grid that trains for hours keeps reporting that, even if the checkout moves on meanwhile."""
    if path is None:
        return _PROCESS_COMMIT
    return _read_commit(Path(path))


def _read_commit(where: Path) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_PROCESS_COMMIT = _read_commit(Path(resx.__file__).resolve().parent)


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else the machine type."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device=None) -> dict:
    import torch

    info = {
        "resx_version": resx.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "host": platform.node(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device is not None:
        info["device"] = str(device)
        info["device_name"] = device_name(device)
    return info
