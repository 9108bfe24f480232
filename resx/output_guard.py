"""One guard for every folder a command writes: a lock held while writing, a fingerprint of the settings that decide
the folder's content, and a one-line refusal when a second writer or other settings arrive (or `--overwrite`).

    with guard_folder(out, "lesion study", settings, overwrite=overwrite):
        ... compute and write ...

- The lock (resx.atomic.FolderLock: flock, freed when the process ends however it ends) refuses a second process
  writing the same folder at once, naming the holder (pid and host). A study whose several processes legitimately
  write one folder (a grid's or a landscape's shards) passes `shared=True`: no exclusive lock, only the settings
  check; its own per-run locks and `merge_lock` keep the shards apart.
- The fingerprint, `settings` (a JSON-able mapping of what decides the content: the data, the runs, the recipe; not
  where or how fast it runs), is kept in `.resx-settings.json`. Arriving with other settings is refused with the
  first differences named, unless `overwrite` (the caller then replaces the old content). Arriving with the same
  settings continues (resumes) what is there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resx.atomic import FolderLock, write_json_atomic
from resx.errors import ResxError

SETTINGS_NAME = ".resx-settings.json"
MERGE_LOCK = ".resx-merge.lock"


def _canonical(value: Any) -> Any:
    """Settings as JSON would give them back (tuples as lists, paths as strings), so that a fingerprint read from
    disk compares equal to the one computed again."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def read_settings(folder: str | Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(folder) / SETTINGS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> list[str]:
    """'key: old -> new' for the first `limit` settings that differ, nested ones by their dotted name
    ('recipe.epochs: 1 -> 2'); a setting only one side has counts too."""
    old, new = _flat(dict(old)), _flat(dict(new))
    out = [f"{key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}"
           for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return out[:limit] + ([f"and {len(out) - limit} more"] if len(out) > limit else [])


def check_settings(folder: str | Path, what: str, settings: Mapping[str, Any], *, overwrite: bool = False,
                   can_overwrite: bool = True) -> bool:
    """Refuse a `folder` holding `what` made with other settings (unless `overwrite`); True when it holds output
    made with these same settings (to continue), False when it holds none (or `overwrite` replaces it)."""
    folder = Path(folder)
    recorded = read_settings(folder)
    if recorded is None:
        return False
    replace = " (or --overwrite to replace it)" if can_overwrite else ""
    if recorded.get("what") != what and not overwrite:
        raise ResxError(f"{folder} holds a {recorded.get('what', 'different output')}, not a {what}; give another "
                        f"--out{replace}")
    new = _canonical(dict(settings))
    old = recorded.get("settings") if isinstance(recorded.get("settings"), dict) else {}
    if old == new:
        return True
    if overwrite:
        return False
    raise ResxError(f"{folder} holds a {what} made with other settings ({'; '.join(differences(old, new))}); "
                    f"give another --out, or the same settings to continue it{replace}")


def record_settings(folder: str | Path, what: str, settings: Mapping[str, Any]) -> None:
    write_json_atomic(Path(folder) / SETTINGS_NAME, {"what": what, "settings": _canonical(dict(settings))})


@contextmanager
def guard_folder(folder: str | Path, what: str, settings: Mapping[str, Any], *, overwrite: bool = False,
                 shared: bool = False, can_overwrite: bool = True) -> Iterator[bool]:
    """Hold `folder` for this process while the block writes it (unless `shared`), after refusing other settings
    (see `check_settings`); yields whether the folder already holds output of these settings (continue it). The
    settings are recorded before the block runs, so that a second writer arriving meanwhile is judged by them."""
    folder = Path(folder)
    lock = None if shared else FolderLock(folder, what=f"{what} folder")
    try:
        same = check_settings(folder, what, settings, overwrite=overwrite, can_overwrite=can_overwrite)
        folder.mkdir(parents=True, exist_ok=True)
        record_settings(folder, what, settings)
        yield same
    finally:
        if lock is not None:
            lock.release()


@contextmanager
def merge_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Wait for, then hold, the folder's merge lock: shards that each merge the tables of every run found (a grid's
    curves.csv and summary.csv) take turns, so that the last to merge, which sees every finished run, writes last."""
    lock = FolderLock(folder, what=f"{what} folder", name=MERGE_LOCK, wait=True)
    try:
        yield
    finally:
        lock.release()
