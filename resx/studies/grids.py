"""A grid of training runs, shared by the studies that train many nets alike (the degradation grid of
`resx compare-plain`, the block variants of `resx variants`): the runs (`GridRun`), their shards, training every run
that is not done through the engine (several at once on one GPU, one worker process per core on a CPU; resumable),
what "final training error" means for a run, and the grid's info file with one `history` entry per invocation
(which keeps the `settings` a study names for each entry).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from resx.config import TrainConfig
from resx.errors import ResxError

RESUME_HINT = "run the same command again: finished runs are skipped and interrupted ones resume"
# Config fields that do not change what a run computes: a finished run trained with other values is reused.
IGNORED_FOR_REUSE = ("device", "data_dir", "graph", "threads", "curve_every", "curve_window", "save_every")


@dataclass(frozen=True)
class GridRun:
    model: str  # registry name
    family: str
    residual: bool
    depth: int
    seed: int
    config: TrainConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return self.run_dir.name


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N) with 1 <= I <= N (I = a SLURM array index counted from 1); 'auto': the SLURM array task's
    (resx.shards)."""
    from resx.shards import parse_shard as parse

    return parse(text)


def shard(runs: list[GridRun], index: int, count: int) -> list[GridRun]:
    """The index-th of count slices (round robin, so each shard gets a mix of cheap and expensive runs)."""
    return runs[index - 1 :: count]


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in IGNORED_FOR_REUSE}


def check_reusable(run: GridRun) -> None:
    """A run folder trained with another config is not silently reused (e.g. the user changed --epochs)."""
    saved_file = run.run_dir / "config.yaml"
    if not saved_file.exists():
        return
    import yaml

    from resx.data import normalise_data_spec

    saved = yaml.safe_load(saved_file.read_text()) or {}
    wanted = run.config.to_dict()
    same = lambda k, v: (normalise_data_spec(saved.get(k)) == normalise_data_spec(v) if k == "data"  # noqa: E731
                         else saved.get(k) == v)
    diffs = [k for k, v in _comparable(wanted).items() if not same(k, v)]
    if diffs:
        k = diffs[0]
        raise ResxError(
            f"{run.run_dir} was trained with {k}={saved.get(k)!r}, this grid asks for {k}={wanted[k]!r}; "
            "use another --out, or delete that run folder"
        )


def run_grid(
    runs: list[GridRun],
    *,
    concurrency: int | None = None,
    progress: Callable | None = None,
    on_status: Callable[[str], None] | None = None,
    divergence_is_a_result: bool = False,
) -> dict[str, Any]:
    """Train every run that is not finished (interrupted ones resume from their checkpoints), `concurrency`
    at a time on one device: on CUDA interleaved on streams of one process, on a CPU in worker processes that
    share the cores (engine/processes.py; default: one per core, the deepest runs first).
    Returns timing: wall seconds, images trained, aggregate images/s.

    `divergence_is_a_result`: a run whose loss becomes NaN or infinite is a result (status `diverged` in its
    run_info.json, with the iteration), not an error that stops the grid; it is not trained again on a rerun.
    The names of such runs are in the returned `diverged`."""
    from resx.data import load_dataset
    from resx.engine import TrainingRun, resolve_device, train_many
    from resx.engine.device import cpu_count
    from resx.engine.run_folder import read_run_info, run_folder_state

    say = on_status or (lambda _msg: None)
    todo = []
    for run in runs:
        check_reusable(run)
        state = run_folder_state(run.run_dir)
        if state == "finished":
            say(f"skip {run.label}: finished")
        elif divergence_is_a_result and read_run_info(run.run_dir).get("status") == "diverged":
            say(f"skip {run.label}: diverged (a result)")
        else:
            todo.append(run)
    info: dict[str, Any] = {"runs": len(runs), "trained": len(todo), "skipped": len(runs) - len(todo)}
    if not todo:
        return {**info, "wall_seconds": 0.0, "images": 0, "images_per_second": 0.0}
    device = resolve_device(todo[0].config.device)
    if concurrency is None:
        concurrency = 4 if device.type == "cuda" else cpu_count()
    if concurrency < 1:
        raise ResxError(f"--concurrency must be at least 1, got {concurrency}")
    concurrency = min(concurrency, len(todo))
    first = todo[0].config
    diverged: list[str] = []
    info["diverged"] = diverged

    def note_divergence(name: str, message: str) -> None:
        diverged.append(name)
        say(f"{name}: {message.split(' in ', 1)[0]} (a result: the other runs go on)")

    if device.type == "cpu" and concurrency > 1:
        return {**info, **_run_on_cpu_workers(todo, concurrency, progress, say,
                                               note_divergence if divergence_is_a_result else None)}
    data = load_dataset(first.data, first.data_dir).to(device)  # once, shared by every run on the device
    start = time.perf_counter()
    before: dict[str, int] = {}

    def starter(run: GridRun) -> Callable[[], Any]:
        def start_run():
            trainer = TrainingRun(run.config, run.run_dir, resume="auto", data=data, name=run.label)
            before[run.label] = trainer.host_iteration
            if trainer.host_iteration:
                say(f"resume {run.label} from epoch {trainer.epoch}, iteration {trainer.host_iteration}")
            return trainer

        return start_run

    # A pool of `concurrency` runs: when one finishes, the next starts (train_many's queue).
    trainers = train_many([], queue=[starter(run) for run in todo], concurrency=concurrency, progress=progress,
                          resume_hint=RESUME_HINT,
                          on_diverged=(lambda r, m: note_divergence(r.name, m)) if divergence_is_a_result else None)
    images = sum((t.host_iteration - before[t.name]) * t.config.batch_size for t in trainers)
    memory = [t.memory_mb for t in trainers]
    wall = time.perf_counter() - start
    return {
        **info,
        "concurrency": concurrency,
        "wall_seconds": round(wall, 2),
        "images": images,
        "images_per_second": round(images / max(wall, 1e-9), 1),
        "memory_mb_per_run": round(max(memory), 1) if memory else 0.0,
    }


def _run_on_cpu_workers(todo: list[GridRun], workers: int, progress: Callable | None,
                        say: Callable[[str], None],
                        on_diverged: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """The CPU pool: deepest (slowest) runs first, so the pool ends together; the cores split evenly unless the
    config sets threads."""
    from resx.engine.device import cpu_count
    from resx.engine.processes import Job, train_in_processes

    threads = todo[0].config.threads or max(1, cpu_count() // workers)
    jobs = [Job(r.config, r.run_dir, r.label) for r in sorted(todo, key=lambda r: -r.depth)]
    say(f"training {len(jobs)} run(s) in {workers} worker processes of {threads} thread(s) each")
    start = time.perf_counter()
    diverged: list[tuple[str, str]] | None = [] if on_diverged else None
    results = train_in_processes(jobs, workers=workers, threads_per_worker=threads, progress=progress,
                                 resume_hint=RESUME_HINT, diverged=diverged)
    for name, message in diverged or []:
        on_diverged(name, message)
    wall = time.perf_counter() - start
    images = sum((r.iterations_after - r.iterations_before) * r.batch_size for r in results)
    return {"concurrency": workers, "threads_per_run": threads, "wall_seconds": round(wall, 2), "images": images,
            "images_per_second": round(images / max(wall, 1e-9), 1), "memory_mb_per_run": 0.0}


def final_train_error(metrics: pd.DataFrame, steps_per_epoch: int | None) -> float:
    """Training error at the end of training, over the last epoch's worth of iterations. A run of a fixed number
    of iterations ends in a partial epoch (64,000 = 164 x 390 + 40): its row covers only 40 batches, so it is
    pooled with the rows before it, each weighted by its iterations, until one epoch's worth is covered."""
    iterations = metrics["iteration"].diff().fillna(metrics["iteration"].iloc[0]).to_numpy()
    errors = metrics["train_error"].to_numpy()
    wanted = steps_per_epoch or iterations.max()
    total = weighted = 0.0
    for its, err in zip(iterations[::-1], errors[::-1]):
        take = min(its, wanted - total)
        total, weighted = total + take, weighted + take * err
        if total >= wanted:
            break
    return float(weighted / total)


def device_of(name: str | None) -> str | None:
    """The device the grid's runs train on (None when this machine lacks it: every run was finished elsewhere)."""
    from resx.engine import resolve_device

    try:
        return str(resolve_device(name or "auto"))
    except ResxError:
        return None


def runs_precision(runs: list[GridRun], asked: str = "auto") -> str:
    """The precision `runs` computed in, as their run_info.json says (the engine resolves `auto` per device):
    one name, "mixed: a, b" when they differ, or `asked` (the config's, "auto" unless set) when no run says."""
    found = set()
    for run in runs:
        try:
            precision = json.loads((run.run_dir / "run_info.json").read_text()).get("precision")
        except (OSError, ValueError, AttributeError):
            continue
        if precision:
            found.add(str(precision))
    if not found:
        return asked or "auto"
    return found.pop() if len(found) == 1 else "mixed: " + ", ".join(sorted(found))


def history_entry(info: dict[str, Any], settings: tuple[str, ...]) -> dict[str, Any]:
    """One invocation of the grid, for grid_info.json's `history`, from the top level of a grid_info.json (this
    invocation's, or that of a file written before `history` existed: what it lacks is None)."""
    options = info.get("options") if isinstance(info.get("options"), dict) else {}
    return {
        "started": info.get("started"),
        "ended": info.get("ended"),
        "runs": info.get("runs"),  # the runs this invocation covered (its shard's, in a sharded grid)
        "grid_runs": info.get("grid_runs", info.get("runs")),
        "trained": info.get("trained"),
        "skipped": info.get("skipped"),
        "seconds": info.get("seconds", info.get("wall_seconds")),
        "training_seconds": info.get("wall_seconds"),
        "settings": {k: options.get(k) for k in settings},
        "provenance": info.get("provenance"),
    }


def write_grid_info(path: Path, info: dict[str, Any], settings: tuple[str, ...]) -> dict[str, Any]:
    """Write `info` (this invocation) as the top level of `path`, with `history`: the entries already in the file
    (or, for a file without history, its own top level as the first entry), then this invocation's. Returns what
    was written."""
    from resx.atomic import write_json_atomic

    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    history: list[dict[str, Any]] = []
    if isinstance(old, dict):
        kept = old.get("history")
        history = [e for e in kept if isinstance(e, dict)] if isinstance(kept, list) else [history_entry(old, settings)]
    top = {k: v for k, v in info.items() if k != "history"}
    written = {**top, "history": [*history, history_entry(top, settings)]}
    write_json_atomic(path, written)
    return written
