"""The degradation grid (He et al. 2015, §4.2 and Fig. 6): which runs it holds, which of them one process trains,
and training them.

`plan_grid` lists the runs (plain and residual twin for every depth, every seed, plus residual-only depths such
as ResNet-110, which the paper shows without its plain twin), `shard` picks one slice of them for one process of
a multi-GPU or SLURM job array, and `run_grid` trains them through the engine, several at once on one GPU,
skipping finished runs and resuming interrupted ones. tables.py merges the run folders into the grid's CSVs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from resx.config import TrainConfig, replace, train_config_from
from resx.errors import ResxError
from resx.studies.degradation.declare import FAMILIES

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


def check_depth(family: str, depth: int) -> None:
    if family == "mlp":
        if depth < 4 or depth % 2:
            raise ResxError(f"depth {depth} is not valid for the mlp family; allowed: even depths >= 4 (2 * blocks + 2)")
    elif depth < 8 or (depth - 2) % 6:
        raise ResxError(f"depth {depth} is not 6n+2 for the {family} family; allowed: 8, 14, 20, 32, 44, 56, 110, ...")


def plan_grid(
    base: TrainConfig,
    *,
    depths: list[int],
    residual_depths: list[int] = (),
    seeds: int = 1,
    family: str = "cifar",
    out: str | Path = "results/degradation",
    per_model: dict[str, dict[str, Any]] | None = None,
) -> list[GridRun]:
    """Every run of the grid, in a fixed order (so shards agree). Seeds are base.seed, base.seed + 1, ..."""
    if family not in FAMILIES:
        raise ResxError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    if seeds < 1:
        raise ResxError(f"seeds must be at least 1, got {seeds}")
    depths = list(dict.fromkeys(depths))  # --depths 8,8 is one depth
    residual_depths = list(dict.fromkeys(residual_depths))
    if not depths and not residual_depths:
        raise ResxError("the grid is empty: give at least one depth (--depths 20,56)")
    for d in [*depths, *residual_depths]:
        check_depth(family, d)
    per_model = {name: train_config_from(dict(changes or {}), f"per_model {name}")
                 for name, changes in (per_model or {}).items()}
    plain_name, residual_name = FAMILIES[family]
    runs: list[GridRun] = []
    entries = [(d, False) for d in depths] + [(d, True) for d in depths] + [
        (d, True) for d in residual_depths if d not in depths
    ]
    out = Path(out)
    for depth, residual in sorted(entries, key=lambda e: (e[0], e[1])):
        name = (residual_name if residual else plain_name).format(d=depth)
        label = f"{name}-{depth}" if family == "mlp" else name
        for i in range(seeds):
            seed = base.seed + i
            changes: dict[str, Any] = dict(model=name, seed=seed)
            if family == "mlp":
                changes["depth"] = depth
            if not residual:  # a plain net has no shortcut to choose
                changes["shortcut"] = None
            if not residual:
                changes["zero_init_residual"] = None  # a plain twin has no residual branch to start at zero
            if residual and family in ("cifar", "preact") and depth >= 110 and base.warmup_lr is None:
                # He et al. 2015 §4.2: for ResNet-110, lr 0.1 "is slightly too large to start converging", so
                # 0.01 until the training error is below 80%, then back to 0.1. (A per_model entry overrides it.)
                changes["warmup_lr"] = 0.01
            overrides = per_model.get(label, per_model.get(name, {}))
            config = replace(base, **{**changes, **overrides})
            runs.append(GridRun(name, family, residual, depth, seed, config, out / f"{label}-seed{seed}"))
    names = sorted({r.model for r in runs} | {r.run_dir.name.rsplit("-seed", 1)[0] for r in runs})
    unknown = [k for k in per_model if k not in names]
    if unknown:  # a typo would silently drop the change (e.g. a warm-up)
        raise ResxError(f"per_model names {unknown[0]!r}, which is no model of this grid; its models: {', '.join(names)}")
    return runs


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
) -> dict[str, Any]:
    """Train every run that is not finished (interrupted ones resume from their checkpoints), `concurrency`
    at a time on one device: on CUDA interleaved on streams of one process, on a CPU in worker processes that
    share the cores (engine/processes.py; default: one per core, the deepest runs first).
    Returns timing: wall seconds, images trained, aggregate images/s."""
    from resx.data import load_dataset
    from resx.engine import TrainingRun, resolve_device, train_many
    from resx.engine.device import cpu_count
    from resx.engine.run_folder import run_folder_state

    say = on_status or (lambda _msg: None)
    todo = []
    for run in runs:
        check_reusable(run)
        if run_folder_state(run.run_dir) == "finished":
            say(f"skip {run.label}: finished")
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
    if device.type == "cpu" and concurrency > 1:
        return {**info, **_run_on_cpu_workers(todo, concurrency, progress, say)}
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
                          resume_hint=RESUME_HINT)
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
                        say: Callable[[str], None]) -> dict[str, Any]:
    """The CPU pool: deepest (slowest) runs first, so the pool ends together; the cores split evenly unless the
    config sets threads."""
    from resx.engine.device import cpu_count
    from resx.engine.processes import Job, train_in_processes

    threads = todo[0].config.threads or max(1, cpu_count() // workers)
    jobs = [Job(r.config, r.run_dir, r.label) for r in sorted(todo, key=lambda r: -r.depth)]
    say(f"training {len(jobs)} run(s) in {workers} worker processes of {threads} thread(s) each")
    start = time.perf_counter()
    results = train_in_processes(jobs, workers=workers, threads_per_worker=threads, progress=progress,
                                 resume_hint=RESUME_HINT)
    wall = time.perf_counter() - start
    images = sum((r.iterations_after - r.iterations_before) * r.batch_size for r in results)
    return {"concurrency": workers, "threads_per_run": threads, "wall_seconds": round(wall, 2), "images": images,
            "images_per_second": round(images / max(wall, 1e-9), 1), "memory_mb_per_run": 0.0}
