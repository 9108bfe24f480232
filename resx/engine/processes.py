"""Several runs at once on a CPU: one worker process per run slot, each with its share of the cores.

On a CPU, two runs with one thread each train more images per second than one run with two threads: the small
convolutions of the CIFAR nets do not keep two cores busy, and every op pays a thread fork/join (measured on a
2-core Xeon with native bf16, ResNet-20 at batch 128: 1,240 images/s for two one-thread runs together against
1,050 for one two-thread run; `resx bench` measures it on any machine). Interleaving steps in one process (as
`train_many` does for CUDA streams) cannot use a second core, so each run slot is a process.

Each worker pulls jobs (a config and a run folder) from a queue and trains them with the ordinary engine
(`TrainingRun`), so run folders, checkpoints and resumption are exactly those of a single run. Workers report
progress, results and errors to the parent through a queue; the parent forwards Ctrl-C and SIGTERM to them,
each worker checkpoints its run and stops, and the parent raises TrainingInterrupted. A worker whose run fails
(a diverged loss, a bad dataset) stops the others the same way and its message is raised in the parent.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from resx.config import TrainConfig
from resx.errors import ResxError, TrainingDiverged, TrainingInterrupted


@dataclass(frozen=True)
class Job:
    config: TrainConfig
    run_dir: Path
    name: str


@dataclass
class JobResult:
    name: str
    iterations_before: int
    iterations_after: int
    batch_size: int
    memory_mb: float = 0.0


def _worker(jobs: Any, events: Any, threads: int, progress_every: int, divergence_is_a_result: bool = False) -> None:
    """A worker process: train jobs until the queue says stop (None). With `divergence_is_a_result`, a run whose
    loss becomes NaN or infinite is reported (its run_info.json says where) and the worker takes the next job."""
    from resx.engine import interrupt

    interrupt.never_escalate()  # the parent forwards signals: a repeated one must not abort a step
    # Outside a run's training loop (which installs its own handler) signals are ignored: the parent repeats its
    # request until every worker has stopped, so one that arrives during a run's set-up is not lost.
    for sig in interrupt.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    # A parent killed outright (SIGKILL, an out-of-memory kill) cannot stop its workers: each watches for it and
    # then stops itself as after Ctrl-C, checkpointing its run, instead of training on unseen and holding its lock.
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    import torch

    from resx.data import load_dataset
    from resx.engine.driver import train_many
    from resx.engine.run import TrainingRun

    torch.set_num_threads(threads)
    datasets: dict[tuple[str, str | None], Any] = {}
    while True:
        job = jobs.get()
        if job is None:
            return
        try:
            key = (job.config.data, job.config.data_dir)
            if key not in datasets:
                datasets.clear()  # one dataset in memory at a time
                datasets[key] = load_dataset(*key)
            run = TrainingRun(job.config, job.run_dir, resume="auto", data=datasets[key], name=job.name)
            before = run.host_iteration
            events.put(("started", job.name, _progress_fields(run), None))

            def report(r: Any, row: dict | None) -> None:
                events.put(("progress", job.name, _progress_fields(r), row))

            train_many([run], progress=report, progress_every=progress_every)
            if run.status != "finished":
                run.status = "finished"
                run._write_info()
            events.put(("done", job.name, _progress_fields(run),
                        JobResult(job.name, before, run.host_iteration, run.config.batch_size, run.memory_mb)))
        except TrainingInterrupted as e:
            events.put(("interrupted", job.name, None, str(e)))
            return
        except TrainingDiverged as e:
            if not divergence_is_a_result:
                events.put(("error", job.name, None, str(e)))
                return
            run.release_lock()  # its folder is final: status diverged, the last good checkpoint kept
            events.put(("diverged", job.name, None, str(e)))
        except ResxError as e:
            events.put(("error", job.name, None, str(e)))
            return
        except BaseException:  # a bug: keep its traceback for the parent to show
            events.put(("crash", job.name, None, traceback.format_exc()))
            return


def _stop_when_orphaned(parent: int, every: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    while True:  # repeated: a signal that lands while a run is being set up is ignored (see _worker)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(every)


def _progress_fields(run: Any) -> dict[str, Any]:
    return dict(name=run.name, host_iteration=run.host_iteration, total_iterations=run.total_iterations,
                total_epochs=run.total_epochs)


def train_in_processes(
    jobs: list[Job],
    *,
    workers: int,
    threads_per_worker: int = 1,
    progress: Callable | None = None,
    progress_every: int = 50,
    resume_hint: str = "run the same command again to continue",
    diverged: list[tuple[str, str]] | None = None,
) -> list[JobResult]:
    """Train `jobs` with `workers` processes of `threads_per_worker` threads each (jobs are taken in order: put
    the longest first). Returns one result per finished job. Raises TrainingInterrupted on Ctrl-C or SIGTERM
    (every worker checkpoints first) and ResxError when a run fails.

    The workers are started with multiprocessing's "spawn": each re-imports the `__main__` module, so a script
    that calls this (directly or through compare_plain or reproduce) must do so under `if __name__ == "__main__":`.
    Notebooks and the `resx` command need nothing.

    `diverged`: a list to collect (name, message) of the runs whose loss became NaN or infinite, which are then
    results (a study of variants that may not train, He et al. 2016 Table 1) instead of errors that stop the rest."""
    if workers < 1:
        raise ResxError(f"workers must be at least 1, got {workers}")
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited torch thread pools or locks
    job_queue, events = ctx.Queue(), ctx.Queue()
    for job in jobs:
        job_queue.put(job)
    count = min(workers, len(jobs))
    for _ in range(count):
        job_queue.put(None)
    procs = [ctx.Process(target=_worker, args=(job_queue, events, threads_per_worker, progress_every, diverged is not None),
                         daemon=True)
             for _ in range(count)]
    stop_requested: list[str] = []

    def forward(signum, frame) -> None:
        if stop_requested and signum == signal.SIGINT:  # a second Ctrl-C in the parent: stop waiting
            raise KeyboardInterrupt
        stop_requested.append(signal.Signals(signum).name)
        _signal_all(procs, signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    results: list[JobResult] = []
    failures: list[tuple[str, str, str]] = []
    interrupted: list[str] = []
    views: dict[str, SimpleNamespace] = {}
    drained: list[bool] = []
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs) or not events.empty():
            try:
                kind, name, fields, payload = events.get(timeout=0.5)
            except queue_module.Empty:
                if stop_requested or failures:
                    if not drained:
                        _drain(job_queue, count)
                        drained.append(True)
                    _signal_all(procs, signal.SIGINT)  # repeated until each worker is in its loop and stops
                continue
            if fields is not None:
                view = views.setdefault(name, SimpleNamespace())
                view.__dict__.update(fields)
                if progress and kind in ("started", "progress", "done"):
                    progress(view, payload if kind == "progress" else None)
            if kind == "done":
                results.append(payload)
            elif kind == "interrupted":
                interrupted.append(payload)
            elif kind == "diverged" and diverged is not None:
                diverged.append((name, payload))
            elif kind in ("error", "crash"):
                failures.append((kind, name, payload))
                _signal_all(procs, signal.SIGINT)  # the others checkpoint and stop
        for p in procs:
            p.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failures:
        kind, name, message = failures[0]
        if kind == "crash":
            raise RuntimeError(f"run {name} failed in its worker process:\n{message}")
        raise ResxError(message)
    if stop_requested or interrupted:
        by = (stop_requested or ["SIGINT"])[0]
        what = "interrupted" if by == "SIGINT" else f"stopped by {by}"
        raise TrainingInterrupted(f"{what}; every running run saved a checkpoint; {resume_hint}",
                                  exit_code=143 if by == "SIGTERM" else 130)
    lost = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if lost:
        raise ResxError(f"a worker process died (exit code {lost[0]}); run the same command again to continue (a script "
                        "that calls resx's CPU grid must start it under `if __name__ == '__main__':`, since the "
                        "workers re-import the script)")
    return results


def _drain(job_queue: Any, workers: int) -> None:
    """Take the jobs not yet started off the queue, leaving one stop marker per worker."""
    while True:
        try:
            job_queue.get_nowait()
        except queue_module.Empty:
            break
    for _ in range(workers):
        job_queue.put(None)


def _signal_all(procs: list[Any], signum: int) -> None:
    for p in procs:
        if p.pid is not None and p.is_alive():
            try:
                os.kill(p.pid, signum)
            except ProcessLookupError:
                pass
