"""How `resx bench` times a method, so that figures are comparable and do not depend on the order of the methods:
every method is a `Measured` step, set up and warmed up once the same way (WARMUP_STEPS steps, then a timed probe
that sizes the measurement), then measured any number of times. A measurement runs the number of steps that the
probe says take `seconds`, with no synchronisation or clock read in between, then synchronises once. Also the
peak memory a method holds.
"""

from __future__ import annotations

import resource
import time
from typing import Callable

import torch

from resx.studies.bench.declare import WARMUP_STEPS


def sync(device: torch.device) -> None:
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
        sync(self.device)
        # Probe: enough steps for a tenth of the measurement (at least 2), to size the measurement.
        steps, start = 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - start < seconds / 10:
            self.step()
            steps += 1
            sync(self.device)
        self.seconds_per_step = (time.perf_counter() - start) / steps

    def measure(self, seconds: float) -> tuple[int, float]:
        steps = max(1, round(seconds / max(self.seconds_per_step, 1e-9)))
        sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        elapsed = time.perf_counter() - start
        return steps, elapsed

    def close(self) -> None:
        pass


# --- memory --------------------------------------------------------------------------------------------------------
def peak_mb(device: torch.device, baseline: int = 0) -> float:
    """CUDA: the most memory the method held above `baseline`; CPU: the process's peak resident memory."""
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (kB on Linux)


def reset_peak(device: torch.device) -> int:
    """Start counting a method's peak memory afresh; returns what is held already (CUDA; 0 on a CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return 0
