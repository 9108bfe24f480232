"""A run folder's files and rules: what they hold, when a folder may be resumed or overwritten, its lock, and the
record of every attempt that trained it.

Run folder:
    config.yaml     the resolved config (defaults < YAML < command line)
    run_info.json   the run: seed, model, dataset, status, memory, timing, and the provenance block
                    (resx.provenance: versions, device, precision, threads, resx's own commit) of the latest
                    attempt at top level; `history` holds one entry per attempt (`attempt_entry`), so that a run
                    started on one thread and resumed on two says both
    metrics.csv     one row per epoch (columns: METRIC_COLUMNS); train_error is measured on the training
                    batches of that epoch while training, as in He et al. 2015 Fig. 6
    iterations.csv  the training curve against iterations, as He et al. 2015 Fig. 6 draws it (CURVE_COLUMNS): a row
                    every `curve_every` iterations with the training error and loss over the last `curve_window`
                    batches, so that even a short run gives a smooth curve
    checkpoint.pt   see checkpoint.py; written after every epoch (and on Ctrl-C, mid-epoch)
    checkpoints/    with --save-every N (config save_every): epoch-NNN.pt, the checkpoint of every N-th epoch, kept
                    (checkpoint.pt is replaced each epoch), for studies of the net along training
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resx.atomic import FolderLock, write_yaml_atomic
from resx.config import TrainConfig
from resx.data import normalise_data_spec
from resx.engine import checkpoint as ckpt_io
from resx.errors import ResxError

METRIC_COLUMNS = [
    "epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error",
    "seconds", "images_per_second", "elapsed_seconds", "batch_size", "lr_start", "lr_end",
]
# iterations.csv: `iteration` counts batches done; train_error/train_loss are the means over the `window` batches
# up to and including it (fewer at the start); batch_error/batch_loss are that one batch's.
CURVE_COLUMNS = ["iteration", "epoch", "lr", "train_error", "train_loss", "window", "batch_error", "batch_loss"]
# Fields that must match when resuming: another model or dataset is another run.
IDENTITY_FIELDS = ("model", "data", "shortcut", "block", "stochastic_depth", "depth", "width", "batch_size")
# Fields a resume may change: where and how fast it runs, not what it computes. The length (epochs, iterations) may
# change too, to no fewer iterations than are done; the change is recorded (run_info.json's length_changes). Every
# other field (lr, momentum, weight decay, milestones, seed, ...) must match, so that config.yaml keeps saying
# what the run used.
FREE_ON_RESUME = ("device", "data_dir", "graph", "threads", "eval_batch_size", "curve_every", "curve_window",
                  "save_every", "epochs", "iterations")
RUN_FILES = (ckpt_io.CHECKPOINT_NAME, "metrics.csv", "run_info.json", "config.yaml")

# --save-every N: every N-th epoch's checkpoint is also kept, as checkpoints/epoch-NNN.pt (`epoch_checkpoint_path`)
EPOCH_CHECKPOINTS = "checkpoints"


def iteration_curve(losses: Sequence[float], errors: Sequence[int], *, batch_size: int, every: int, window: int,
                    lrs: Sequence[float], steps_per_epoch: int):
    """iterations.csv's rows (CURVE_COLUMNS) from per-batch losses and misclassified counts: one row every `every`
    iterations (and the last), each with the means over the last `window` batches."""
    import pandas as pd

    n = len(errors)
    if n == 0:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    err = pd.Series(errors, dtype="float64") / batch_size
    loss = pd.Series(losses, dtype="float64")
    err_w = err.rolling(window, min_periods=1).mean()
    loss_w = loss.rolling(window, min_periods=1).mean()
    picked = sorted({*range(every - 1, n, every), n - 1})  # 0-based batch index of each row
    return pd.DataFrame({
        "iteration": [i + 1 for i in picked],
        "epoch": [i // steps_per_epoch + 1 for i in picked],
        "lr": [lrs[i] for i in picked],
        "train_error": err_w.iloc[picked].round(6).to_numpy(),
        "train_loss": loss_w.iloc[picked].round(6).to_numpy(),
        "window": [min(window, i + 1) for i in picked],
        "batch_error": err.iloc[picked].round(6).to_numpy(),
        "batch_loss": loss.iloc[picked].round(6).to_numpy(),
    }, columns=CURVE_COLUMNS)


def epoch_checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """Where --save-every keeps the checkpoint of `epoch` (counted from 1): RUN_DIR/checkpoints/epoch-NNN.pt."""
    return Path(run_dir) / EPOCH_CHECKPOINTS / f"epoch-{epoch:03d}.pt"


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """run_info.json, or {} when absent or unreadable."""
    try:
        info = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def run_folder_state(run_dir: Path) -> str:
    """'empty' (absent or no resx files), 'finished', or 'partial'."""
    if not (run_dir / ckpt_io.CHECKPOINT_NAME).exists() and not (run_dir / "metrics.csv").exists():
        return "empty"
    return "finished" if read_run_info(run_dir).get("status") == "finished" else "partial"


# --- resuming and overwriting -------------------------------------------------------------------------------------
def check_run_folder(run_dir: Path, config: TrainConfig, *, resume: str,
                     overwrite: bool) -> tuple[dict[str, Any] | None, tuple]:
    """Apply the resume/overwrite rules; return the checkpoint to resume from, if any, and the folder's stamp
    (see `folder_stamp`). resume: 'never', 'require' (--resume) or 'auto'."""
    from resx.atomic import check_output_folder

    check_output_folder(run_dir, "run folder")
    if run_dir.is_dir():  # a folder another process is training is "in use, by whom", before any other verdict
        FolderLock(run_dir).release()
    stamp = folder_stamp(run_dir)
    state = run_folder_state(run_dir)
    has_ckpt = (run_dir / ckpt_io.CHECKPOINT_NAME).exists()
    if overwrite:
        return None, stamp  # the old files are removed in start_folder, once the new run is known to start
    if resume == "require" and not has_ckpt:
        raise ResxError(f"--resume: no checkpoint in {run_dir}; start the run without --resume")
    if resume == "never" and state != "empty":
        raise ResxError(
            f"run folder {run_dir} already holds a run; pass --resume to continue it or --overwrite to start again"
        )
    if not has_ckpt:
        return None, stamp
    ckpt = ckpt_io.read_checkpoint(run_dir / ckpt_io.CHECKPOINT_NAME)
    check_same_run(run_dir, ckpt["config"], config)
    return ckpt, stamp


def check_same_run(run_dir: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """A checkpoint resumes only the run it was written by: same identity, same settings (FREE_ON_RESUME aside)."""
    for key in IDENTITY_FIELDS:
        same = (normalise_data_spec(saved.get(key)) == normalise_data_spec(config.data) if key == "data"
                else saved.get(key) == getattr(config, key))
        if not same:
            raise ResxError(
                f"checkpoint in {run_dir} is for {key}={saved.get(key)!r}, not {getattr(config, key)!r}; "
                "use another --out or --overwrite"
            )
    for key, value in config.to_dict().items():
        if key in IDENTITY_FIELDS or key in FREE_ON_RESUME or key not in saved or saved[key] == value:
            continue
        raise ResxError(
            f"checkpoint in {run_dir} was trained with {key}={saved[key]!r}, not {value!r}; a resumed run "
            f"keeps its settings ({run_dir}/config.yaml): give the same ones, another --out, or --overwrite"
        )


def folder_stamp(run_dir: Path) -> tuple:
    """What the run folder's files look like now: seen again once the lock is held, to catch a writer that was at
    work between the checks and the lock."""
    stamp = []
    for name in RUN_FILES:
        try:
            st = (run_dir / name).stat()
            stamp.append((name, st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((name, None, None))
    return tuple(stamp)


def take_lock(run_dir: Path, stamp: tuple) -> FolderLock:
    """Hold the run folder for this process (released when it ends, or by FolderLock.release): a second writer —
    another `resx train` into the same --out, or a --resume of a run being trained — is refused. `stamp`: the
    folder as the checks saw it."""
    lock = FolderLock(run_dir)
    if folder_stamp(run_dir) != stamp:
        lock.release()
        raise ResxError(f"run folder {run_dir} was written by another process while this one started; "
                        "run the command again")
    return lock


def start_folder(run_dir: Path, config: TrainConfig, overwrite: bool) -> None:
    """With --overwrite, the old run's files go (only now: a command that fails before this must not cost the user
    the old run); then the folder and its config.yaml."""
    if overwrite:
        for f in RUN_FILES:
            (run_dir / f).unlink(missing_ok=True)
        for kept in (run_dir / EPOCH_CHECKPOINTS).glob("epoch-*.pt"):
            kept.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml_atomic(run_dir / "config.yaml", config.to_dict())


# --- the attempts that trained a run (run_info.json's history) ---------------------------------------------------
# provenance keys copied into each attempt: who trained it, with what, where, how
ATTEMPT_PROVENANCE = ("git_commit", "resx_version", "torch", "device", "device_name", "precision", "threads", "host")


def earlier_attempts(run_dir: Path) -> list[dict[str, Any]]:
    """The attempts recorded in the folder's run_info.json, before this process resumes it. An attempt still
    marked 'running' ended without saying so (killed: SIGKILL, a power cut); it is marked 'killed'. A run_info.json
    written before resx kept a history gives one entry rebuilt from its top-level fields (`rebuilt: true`; its start
    is that attempt's, not the run's)."""
    info = read_run_info(run_dir)
    if not info:
        return []
    history = info.get("history")
    if not isinstance(history, list):
        history = [{
            "start": info.get("time"), "end": None, "status": info.get("status"),
            "iterations_at_start": None, "iterations_done": info.get("iterations_done"),
            **{k: info.get(k) for k in ATTEMPT_PROVENANCE},
            "threads": info.get("cpu_threads", info.get("threads")), "rebuilt": True,
        }]
    history = [dict(h) for h in history if isinstance(h, dict)]
    if history and history[-1].get("status") in ("running", "new"):
        history[-1]["status"] = "killed"
    return history


def attempt_entry(provenance: dict[str, Any], *, start: str, iterations_at_start: int) -> dict[str, Any]:
    """A new attempt: when it started, from which iteration, and its provenance (`update_attempt` fills in the
    rest as it trains)."""
    return {"start": start, "end": None, "status": "running", "iterations_at_start": iterations_at_start,
            "iterations_done": iterations_at_start, **{k: provenance.get(k) for k in ATTEMPT_PROVENANCE}}


def update_attempt(entry: dict[str, Any], *, end: str, status: str, iterations_done: int) -> None:
    entry.update(end=end, status=status, iterations_done=iterations_done)
