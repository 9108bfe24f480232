"""Atomic file writes: every CSV, YAML, JSON and checkpoint resx writes goes through here.

Write to a temporary file in the same folder, flush it to disk, then `os.replace` it over the target, so a
reader (or a run killed mid-write) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call `write(fileobj)` on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file as 0600; give it the permissions a plain open() would (0666 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_yaml_atomic(path: str | os.PathLike, obj: Any) -> Path:
    import yaml

    return write_text_atomic(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv_atomic(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame (or a list of dict rows) as CSV, atomically."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(list(frame))
    return write_text_atomic(path, frame.to_csv(index=False))


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return write_atomic(path, lambda f: torch.save(obj, f))
