"""`resx demo` / `make demo`: the degradation problem on a CPU in a few minutes.

Fully connected plain and residual nets of 6 and 50 layers (experiments/degradation-mlp.yaml) on Fashion-MNIST
when it is on this machine or can be downloaded, else on resx's built-in synthetic task, said so plainly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from resx.config import TrainConfig
from resx.errors import ResxError
from resx.studies.degradation.compare import CompareOptions, CompareResult, compare_plain

# 4 epochs at lr 0.1 (/10 at 50% and 75%). The residual MLPs start with their branches at zero (Goyal et al. 2017;
# `zero_init_residual`): without it the 50-layer residual MLP spends its first epochs near 50% training error and
# needs far longer than a demo has to catch up with the 6-layer one. Measured on 2 cores (synthetic fallback):
# ResNet-50 0.19% training error, ResNet-6 0.28%, plain-50 89%, plain-6 0.27%.
DEMO_TRAIN = dict(epochs=4, batch_size=128, lr=0.1, width=128, zero_init_residual=True)
DEMO_STUDY = dict(family="mlp", depths=[6, 50], seeds=1)
# Fallback: bigger than the test default so that the deep plain net has something to fail at.
SYNTHETIC = "synthetic:train=20000,test=2000,size=16,channels=1,classes=10"


def choose_data(data: str | None, data_dir: str | None, say: Callable[[str], None]) -> str:
    if data:
        return data
    from resx.data import load_dataset

    try:
        found = load_dataset("fashion-mnist", data_dir)
        say(f"data: Fashion-MNIST from {found.source}")
        return "fashion-mnist"
    except ResxError as e:
        say(f"Fashion-MNIST is not available ({e}).")
        say(f"Using resx's built-in SYNTHETIC task instead ({SYNTHETIC}): the effect is the same kind, the numbers are not Fashion-MNIST's.")
        return SYNTHETIC


def run_demo(
    out: str | Path = "demo-output",
    *,
    data: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: Callable | None = None,
    say: Callable[[str], None] = print,
) -> CompareResult:
    chosen = choose_data(data, data_dir, say)
    train = TrainConfig(data=chosen, data_dir=data_dir, device=device, seed=seed, **DEMO_TRAIN).validate()
    options = CompareOptions(**DEMO_STUDY, out=str(out), train=train)
    options.validate()
    say(f"demo: {options.describe()}")
    return compare_plain(options, progress=progress, on_status=say)
