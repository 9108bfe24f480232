"""What the training-speed benchmark declares (`resx bench`): its files and their CSV columns, its methods, and its
settings (checked before anything is measured). No torch, no pandas: every layer of the study may import it.
"""

import math
from dataclasses import dataclass

from resx.errors import ResxError
from resx.studies.registry import OutputFile, figure_files

BENCH_NAME = "bench.csv"
ROUNDS_NAME = "bench_rounds.csv"
INFO_NAME = "bench_info.json"

BENCH_COLUMNS = (
    "model", "method", "batch_size", "images_per_second", "peak_memory_mb", "concurrency", "device_name", "seconds",
    "images_per_second_min", "images_per_second_max", "rounds", "precision", "threads", "workers",
    "gflop_per_image", "gflops", "peak_gflops", "fraction_of_peak",
)
ROUND_COLUMNS = ("model", "method", "round", "position", "images_per_second", "steps", "seconds")

OUTPUTS = (
    OutputFile(BENCH_NAME, BENCH_COLUMNS, "median images/s per model and method, with min and max"),
    OutputFile(ROUNDS_NAME, ROUND_COLUMNS, "every timed round", marks_study=False),
    OutputFile(INFO_NAME, about="machine, settings, provenance, the common recipe's worker counts tried"),
    *figure_files("bench"),
)

METHODS = ("common-recipe", "resx-eager-fp32", "resx", "resx-concurrent")
DEFAULT_MODELS = "resnet20,resnet56,resnet110,plain56"
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
