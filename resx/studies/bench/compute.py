"""`resx bench`: training images/s of the common recipe against resx's engine, measured in one process on one device.

Methods (one row each per model in bench.csv): common-recipe (common_recipe.py: DataLoader + per-sample PIL
transforms, eager fp32), resx-eager-fp32, resx and resx-concurrent (resx_methods.py). How each is timed:
timing.py; the GFLOP/s and the device's peak: flops.py.

This module runs them: every method is set up and warmed up once, the same way, and then measured in `rounds`
interleaved rounds (the order of the methods rotates from one round to the next); bench.csv gives the median and
the spread (min, max) of the rounds, bench_rounds.csv each round, bench_info.json the machine, the settings, the
provenance block and the common recipe's worker trials. `fraction_of_peak` uses the peak of the precision the
method computes in. With no dataset given and none found, the benchmark falls back to CIFAR-shaped synthetic images
and says so.

Library entry point: `run_bench(BenchSettings(...), ...)`; no typer or rich here: messages and rows are callbacks.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from resx.atomic import write_csv_atomic, write_json_atomic
from resx.data import ImageData, load_dataset
from resx.engine.device import cpu_count, resolve_device, resolve_precision
from resx.errors import ResxError
from resx.studies.bench.common_recipe import common_recipe, fastest_workers
from resx.studies.bench.declare import (BENCH_COLUMNS, BENCH_NAME, INFO_NAME, METHODS, ROUND_COLUMNS, ROUNDS_NAME,
                                        SYNTHETIC_FALLBACK, BenchSettings)
from resx.studies.bench.flops import forward_macs, matmul_peak_gflops, training_gflop_per_image
from resx.studies.bench.resx_methods import CpuProcesses, resx_method, resx_streams
from resx.studies.bench.timing import Measured, peak_mb, reset_peak

__all__ = ["BenchSettings", "METHODS", "SYNTHETIC_FALLBACK", "bench_dataset", "forward_macs", "run_bench", "speedups"]


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
    from resx.provenance import device_name, environment, provenance

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
    precision_of = {"common-recipe": "fp32", "resx-eager-fp32": "fp32", "resx": fast_precision,
                    "resx-concurrent": fast_precision}
    concurrency = settings.concurrency or (4 if dev.type == "cuda" else cpu_count())
    peaks = {"fp32": matmul_peak_gflops(dev, torch.float32), "bf16": matmul_peak_gflops(dev, torch.bfloat16)}
    say(f"device peak (large matmul): {peaks['fp32']:,.0f} GFLOP/s fp32, {peaks['bf16']:,.0f} GFLOP/s bf16")
    # the methods compute in different precisions (bench.csv's `precision` says which); the block names them all
    precisions = " and ".join(dict.fromkeys(precision_of[m] for m in settings.methods))
    info: dict[str, Any] = {"data": data_spec, "peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
                            "rounds": settings.rounds, "seconds": settings.seconds, "batch_size": settings.batch_size,
                            "concurrency": concurrency, "threads": torch.get_num_threads(), "workers_trials": {},
                            **environment(dev),
                            "provenance": provenance(dev, precisions, torch.get_num_threads())}
    rows, round_rows = [], []
    for model in settings.models:
        gflop_per_image = training_gflop_per_image(forward_macs(model, dataset))
        workers = settings.workers
        if "common-recipe" in settings.methods and workers is None:
            if dev.type == "cpu":
                workers, trials = fastest_workers(model, dataset, dev, settings.batch_size, min(settings.seconds, 3.0))
                info["workers_trials"][model] = {str(k): round(v, 1) for k, v in trials.items()}
                say(f"{model}: common recipe's DataLoader workers tried: "
                    + ", ".join(f"{k}: {v:,.0f} img/s" for k, v in trials.items()) + f"; using {workers}")
            else:
                workers = 4
        built: dict[str, Measured] = {}
        baselines: dict[str, float] = {}
        try:
            for method in settings.methods:  # set up and warm up every method once, the same way
                baseline = reset_peak(dev)
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
                baselines[method] = peak_mb(dev, baseline) + (resident_mb if method != "common-recipe" else 0.0)
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
    write_csv_atomic(out / BENCH_NAME, frame)
    write_csv_atomic(out / ROUNDS_NAME, pd.DataFrame(round_rows, columns=ROUND_COLUMNS))
    write_json_atomic(out / INFO_NAME, info)
    from resx.studies.bench.draw import plot_bench

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
