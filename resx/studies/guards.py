"""What the studies check before they compute: the output folder, and the runs they are given.

- One writer per output folder (`one_writer`): a study's entry point holds its --out (resx.atomic.FolderLock) while
  it computes and writes; a second study into the same folder at the same time is refused, naming the holder. A
  folder the study made itself is removed again when a check fails before anything was written.

- An --out that already holds an earlier study of the same kind is refused unless `overwrite`; with it, the old
  study's files are removed before the new one is written, so that no figure or REPORT.md mixes the two.
- A run whose run_info.json says it is not finished (still training, interrupted, diverged) is refused unless
  `force`: its checkpoint is of an earlier epoch than the run's name suggests.
- `--data` other than the dataset a run was trained on (another size, another seed of a synthetic set, another
  folder) is refused unless `force`. Specs are compared normalised (resx.data.normalise_data_spec).
- Whatever the data, it must fit the net (`check_data_fits`): the classes and channels it was built for, and the
  image size for an MLP. Not even `force` lets a net see data it cannot compute on.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resx.errors import ResxError

@contextmanager
def holding(out: str | Path, study: str) -> Iterator[None]:
    """Hold `out` for this process while the block computes and writes the study (see `one_writer`)."""
    from resx.atomic import LOCK_NAME, FolderLock

    out = Path(out)
    existed = out.exists()
    lock = FolderLock(out, what=f"{study} output folder")
    try:
        yield
    except BaseException:
        lock.release()
        if not existed:  # made just now for the lock: leave no empty folder behind a refused study
            (out / LOCK_NAME).unlink(missing_ok=True)
            try:
                out.rmdir()
            except OSError:
                pass  # something was written: it stays
        raise
    finally:
        lock.release()


def one_writer(study: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A study's entry point holds its `out` folder while it runs (none when `out` is None): two studies writing
    one folder at once would lose one of them."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            out = bound.arguments.get("out")
            if out is None:
                return fn(*args, **kwargs)
            with holding(out, study):
                return fn(*args, **kwargs)

        return run

    return wrap


def earlier_study(out: str | Path, study: str) -> list[Path]:
    """The files of an earlier `study` in `out` (none if it does not exist): every file the study declares that it
    writes (its declare.py), its CSVs, info file and figures."""
    from resx.studies.registry import get_study

    out = Path(out)
    if not out.is_dir():
        return []
    return get_study(study).files_in(out)


def check_study_folder(out: str | Path, study: str, overwrite: bool) -> list[Path]:
    """Refuse an `out` holding an earlier `study` unless `overwrite`; returns that study's files (for
    `remove_files` once every other check has passed)."""
    found = earlier_study(out, study)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:3]) + (", ..." if len(found) > 3 else "")
        raise ResxError(f"{out} already holds a {study} study ({names}); pass --overwrite to replace it, "
                        "or give another --out")
    return found


def remove_files(files: Sequence[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)


def run_status(checkpoint: str | Path) -> str | None:
    """The status in run_info.json beside a run's checkpoint.pt (None when there is none to read)."""
    checkpoint = Path(checkpoint)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    try:
        return json.loads((folder / "run_info.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def check_run(name: str, checkpoint: str | Path, trained_on: str | None, data: str | None, *, force: bool,
              what: str) -> None:
    """Refuse (unless `force`) a run that is not finished, or `data` other than the run's own dataset."""
    from resx.data import normalise_data_spec

    if force:
        return
    status = run_status(checkpoint)
    if status is not None and status != "finished":
        raise ResxError(f"run {name} is not finished (run_info.json says {status!r}): its checkpoint is of an earlier "
                        f"epoch; finish it (resx train ... --resume), or pass --force to {what} it as it is")
    if data and trained_on and normalise_data_spec(data) != normalise_data_spec(trained_on):
        raise ResxError(f"run {name} was trained on {trained_on}, not {data}; leave --data out to use its own "
                        f"dataset, or pass --force to {what} it on {data}")


def check_data_fits(name: str, model: str, model_options: dict | None, data: Any, *, what: str) -> None:
    """The data (an ImageData) must have the classes and channels the net was built for (`model_options`, as in
    its checkpoint), and the image size for an MLP: conv nets pool globally, so any size works for them."""
    from resx.models import get_model_spec

    options = model_options or {}
    wanted = {"num_classes": data.num_classes, "in_channels": data.channels}
    if model and get_model_spec(model).family in ("mlp", "onenet"):  # flat inputs of one fixed size
        wanted["input_size"] = data.image_size
    for key, value in wanted.items():
        if key in options and options[key] != value:
            raise ResxError(
                f"run {name} ({model}) was built for {key.replace('_', ' ')} {options[key]}, but the data "
                f"({data.name}) has {value}; {what} it on data of the same shape"
            )
