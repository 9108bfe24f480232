"""What a result needs to be trusted later: versions, device, precision, threads, resx's own commit, time.

`provenance(...)` is the one block every record carries: run_info.json (and each entry of its `history`), every
study's info file, reproduce.json and bench_info.json. It never names a commit that is not resx's own: resx
records a git commit only when it runs from its own checkout (an editable install or `python -m resx` in the
repository), or when pip recorded one for a direct-URL install (`pip install git+https://...@commit`). Installed
from a wheel into a `.venv` inside some other repository, `git rev-parse` would answer with that repository's
commit, so resx does not ask it there.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import resx

# Why a CUDA rerun may differ in the last bits: recorded with every CUDA result (torch.backends.cudnn.benchmark
# picks the fastest convolution algorithm by timing, and the fastest may change between runs).
CUDNN_BENCHMARK_NOTE = ("cudnn.benchmark is on: cuDNN picks convolution algorithms by timing them, so CUDA reruns "
                        "of the same seed agree statistically, not bit for bit")


def _git(where: Path, *args: str) -> str | None:
    import os

    # GIT_DIR, GIT_WORK_TREE and the like (exported by git hooks, for one) would point git at another repository
    # than the one around `where`: run it without them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=5, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def own_checkout(package_dir: Path) -> Path | None:
    """The root of resx's own git checkout when `package_dir` (the folder of resx/__init__.py) lies in one: the
    repository's top level must be the package folder's parent and hold resx's pyproject.toml. Anything else (a
    wheel installed into a .venv inside another repository) is not resx's checkout."""
    root = package_dir.resolve().parent
    pyproject = root / "pyproject.toml"
    try:
        if 'name = "resx"' not in pyproject.read_text(encoding="utf-8"):
            return None
    except OSError:
        return None
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return None
    return root


def _checkout_commit(root: Path) -> str | None:
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return None
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def _direct_url_commit() -> str | None:
    """The commit pip recorded for a direct-URL install from a VCS (PEP 610's direct_url.json), if any, and only
    when that installed distribution is the resx running now (not another copy found first on the path)."""
    try:
        dist = metadata.distribution("resx")
        text = dist.read_text("direct_url.json")
        running = Path(resx.__file__).resolve()
        if Path(str(dist.locate_file("resx/__init__.py"))).resolve() != running:
            return None
    except (metadata.PackageNotFoundError, OSError):
        return None
    try:
        info = json.loads(text or "null")
    except ValueError:
        return None
    if isinstance(info, dict):
        commit = (info.get("vcs_info") or {}).get("commit_id")
        return str(commit) if commit else None
    return None


def find_commit(package_dir: Path | None = None) -> tuple[str | None, str]:
    """(commit, where it came from): 'checkout' (resx's own repository, '+dirty' with uncommitted changes),
    'direct_url' (pip's record of a VCS install) or 'none' (commit None: an installed release)."""
    root = own_checkout(package_dir or Path(resx.__file__).parent)
    if root is not None:
        commit = _checkout_commit(root)
        if commit:
            return commit, "checkout"
    commit = _direct_url_commit()
    if commit:
        return commit, "direct_url"
    return None, "none"


def _process_commit() -> tuple[str | None, str]:
    """The commit of the code this process runs, read once when resx is first imported: a grid that trains for
    hours keeps reporting it, even if the checkout moves on meanwhile. It is handed down to the worker processes a
    CPU grid starts (in the environment they inherit), so that their run_info.json names the same commit as the
    grid that started them, not the checkout as it is when they import resx."""
    import os

    here = str(Path(resx.__file__).resolve())
    inherited = os.environ.get(_COMMIT_ENV)
    if inherited:
        try:
            commit, source, package = json.loads(inherited)
            if package == here:  # the same resx as the parent's (not another copy started from it)
                return commit, str(source)
        except (ValueError, TypeError):
            pass
    found = find_commit()
    os.environ[_COMMIT_ENV] = json.dumps([*found, here])
    return found


_COMMIT_ENV = "RESX_PROCESS_COMMIT"
_PROCESS_COMMIT, _COMMIT_SOURCE = _process_commit()


def git_commit() -> str | None:
    """resx's own commit (see `find_commit`), or None when it is not known (an installed release)."""
    return _PROCESS_COMMIT


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from resx.text import count

    return f"CPU ({cpu_model()}, {count(torch.get_num_threads(), 'thread')})"


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else the machine type."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


PROVENANCE_KEYS = (
    "resx_version", "git_commit", "commit_source", "python", "torch", "torchvision", "numpy", "pandas", "cuda",
    "cudnn", "host", "time", "device", "device_name", "precision", "threads",
)


def provenance(device=None, precision: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """The provenance block: resx's version and commit, the versions of what it computes with, the host, the time,
    and (when given) the device, the precision it computed in and the CPU threads it used. On CUDA it also says
    that cudnn.benchmark rules out bit-identical reruns."""
    import torch

    info: dict[str, Any] = {
        "resx_version": resx.__version__,
        "git_commit": git_commit(),
        "commit_source": _COMMIT_SOURCE,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "host": platform.node(),
        "time": now(),
    }
    if device is not None:
        dev = torch.device(device)
        info["device"] = str(dev)
        info["device_name"] = device_name(dev)
        if dev.type == "cuda" and torch.backends.cudnn.benchmark:
            info["cudnn_benchmark"] = CUDNN_BENCHMARK_NOTE
    if precision is not None:
        info["precision"] = precision
    info["threads"] = threads if threads is not None else torch.get_num_threads()
    return info


def environment(device=None) -> dict[str, Any]:
    """The provenance block without precision (run_info.json's top-level fields; kept for their readers)."""
    return provenance(device)
