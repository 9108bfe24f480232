"""Evaluating the training loss at one grid point, with its standard error.

Each point: the mean cross-entropy and the error on a fixed seeded subset of the TRAINING set (no augmentation),
in equal-size batches, with loss_se = std of the per-batch mean losses / sqrt(batches). BatchNorm: by default
eval mode with the trained running statistics (interpolation: the two nets' running statistics interpolated too);
with `bn_recalibrate` they are recomputed at every point (reset, cumulative average over the subset in training
mode, then eval). A freshly initialised net has no running statistics that describe data, so its points are
always recalibrated (noted in landscape_info.json and in the CSV's bn_recalibrate column).

Speed: the subset lives on the device already normalised (channels_last for conv nets), batches are large, fp32 by
default (bf16 autocast with `precision='bf16'` or 'auto': twice as fast on a CPU with native bf16, but its rounding
of the logits adds roughness near a minimum, where neighbouring points differ little), and the loss sums stay on
the device until one read-back per point. Cost: points x samples forward passes (twice that with BN
recalibration). Evaluating several weight sets at once with torch.func.functional_call + vmap was measured on this
project's 2-core CPU (ResNet-20, 256 images of 32x32, fp32, 4 weight sets, 3 repeats while another training shared
the cores): 3.1-5.9 s for the 4 sets one after another, 4.9-6.1 s with vmap; no gain (the CPU is compute-bound
either way), so it is not used. On a GPU a point of ResNet-56 over 8,192 images is already a few large batches;
vmap over weight sets might pay there only for tiny nets, and that was not measured. Measured per point on the
same busy CPU, 1024 images: ResNet-20 0.9 s in bf16 (batch 128), 1.8-3.3 s in fp32; resnet8 on 256 8x8 images
0.03 s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from resx.errors import ResxError
from resx.studies import common
from resx.studies.landscape.declare import BATCHES_PER_POINT, DEFAULT_SAMPLES, MAX_DEFAULT_BATCH

if TYPE_CHECKING:
    from resx.studies.landscape.targets import Target

SUBSET_STREAM = 1  # the subset's generator is seeded with seed * 1000 + 1; the directions' with seed itself


@dataclass
class Subset:
    """The fixed training subset on the device, normalised, in equal-size batches."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]
    samples: int
    batch_size: int
    index: torch.Tensor  # positions in the training set


def subset_size(requested: int | None, available: int, batch_size: int | None, device: torch.device,
                say: Callable[[str], None], min_batch: int = 1) -> tuple[int, int]:
    """(samples, batch size): the request (default 1024 on CPU, 8192 on CUDA) capped at the training set, and a
    batch size that splits it into equal batches (default samples / 8, at most 256 on CPU, 2048 on CUDA, at least
    `min_batch`: 2 where BN statistics are recalibrated, which needs two images a batch); a remainder that fills no
    batch is dropped, and `say` is told."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    samples = requested if requested is not None else DEFAULT_SAMPLES[kind]
    if samples > available:
        say(f"landscape: --samples {samples} is more than the {available} training images; using all {available}")
        samples = available
    why = "BatchNorm statistics are recalibrated on batches of the subset"
    if samples < min_batch:
        raise ResxError(f"--samples must be at least {min_batch} here, got {samples}: {why}")
    if batch_size is not None and batch_size < min_batch:
        raise ResxError(f"--batch-size must be at least {min_batch} here, got {batch_size}: {why}")
    if batch_size is None:
        batch_size = max(min_batch, min(MAX_DEFAULT_BATCH[kind], samples // BATCHES_PER_POINT))
    batch_size = min(batch_size, samples)
    used = (samples // batch_size) * batch_size
    if used != samples:
        say(f"landscape: {samples} samples do not fill batches of {batch_size}; using {used} "
            f"({samples // batch_size} equal batches, for the standard error)")
    return used, batch_size


def subset_indices(available: int, samples: int, seed: int) -> torch.Tensor:
    """The training images of the subset: the first `samples` of a permutation seeded with seed * 1000 + 1."""
    generator = torch.Generator().manual_seed(seed * 1000 + SUBSET_STREAM)
    return torch.randperm(available, generator=generator)[:samples]


def training_subset(data: Any, samples: int, batch_size: int, seed: int, device: torch.device,
                    channels_last: bool) -> Subset:
    """The subset's images normalised with the training set's mean and std, no augmentation, on `device`."""
    from resx.data import normalize

    index = subset_indices(len(data.train_images), samples, seed)
    shape = (1, data.channels, 1, 1)
    mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(shape)
    std = torch.tensor(data.std, dtype=torch.float32, device=device).view(shape)
    images = normalize(data.train_images[index].to(device), mean, std, channels_last=channels_last)
    labels = data.train_labels[index].to(device)
    batches = [(images[s:s + batch_size], labels[s:s + batch_size]) for s in range(0, samples, batch_size)]
    return Subset(batches, samples, batch_size, index)


def recalibrate_batchnorm(net: nn.Module, subset: Subset, device: torch.device, precision: str) -> None:
    """Recompute every BN's running statistics at the current weights on the subset's batches (under the study's
    autocast): reset, a cumulative average over the batches in training mode, then eval; nothing is learnt
    (resx.studies.common.calibrate_batchnorm)."""
    from resx.engine.device import autocast

    common.calibrate_batchnorm(net, [images for images, _ in subset.batches],
                               context=lambda: autocast(device, precision))


@dataclass
class Point:
    loss: float
    error: float
    loss_se: float
    seconds: float


@torch.no_grad()
def evaluate_subset(net: nn.Module, subset: Subset, device: torch.device, precision: str) -> tuple[float, float, float]:
    """(mean cross-entropy, error, standard error of the loss) of the eval-mode net on the subset: the loss is the
    mean of the per-batch mean losses (the batches are equal), loss_se their std / sqrt(batches) (NaN with one
    batch). One read-back from the device."""
    from resx.engine.device import autocast

    net.eval()
    losses = torch.empty(len(subset.batches), dtype=torch.float32, device=device)
    wrong = torch.zeros((), dtype=torch.int64, device=device)
    for k, (images, labels) in enumerate(subset.batches):
        with autocast(device, precision):
            logits = net(images)
        logits = logits.float()
        losses[k] = F.cross_entropy(logits, labels)
        wrong += (logits.argmax(dim=1) != labels).sum()
    means = losses.double().cpu()
    se = float(means.std() / math.sqrt(len(means))) if len(means) > 1 else float("nan")
    return float(means.mean()), int(wrong.cpu()) / subset.samples, se


def measure(target: Target, subset: Subset, x: float, y: float, device: torch.device, precision: str) -> Point:
    """One point of the surface: move the net there, recalibrate BN if the target wants it, evaluate."""
    started = time.perf_counter()
    target.mover.apply(target.net, x, y)
    if target.recalibrate:
        recalibrate_batchnorm(target.net, subset, device, precision)
    loss, error, se = evaluate_subset(target.net, subset, device, precision)
    return Point(loss, error, se, time.perf_counter() - started)
