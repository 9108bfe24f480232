"""`resx bench`: training images/s of the common recipe against resx's engine, measured in one process on one device.

Methods (one row each per model in bench.csv):
  common-recipe    torchvision CIFAR-style DataLoader, per-sample PIL transforms (RandomCrop(32, padding=4),
                   RandomHorizontalFlip, ToTensor, Normalize), eager fp32, torch.optim.SGD. On a CPU the DataLoader's
                   worker count is tried among 0, 1 and 2 and the fastest is used (column `workers`); on CUDA 4.
  resx-eager-fp32  resx's step (data resident on the device, batch augmentation there) in fp32, NCHW, no graph:
                   what the data path alone gives
  resx             resx's default engine: on CUDA the whole step as one CUDA graph, bf16 autocast, channels_last;
                   on a CPU bf16 autocast where the CPU computes bf16 natively, channels_last, every core
  resx-concurrent  `concurrency` resx runs at once (aggregate images/s): on CUDA one stream and graph each in this
                   process; on a CPU one worker process per run with an equal share of the cores, as
                   `compare-plain` trains a grid there (engine/processes.py)

How it is measured, so that figures are comparable and do not depend on the order of the methods:
  * every method is set up and warmed up once, the same way (WARMUP_STEPS steps, then a timed probe that sizes
    the measurement), and then measured in `rounds` interleaved rounds (the order of the methods rotates from one
    round to the next); bench.csv gives the median and the spread (min, max) of the rounds, bench_rounds.csv each;
  * a measurement runs the number of steps that the probe says take `seconds`, with no synchronisation or clock
    read in between, then synchronises once: `--seconds 1` takes about a second per method and round;
  * GFLOP/s counts 3 x 2 x the forward multiply-accumulates per image (forward, and a backward of twice the
    forward's work), beside the peak of this device measured with a large matmul in fp32 and in bf16
    (`fraction_of_peak` uses the peak of the precision the method computes in).
With no dataset given and none found, the benchmark falls back to CIFAR-shaped synthetic images and says so.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn.functional as F

from resx.atomic import write_csv_atomic, write_json_atomic
from resx.data import ImageData, load_dataset
from resx.engine.device import cpu_count, resolve_device, resolve_precision, wants_channels_last
from resx.engine.step import TrainStep
from resx.errors import ResxError
from resx.models import create_model
from resx.plugins.bench import BENCH_COLUMNS, ROUND_COLUMNS

# bench.csv's and bench_rounds.csv's columns are declared with the study (resx/plugins/bench.py)
METHODS = ("common-recipe", "resx-eager-fp32", "resx", "resx-concurrent")
WARMUP_STEPS = 3
# CIFAR-shaped stand-in when no dataset is at hand (enough images for a few epochs of batch 128 in memory).
SYNTHETIC_FALLBACK = "synthetic:size=32,channels=3,classes=10,train=5120,test=256"


@dataclass
class BenchSettings:
    models: list[str]
    batch_size: int = 128
    seconds: float = 10.0  # timed seconds per method, model and round (after warm-up)
    concurrency: int | None = None  # None: 4 on CUDA, one per core on a CPU
    methods: tuple[str, ...] = METHODS
    workers: int | None = None  # common recipe's DataLoader workers; None: the fastest of 0, 1, 2 on a CPU, 4 on CUDA
    rounds: int = 3
    threads: int | None = None  # CPU threads of the single-run methods (None: every core)

    def validate(self) -> "BenchSettings":
        if not self.models:
            raise ResxError("--models is empty; give at least one model name, e.g. --models resnet20,resnet56")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ResxError(f"unknown bench method {unknown[0]!r}; allowed: {', '.join(METHODS)}")
        if not self.methods:
            raise ResxError(f"--methods is empty; allowed: {', '.join(METHODS)}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ResxError(f"--seconds must be a finite positive number, got {self.seconds}")
        for name in ("batch_size", "rounds", "concurrency", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ResxError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.workers is not None and self.workers < 0:
            raise ResxError(f"--workers must be 0 or more, got {self.workers}")
        return self


# --- timing ---------------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Measured:
    """One method ready to run: `step` does one training step of `images_per_step` images. Warmed up and probed
    once (`prepare`), then measured any number of times (`measure`)."""

    def __init__(self, step: Callable[[], None], device: torch.device, images_per_step: int):
        self.step, self.device, self.images_per_step = step, device, images_per_step
        self.seconds_per_step = 0.0

    def prepare(self, seconds: float) -> None:
        for _ in range(WARMUP_STEPS):
            self.step()
        _sync(self.device)
        # Probe: enough steps for a tenth of the measurement (at least 2), to size the measurement.
        steps, start = 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - start < seconds / 10:
            self.step()
            steps += 1
            _sync(self.device)
        self.seconds_per_step = (time.perf_counter() - start) / steps

    def measure(self, seconds: float) -> tuple[int, float]:
        steps = max(1, round(seconds / max(self.seconds_per_step, 1e-9)))
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(self.device)
        elapsed = time.perf_counter() - start
        return steps, elapsed

    def close(self) -> None:
        pass


# --- the common recipe -------------------------------------------------------------------------------------------
class _PILDataset(torch.utils.data.Dataset):
    """The common recipe's dataset: one PIL image per sample, transformed one by one on the CPU."""

    def __init__(self, data: ImageData):
        import torchvision.transforms as T

        self.images, self.labels = data.train_images.cpu(), data.train_labels.cpu()
        size = tuple(data.train_images.shape[-2:])  # (H, W): ImageFolder images need not be square
        self.transform = T.Compose([
            T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(data.mean, data.std),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        array = self.images[i].permute(1, 2, 0).numpy()
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        return self.transform(image), int(self.labels[i])


def common_recipe(model: str, data: ImageData, device: torch.device, batch_size: int, workers: int) -> Measured:
    net = create_model(model, **data.model_options).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        _PILDataset(data), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
    )
    batches = iter(loader)

    def step() -> None:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return Measured(step, device, batch_size)


def fastest_workers(model: str, data: ImageData, device: torch.device, batch_size: int, seconds: float,
                    candidates: tuple[int, ...] = (0, 1, 2)) -> tuple[int, dict[int, float]]:
    """The common recipe's fastest DataLoader worker count among `candidates` (short trials), with each trial."""
    trials = {}
    for workers in candidates:
        method = common_recipe(model, data, device, batch_size, workers)
        method.prepare(seconds)
        steps, elapsed = method.measure(seconds)
        trials[workers] = steps * batch_size / elapsed
        del method
    return max(trials, key=trials.get), trials


# --- resx ----------------------------------------------------------------------------------------------------------
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


# --- arithmetic: what the model costs and what the device can do --------------------------------------------------
def forward_macs(model: str, data: ImageData) -> int:
    """Multiply-accumulates of one image's forward pass (convolutions and linear layers; what papers count)."""
    net = create_model(model, **data.model_options).eval()
    total = [0]

    def count(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros((1, *data.train_images.shape[1:])))
    for h in hooks:
        h.remove()
    return total[0]


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0, n: int = 2048) -> float:
    """Measured peak: GFLOP/s of repeated n x n matmuls in `dtype` on every thread of the device."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        torch.mm(a, b)
    _sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        steps += 1
        _sync(device)
    return 2 * n**3 * steps / (time.perf_counter() - start) / 1e9


# --- the benchmark -------------------------------------------------------------------------------------------------
def _peak_mb(device: torch.device, baseline: int = 0) -> float:
    """CUDA: the most memory the method held above `baseline`; CPU: the process's peak resident memory."""
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (kB on Linux)


def _reset_peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return 0


def bench_dataset(data: str | None, data_dir: str | None, say: Callable[[str], None]) -> tuple[str, ImageData]:
    """The dataset to measure on: `data`, else CIFAR-10, else (not found, not given) CIFAR-shaped synthetic images."""
    if data is not None:
        return data, load_dataset(data, data_dir)
    try:
        return "cifar10", load_dataset("cifar10", data_dir)
    except ResxError as e:
        say(f"cifar10 not found ({str(e).split(';')[0]}); measuring on CIFAR-shaped synthetic images instead "
            f"({SYNTHETIC_FALLBACK}); give --data to measure on a dataset")
        return SYNTHETIC_FALLBACK, load_dataset(SYNTHETIC_FALLBACK, data_dir)


def run_bench(
    settings: BenchSettings,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    seed: int = 0,
    out: str | Path = "results/bench",
    on_row: Callable[[dict], None] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> pd.DataFrame:
    """Measure every method for every model; write bench.csv, bench_rounds.csv, bench_info.json and the figure."""
    settings.validate()
    dev = resolve_device(device)
    from resx.models import get_model_spec
    from resx.provenance import device_name, environment

    for m in settings.models:
        get_model_spec(m)  # unknown names fail before anything is measured
    torch.manual_seed(seed)
    if dev.type == "cpu" and settings.threads:
        torch.set_num_threads(settings.threads)
    data_spec, dataset = bench_dataset(data, data_dir, say)
    on_device = dataset.to(dev)
    resident_mb = on_device.train_images.nbytes / 2**20 if dev.type == "cuda" else 0.0
    name = device_name(dev)
    fast_precision = resolve_precision("auto", dev)
    concurrency = settings.concurrency or (4 if dev.type == "cuda" else cpu_count())
    peaks = {"fp32": matmul_peak_gflops(dev, torch.float32), "bf16": matmul_peak_gflops(dev, torch.bfloat16)}
    say(f"device peak (large matmul): {peaks['fp32']:,.0f} GFLOP/s fp32, {peaks['bf16']:,.0f} GFLOP/s bf16")
    info: dict[str, Any] = {"data": data_spec, "peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
                            "rounds": settings.rounds, "seconds": settings.seconds, "batch_size": settings.batch_size,
                            "concurrency": concurrency, "threads": torch.get_num_threads(), "workers_trials": {},
                            **environment(dev)}
    rows, round_rows = [], []
    for model in settings.models:
        macs = forward_macs(model, dataset)
        gflop_per_image = 6 * macs / 1e9  # forward + backward (2x), 2 FLOP per multiply-accumulate
        workers = settings.workers
        if "common-recipe" in settings.methods and workers is None:
            if dev.type == "cpu":
                workers, trials = fastest_workers(model, dataset, dev, settings.batch_size, min(settings.seconds, 3.0))
                info["workers_trials"][model] = {str(k): round(v, 1) for k, v in trials.items()}
                say(f"{model}: common recipe's DataLoader workers tried: "
                    + ", ".join(f"{k}: {v:,.0f} img/s" for k, v in trials.items()) + f"; using {workers}")
            else:
                workers = 4
        precision_of = {"common-recipe": "fp32", "resx-eager-fp32": "fp32", "resx": fast_precision,
                        "resx-concurrent": fast_precision}
        built: dict[str, Measured] = {}
        baselines: dict[str, float] = {}
        try:
            for method in settings.methods:  # set up and warm up every method once, the same way
                baseline = _reset_peak(dev)
                if method == "common-recipe":
                    built[method] = common_recipe(model, dataset, dev, settings.batch_size, workers)
                elif method == "resx-eager-fp32":
                    built[method] = resx_method(model, on_device, dev, settings.batch_size, graph=False,
                                                precision="fp32", channels_last=False)
                elif method == "resx":
                    built[method] = resx_method(model, on_device, dev, settings.batch_size, graph=True,
                                                precision=fast_precision, channels_last=True)
                elif dev.type == "cuda":
                    built[method] = resx_streams(model, on_device, dev, settings.batch_size, fast_precision, concurrency)
                else:
                    built[method] = CpuProcesses(model, data_spec, data_dir, settings.batch_size, fast_precision,
                                                 concurrency)
                built[method].prepare(settings.seconds)
                baselines[method] = _peak_mb(dev, baseline) + (resident_mb if method != "common-recipe" else 0.0)
            measured: dict[str, list[float]] = {m: [] for m in settings.methods}
            spent: dict[str, float] = {m: 0.0 for m in settings.methods}
            order = list(settings.methods)
            for r in range(settings.rounds):
                shift = r % len(order)
                for position, method in enumerate(order[shift:] + order[:shift]):  # rotate: no method always first
                    steps, elapsed = built[method].measure(settings.seconds)
                    ips = steps * built[method].images_per_step / elapsed
                    measured[method].append(ips)
                    spent[method] += elapsed
                    round_rows.append(dict(model=model, method=method, round=r + 1, position=position + 1,
                                           images_per_second=round(ips, 1), steps=steps, seconds=round(elapsed, 3)))
        finally:
            for method in built.values():
                method.close()
        for method in settings.methods:
            values = measured[method]
            ips = statistics.median(values)
            precision = precision_of[method]
            is_concurrent = method == "resx-concurrent"
            threads = (built[method].threads if isinstance(built[method], CpuProcesses)
                       else torch.get_num_threads() if dev.type == "cpu" else None)
            row = dict(model=model, method=method, batch_size=settings.batch_size, images_per_second=round(ips, 1),
                       peak_memory_mb=round(baselines[method], 1), concurrency=concurrency if is_concurrent else 1,
                       device_name=name, seconds=round(spent[method], 2),
                       images_per_second_min=round(min(values), 1), images_per_second_max=round(max(values), 1),
                       rounds=len(values), precision=precision, threads=threads,
                       workers=workers if method == "common-recipe" else None,
                       gflop_per_image=round(gflop_per_image, 4), gflops=round(ips * gflop_per_image, 1),
                       peak_gflops=round(peaks[precision], 1),
                       fraction_of_peak=round(ips * gflop_per_image / peaks[precision], 4))
            rows.append(row)
            if on_row:
                on_row(row)
    frame = pd.DataFrame(rows, columns=BENCH_COLUMNS)
    out = Path(out)
    write_csv_atomic(out / "bench.csv", frame)
    write_csv_atomic(out / "bench_rounds.csv", pd.DataFrame(round_rows, columns=ROUND_COLUMNS))
    write_json_atomic(out / "bench_info.json", info)
    from resx.plots import plot_bench

    plot_bench(out)
    return frame


def speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: resx over the common recipe, and concurrent over single resx."""
    wide = frame.pivot_table(index="model", columns="method", values="images_per_second")
    result = pd.DataFrame(index=wide.index)
    if {"resx", "common-recipe"} <= set(wide.columns):
        result["resx_vs_common"] = wide["resx"] / wide["common-recipe"]
    if {"resx-concurrent", "common-recipe"} <= set(wide.columns):
        result["concurrent_vs_common"] = wide["resx-concurrent"] / wide["common-recipe"]
    if {"resx", "resx-concurrent"} <= set(wide.columns):
        result["concurrent_vs_single"] = wide["resx-concurrent"] / wide["resx"]
    return result.reset_index()
