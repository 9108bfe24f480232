"""resx's side of `resx bench`: its training step (data resident on the device, batch augmentation there) as a
measured method, and the concurrent runs.

  resx-eager-fp32  resx's step in fp32, NCHW, no graph: what the data path alone gives
  resx             resx's default engine: on CUDA the whole step as one CUDA graph, bf16 autocast, channels_last;
                   on a CPU bf16 autocast where the CPU computes bf16 natively, channels_last, every core
  resx-concurrent  `concurrency` resx runs at once (aggregate images/s): on CUDA one stream and graph each in this
                   process (`resx_streams`); on a CPU one worker process per run with an equal share of the cores
                   (`CpuProcesses`), as `compare-plain` trains a grid there (engine/processes.py)
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable

import torch

from resx.data import ImageData, load_dataset
from resx.engine.device import cpu_count, wants_channels_last
from resx.engine.step import TrainStep
from resx.models import create_model
from resx.studies.bench.timing import Measured


def resx_step(model: str, data: ImageData, device: torch.device, batch_size: int, *, graph: bool, precision: str,
              channels_last: bool = True, seed: int = 0) -> TrainStep:
    net = create_model(model, **data.model_options).to(device)
    if channels_last and wants_channels_last(net):
        net = net.to(memory_format=torch.channels_last)
    step = TrainStep(net.train(), data, batch_size=batch_size, momentum=0.9, weight_decay=1e-4, lr=0.1,
                     precision=precision, augment=data.augment, device=device, seed=seed)
    step.channels_last = step.channels_last and channels_last
    step.start_epoch()
    if graph and device.type == "cuda":
        step.capture_graph()
    return step


def _stepper(step: TrainStep) -> Callable[[], None]:
    """One step, starting a new epoch (new order, on the device) when the current one is used up."""
    count = [0]

    def run() -> None:
        if count[0] == step.steps_per_epoch:
            step.start_epoch()
            count[0] = 0
        step()
        count[0] += 1

    return run


def resx_method(model: str, data: ImageData, device: torch.device, batch_size: int, *, graph: bool, precision: str,
                channels_last: bool) -> Measured:
    step = resx_step(model, data, device, batch_size, graph=graph, precision=precision, channels_last=channels_last)
    return Measured(_stepper(step), device, batch_size)


def resx_streams(model: str, data: ImageData, device: torch.device, batch_size: int, precision: str,
                 concurrency: int) -> Measured:
    """CUDA: `concurrency` independent runs, each replaying its graph on its own stream, interleaved step by step."""
    streams = [torch.cuda.Stream(device) for _ in range(concurrency)]
    steppers = []
    for seed, stream in enumerate(streams):
        with torch.cuda.stream(stream):
            steppers.append(_stepper(resx_step(model, data, device, batch_size, graph=True, precision=precision,
                                               seed=seed)))

    def all_step() -> None:
        for stream, run in zip(streams, steppers):
            with torch.cuda.stream(stream):
                run()

    return Measured(all_step, device, batch_size * concurrency)


def _cpu_bench_worker(conn: Any, model: str, data_spec: str, data_dir: str | None, batch_size: int, precision: str,
                      threads: int, seed: int, seconds: float) -> None:
    """One of the CPU concurrent runs: builds its step, warms up, then answers ("run", seconds) with (steps, time)."""
    torch.set_num_threads(threads)
    data = load_dataset(data_spec, data_dir)
    method = resx_method(model, data, torch.device("cpu"), batch_size, graph=False, precision=precision,
                         channels_last=True)
    method.prepare(seconds)
    conn.send(("ready", method.seconds_per_step))
    while True:
        command, value = conn.recv()
        if command == "stop":
            return
        conn.send(method.measure(value))


class CpuProcesses(Measured):
    """A CPU: `concurrency` runs at once, one worker process each with an equal share of the cores."""

    def __init__(self, model: str, data_spec: str, data_dir: str | None, batch_size: int, precision: str,
                 concurrency: int):
        super().__init__(lambda: None, torch.device("cpu"), batch_size)
        ctx = mp.get_context("spawn")
        threads = max(1, cpu_count() // concurrency)
        self.threads, self.concurrency = threads, concurrency
        self.args = (model, data_spec, data_dir, batch_size, precision, threads)
        self.ctx, self.pipes, self.procs = ctx, [], []

    def prepare(self, seconds: float) -> None:
        for seed in range(self.concurrency):
            parent, child = self.ctx.Pipe()
            proc = self.ctx.Process(target=_cpu_bench_worker, args=(child, *self.args, seed, seconds), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            _, self.seconds_per_step = pipe.recv()

    def measure(self, seconds: float) -> tuple[int, float]:
        """Every worker runs about `seconds` at once; returns (total steps, the longest worker's time)."""
        for pipe in self.pipes:
            pipe.send(("run", seconds))
        results = [pipe.recv() for pipe in self.pipes]
        # aggregate rate = sum of each worker's rate; reported as steps over a common time
        rate = sum(steps / elapsed for steps, elapsed in results)
        wall = max(elapsed for _, elapsed in results)
        return round(rate * wall), wall

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
