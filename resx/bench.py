"""`resx bench`: training images/s of the common recipe against resx's engine, measured in one process on one device.

Methods (one row each per model in bench.csv: model, method, batch_size, images_per_second, peak_memory_mb):
  common-recipe    torchvision CIFAR-style DataLoader, per-sample PIL transforms (RandomCrop(32, padding=4),
                   RandomHorizontalFlip, ToTensor, Normalize), 4 workers, eager fp32, torch.optim.SGD
  resx-eager-fp32  resx's step (data on the device, batch augmentation there) without graph or bf16
  resx             resx's default engine: on CUDA the whole step as one CUDA graph, bf16 autocast, channels_last
  resx-concurrent  `concurrency` resx runs at once, one CUDA stream and graph each (aggregate images/s)
REFERENCE.md §6 has what these measured on an H100. Throughput is timed after warm-up, synchronising only at the
ends of the timed window.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from resx.atomic import write_csv_atomic
from resx.data import ImageData, load_dataset
from resx.engine.device import resolve_device, resolve_precision
from resx.engine.step import TrainStep
from resx.errors import ResxError
from resx.models import create_model

BENCH_COLUMNS = ["model", "method", "batch_size", "images_per_second", "peak_memory_mb", "concurrency", "device_name", "seconds"]
METHODS = ("common-recipe", "resx-eager-fp32", "resx", "resx-concurrent")


@dataclass
class BenchSettings:
    models: list[str]
    batch_size: int = 128
    seconds: float = 10.0  # timed seconds per method and model (after warm-up)
    concurrency: int = 4
    methods: tuple[str, ...] = METHODS
    workers: int = 4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device, baseline: int = 0) -> float:
    """CUDA: the most memory the method held above `baseline` (bytes allocated before it started); CPU: the
    process's peak resident memory."""
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (kB on Linux)


def _reset_peak(device: torch.device) -> int:
    """Start a new peak measurement; returns the bytes allocated now (CUDA), the baseline for `_peak_mb`."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return 0


def _timed(step: Callable[[], None], device: torch.device, seconds: float, warmup: int = 3) -> tuple[int, float]:
    """Run `step` for about `seconds` after warm-up; returns (steps, elapsed). Synchronises only at the ends
    and every 10 steps to check the clock (a few syncs cost nothing next to the steps they measure)."""
    for _ in range(warmup):
        step()
    _sync(device)
    start, steps = time.perf_counter(), 0
    while True:
        for _ in range(10):
            step()
        steps += 10
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps, elapsed


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


def bench_common_recipe(model: str, data: ImageData, device: torch.device, s: BenchSettings) -> float:
    net = create_model(model, **data.model_options).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        _PILDataset(data), batch_size=s.batch_size, shuffle=True, drop_last=True, num_workers=s.workers,
        pin_memory=device.type == "cuda", persistent_workers=s.workers > 0,
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

    steps, elapsed = _timed(step, device, s.seconds)
    return steps * s.batch_size / elapsed


def _resx_step(model: str, data: ImageData, device: torch.device, s: BenchSettings, *, graph: bool, precision: str,
               seed: int = 0) -> TrainStep:
    net = create_model(model, **data.model_options).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    step = TrainStep(net.train(), data, batch_size=s.batch_size, momentum=0.9, weight_decay=1e-4, lr=0.1,
                     precision=precision, augment=data.augment, device=device, seed=seed)
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


def bench_resx(model: str, data: ImageData, device: torch.device, s: BenchSettings, *, graph: bool, precision: str) -> float:
    step = _resx_step(model, data, device, s, graph=graph, precision=precision)
    steps, elapsed = _timed(_stepper(step), device, s.seconds)
    return steps * s.batch_size / elapsed


def bench_resx_concurrent(model: str, data: ImageData, device: torch.device, s: BenchSettings, precision: str) -> float:
    """`concurrency` independent runs, each replaying its graph on its own stream, interleaved step by step."""
    streams = [torch.cuda.Stream(device) if device.type == "cuda" else None for _ in range(s.concurrency)]
    steppers = []
    for seed, stream in enumerate(streams):
        with torch.cuda.stream(stream) if stream is not None else _null():
            steppers.append(_stepper(_resx_step(model, data, device, s, graph=True, precision=precision, seed=seed)))

    def all_step() -> None:
        for stream, run in zip(streams, steppers):
            if stream is not None:
                with torch.cuda.stream(stream):
                    run()
            else:
                run()

    steps, elapsed = _timed(all_step, device, s.seconds)
    return steps * s.batch_size * s.concurrency / elapsed


def _null():
    import contextlib

    return contextlib.nullcontext()


def run_bench(
    settings: BenchSettings,
    *,
    data: str = "cifar10",
    data_dir: str | None = None,
    device: str = "auto",
    seed: int = 0,
    out: str | Path = "results/bench",
    on_row: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Measure every method for every model; write bench.csv (and the figure) into `out`."""
    unknown = [m for m in settings.methods if m not in METHODS]
    if unknown:
        raise ResxError(f"unknown bench method {unknown[0]!r}; allowed: {', '.join(METHODS)}")
    if settings.seconds <= 0 or settings.batch_size < 1 or settings.concurrency < 1:
        raise ResxError("--seconds, --batch-size and --concurrency must be positive")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    dataset = load_dataset(data, data_dir)
    on_device = dataset.to(dev)
    # resx keeps the training set on the GPU: count it in resx's memory, not in the common recipe's.
    resident_mb = on_device.train_images.nbytes / 2**20 if dev.type == "cuda" else 0.0
    from resx.models import get_model_spec
    from resx.provenance import device_name

    for m in settings.models:
        get_model_spec(m)  # unknown names fail before anything is measured
    name = device_name(dev)
    fast_precision = resolve_precision("auto", dev)
    rows = []
    for model in settings.models:
        for method in settings.methods:
            baseline = _reset_peak(dev)
            start = time.perf_counter()
            if method == "common-recipe":
                ips = bench_common_recipe(model, dataset, dev, settings)
            elif method == "resx-eager-fp32":
                ips = bench_resx(model, on_device, dev, settings, graph=False, precision="fp32")
            elif method == "resx":
                ips = bench_resx(model, on_device, dev, settings, graph=True, precision=fast_precision)
            else:
                ips = bench_resx_concurrent(model, on_device, dev, settings, fast_precision)
            peak_mb = _peak_mb(dev, baseline) + (resident_mb if method != "common-recipe" else 0.0)
            row = dict(model=model, method=method, batch_size=settings.batch_size, images_per_second=round(ips, 1),
                       peak_memory_mb=round(peak_mb, 1),
                       concurrency=settings.concurrency if method == "resx-concurrent" else 1,
                       device_name=name, seconds=round(time.perf_counter() - start, 2))
            rows.append(row)
            if on_row:
                on_row(row)
    frame = pd.DataFrame(rows, columns=BENCH_COLUMNS)
    out = Path(out)
    write_csv_atomic(out / "bench.csv", frame)
    from resx.plots import plot_bench

    plot_bench(out)
    return frame


def speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: resx over the common recipe, and concurrent over single resx."""
    wide = frame.pivot_table(index="model", columns="method", values="images_per_second")
    result = pd.DataFrame(index=wide.index)
    if {"resx", "common-recipe"} <= set(wide.columns):
        result["resx_vs_common"] = wide["resx"] / wide["common-recipe"]
    if {"resx", "resx-concurrent"} <= set(wide.columns):
        result["concurrent_vs_single"] = wide["resx-concurrent"] / wide["resx"]
    return result.reset_index()
