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
    """Call `write(fileobj)` on a temp file beside `path`, then rename it over `path`. Any OSError (a full disk, a
    quota, a folder made unwritable) becomes one OutputError naming the file and the cause; the old file stays."""
    from resx.errors import OutputError

    path = Path(path)
    try:
        return _write_atomic(path, write)
    except OSError as e:
        cause = e.strerror or type(e).__name__
        raise OutputError(f"cannot write {path}: {cause} (errno {e.errno}); the file as it was before is kept. "
                          "Free space or fix the folder's permissions, then run the same command again") from None


def _write_atomic(path: Path, write: Callable[[io.BufferedWriter], None]) -> Path:
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
    """Write a pandas DataFrame (or a list of dict rows) as CSV, atomically; gzip-compressed when `path` ends in .gz."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(list(frame))
    text = frame.to_csv(index=False)
    if str(path).endswith(".gz"):  # compressed (pandas reads it back as it is); no timestamp: same rows, same bytes
        import gzip

        return write_atomic(path, lambda f: f.write(gzip.compress(text.encode("utf-8"), mtime=0)))
    return write_text_atomic(path, text)


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return write_atomic(path, lambda f: torch.save(obj, f))


# --- output folders: checked before any computing, so that a study is never lost to a folder it cannot write -------
def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse (ResxError, one line) an output folder that is a file, lies under a file, or cannot be written: the
    folder itself if it exists, else the nearest folder above it that does (where it would be created). Nothing is
    created. Returns the path."""
    from resx.errors import ResxError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ResxError(f"{option} {path} is a file, not a folder; give a folder (it is created if missing)")
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ResxError(f"{option} {path} lies under {existing}, which is a file, not a folder; give another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing}, where it would be created)"
        raise ResxError(f"{option} {path} is not writable{where}; give a folder you can write to")
    return path


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """The same for a file to be written: not a folder, and its folder can be created and written."""
    from resx.errors import ResxError

    path = Path(path)
    if path.is_dir():
        raise ResxError(f"{option} {path} is a folder; give the file to write (e.g. {path / 'REPORT.md'})")
    check_output_folder(path.parent if str(path.parent) else Path("."), option=f"{option} {path}: folder")
    return path


# --- run folder locks -----------------------------------------------------------------------------------------------
LOCK_NAME = ".resx.lock"


class FolderLock:
    """An exclusive lock on a folder (fcntl.flock on FOLDER/.resx.lock), held until `release()` or the process
    ends: the kernel drops a dead process's lock, so a lock file left behind by a crash is never stale. The lock
    file stays (removing it would race with a process about to lock it); it holds the holder's pid and host, for
    the message a second writer gets. (The one file resx writes in place: a lock cannot be renamed over.)"""

    def __init__(self, folder: str | os.PathLike, what: str = "run folder", *, name: str = LOCK_NAME,
                 wait: bool = False) -> None:
        """`wait`: block until the holder lets go (a short critical section, e.g. merging shards' tables) instead of
        refusing; `name`: the lock file, for a second, independent lock in the same folder."""
        import fcntl
        import socket

        from resx.errors import ResxError

        self._fd: int | None = None
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            who = f" ({holder})" if holder else ""
            raise ResxError(f"{what} {self.folder} is in use by another resx process{who}; wait for it to end, "
                            "or give another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def __del__(self) -> None:
        self.release()

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
