"""Training runs to the end: `train_many` interleaves built runs (on CUDA each on its own stream), with a queue of
more to start and Ctrl-C/SIGTERM saving every active run; `train` is `resx train`'s library entry point."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from resx.config import TrainConfig
from resx.data import ImageData
from resx.engine.interrupt import DeferredInterrupt
from resx.engine.run import ProgressFn, TrainingRun
from resx.errors import OutputError, TrainingDiverged, TrainingInterrupted


def train_many(
    runs: Sequence[TrainingRun],
    *,
    progress: ProgressFn | None = None,
    progress_every: int = 50,
    queue: Sequence[Callable[[], TrainingRun]] = (),
    concurrency: int | None = None,
    resume_hint: str = "run the same command with --resume to continue",
    on_diverged: Callable[[TrainingRun, str], None] | None = None,
) -> list[TrainingRun]:
    """Train runs (built TrainingRuns), interleaving their steps so that on CUDA each run's graph replays
    on its own stream while the others run (several small nets fill one GPU better than one). On the CPU the
    steps simply alternate. Each run moves on to its next epoch as soon as it finishes one, so a fast net never
    waits for a slow one. `queue` holds more runs to start (callables that build a TrainingRun): whenever a run
    finishes, the next one joins, keeping `concurrency` runs going. Ctrl-C saves every active run and raises
    TrainingInterrupted (its message ends with `resume_hint`). SIGTERM is treated like Ctrl-C. A run whose loss
    becomes NaN or infinite raises TrainingDiverged, or, given `on_diverged`, is handed to it and leaves the pool
    while the others go on (its run_info.json says where it diverged). Returns every run trained, in the order they
    started."""
    queue = list(queue)
    limit = concurrency or max(1, len(runs))
    started = list(runs)
    active = [r for r in runs if not r.done]
    for run in runs:
        if run.done and run.status != "finished":  # resumed after its last epoch: nothing to train, say so
            run.status = "finished"
            run._write_info()

    def refill() -> None:
        while queue and len(active) < limit:
            run = queue.pop(0)()
            started.append(run)
            if progress:
                progress(run, None)
            if not run.done:
                active.append(run)
            else:
                if run.status != "finished":  # killed after its last checkpoint but before run_info said so
                    run.status = "finished"
                    run._write_info()
                run.release_lock()

    refill()
    generators = {id(r): r.steps() for r in active}
    count = 0
    with DeferredInterrupt() as interrupt:
        while active:
            for run in list(active):
                try:
                    next(generators[id(run)])
                    interrupt.pause_point(run.name, run.host_iteration)  # a test hook; nothing unless asked
                    continue
                except StopIteration:
                    pass
                try:
                    row = run.finish_epoch()
                except TrainingDiverged as e:
                    if on_diverged is None:
                        raise
                    active.remove(run)
                    run.release_graphs()
                    run.release_lock()
                    on_diverged(run, str(e))
                    refill()
                    for new in active:
                        generators.setdefault(id(new), new.steps())
                    continue
                except OutputError:
                    # its folder cannot be written (disk full, permissions): this run failed; the others stop with
                    # a checkpoint where they can still write one. The last good checkpoints stay.
                    run.mark_failed()
                    for other in active:
                        if other is not run:
                            other.stop_after_fault()
                    raise
                if progress:
                    progress(run, row)
                if run.done:
                    active.remove(run)
                    run.release_graphs()
                    run.release_lock()  # its files are final: the folder is free for others
                    refill()
                    for new in active:
                        generators.setdefault(id(new), new.steps())
                else:
                    generators[id(run)] = run.steps()
            count += 1
            if progress and count % progress_every == 0:
                for run in active:
                    progress(run, None)
            if interrupt.requested:
                for run in active:
                    run.save_interrupted()
                names = ", ".join(str(r.run_dir) for r in active)
                what = "interrupted" if interrupt.signal_name == "SIGINT" else f"stopped by {interrupt.signal_name}"
                raise TrainingInterrupted(f"{what}; checkpoints saved in {names}; {resume_hint}",
                                          exit_code=128 + signal.Signals[interrupt.signal_name].value)
    return started


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: str = "never",
    overwrite: bool = False,
    data: ImageData | None = None,
    progress: ProgressFn | None = None,
) -> TrainingRun:
    """Train one model (library entry point of `resx train`). Returns the finished run (metrics in `.metrics`)."""
    run = TrainingRun(config, run_dir, resume=resume, overwrite=overwrite, data=data)
    try:
        if progress:
            progress(run, None)
        train_many([run], progress=progress)
        if run.status != "finished":  # resumed a finished run: nothing to do, but say so in run_info
            run.status = "finished"
            run._write_info()
    finally:
        run.release_lock()
    return run
