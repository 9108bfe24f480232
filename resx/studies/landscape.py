"""Loss landscapes (Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets",
NeurIPS; Fig. 1 and Fig. 5: ResNet-56 is smooth and nearly convex around its minimum, the same net without
shortcuts chaotic).

The training loss is measured on a grid of weights around a net's weights theta:
    random       f(x, y) = L(theta + x d1 + y d2) (dims 2) or f(x) = L(theta + x d1) (dims 1), d1 and d2 random
                 Gaussian directions drawn from a torch.Generator seeded by `seed`, parameter by parameter in the
                 net's parameter order (d1 whole, then d2), so a residual net and its plain twin (identical
                 parameter shapes: resnet56/plain56, mlp_res/mlp_plain) get identical raw directions. Normalised as
                 `norm` says (Li et al. §4):
                   filter  each filter of the direction (an output channel of a conv weight, a row of a linear
                           weight) rescaled to the norm of the same filter of theta: d_ij <- d_ij / |d_ij| |theta_ij|
                   layer   each whole parameter tensor rescaled to the norm of theta's tensor
                   none    the raw Gaussian (every parameter, 1-D ones included)
                 With filter and layer, 1-D parameters (BatchNorm weights and biases, every bias) get a zero
                 direction, as Li et al. do ("ignore biasbn"): they stay at their trained values.
    interpolate  f(a) = L((1 - a) theta0 + a theta1), a over the span (Goodfellow et al. 2015, Li et al. §3):
                 between two runs (e.g. two seeds), or with --init and one run from the freshly initialised net
                 (seed) to the trained one. torch.lerp is exact at both ends.

Each point: the mean cross-entropy and the error on a fixed seeded subset of the TRAINING set (no augmentation),
in equal-size batches, with loss_se = std of the per-batch mean losses / sqrt(batches). BatchNorm: by default
eval mode with the trained running statistics (interpolation: the two nets' running statistics interpolated
too, Li et al.'s "states" directions, the variance clamped at 0 beyond the ends); with `bn_recalibrate` they are
recomputed at every point (reset, cumulative average over the subset in training mode, then eval). A freshly
initialised net has no running statistics that describe data, so its points are always recalibrated (noted in
landscape_info.json and in the CSV's bn_recalibrate column).

Speed: one model per run; its weights are written in place for each point (theta + x d1 + y d2 under no_grad,
no new module), the subset lives on the device already normalised (channels_last for conv nets), batches are
large, fp32 by default (bf16 autocast with `precision='bf16'` or 'auto': twice as fast on a CPU with native bf16,
but its rounding of the logits adds roughness near a minimum, where neighbouring points differ little), and the loss
sums stay on the device until one read-back per point. Cost: points x samples forward passes (twice that with
BN recalibration); `say` gets the cost up front and an estimate from the measured first point (the centre).
Evaluating several weight sets at once with torch.func.functional_call + vmap was measured on this project's
2-core CPU (ResNet-20, 256 images of 32x32, fp32, 4 weight sets, 3 repeats while another training shared the
cores): 3.1-5.9 s for the 4 sets one after another, 4.9-6.1 s with vmap; no gain (the CPU is compute-bound either
way), so it is not used. On a GPU a point of ResNet-56 over 8,192 images is already a few large batches; vmap over
weight sets might pay there only for tiny nets, and that was not measured. Measured per point on the same busy
CPU, 1024 images: ResNet-20 0.9 s in bf16 (batch 128), 1.8-3.3 s in fp32; resnet8 on 256 8x8 images 0.03 s.

Resumable and shardable (like compare-plain's --shard): point p of the grid (row-major, x slowest) belongs to
shard I of N when p % N == I - 1; points already in landscape.csv for a run are skipped. The CSV and
landscape_info.json are merged and rewritten atomically under a lock every few seconds (so shards may run at
once on one file system) and at the end; landscape_info.json's settings must match an existing --out's.

Library entry point: `run_landscape(...)`; no typer or rich here (progress and messages are callbacks).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from resx.atomic import check_output_folder, write_csv_atomic, write_json_atomic
from resx.errors import ResxError
from resx.plots.landscape import CSV_NAME, EXTRA_COLUMNS, surface_metrics
from resx.plugins.landscape import CSV_COLUMNS, INFO_NAME  # declared with the study
from resx.labels import unique_label
from resx.studies import common, guards

DIMS = (1, 2)
DIRECTIONS = ("random", "interpolate")
NORMS = ("filter", "layer", "none")
DEFAULT_SAMPLES = {"cpu": 1024, "cuda": 8192}
BATCHES_PER_POINT = 8  # the default batch size splits the subset into this many batches (for loss_se)
MAX_DEFAULT_BATCH = {"cpu": 256, "cuda": 2048}
SUBSET_STREAM = 1  # the subset's generator is seeded with seed * 1000 + 1; the directions' with seed itself
FLUSH_SECONDS = 5.0  # rewrite the CSV at most this often (and at the end)
# an existing --out must have been computed with these settings to be resumed
SETTINGS_KEYS = ("directions", "dims", "span", "points", "samples", "batch_size", "norm", "bn_recalibrate", "seed",
                 "precision", "data")
LOCK_NAME = ".landscape.lock"

ProgressFn = Callable[[str, int, int], None]  # (run name, points done in this shard, points in this shard)


# --- options ------------------------------------------------------------------------------------------------------
def _check_int(value: Any, option: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ResxError(f"{option} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ResxError(f"{option} must be an integer >= {low}, got {value}")
    return value


def _check_choice(value: Any, allowed: Sequence[Any], option: str) -> Any:
    if value not in allowed:
        raise ResxError(f"unknown {option} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def parse_span(span: str | Sequence[float]) -> tuple[float, float]:
    """'-1:1' or (lo, hi) -> (lo, hi): finite numbers with lo < hi."""
    if isinstance(span, str):
        parts = span.replace(" ", "").split(":")
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise ResxError(f"--span {span!r}: expected LO:HI, e.g. -1:1") from None
    else:
        try:
            lo, hi = (float(v) for v in span)
        except (TypeError, ValueError):
            raise ResxError(f"--span {span!r}: expected two numbers (lo, hi), e.g. (-1, 1)") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ResxError(f"--span {span!r}: both ends must be finite numbers")
    if not lo < hi:
        raise ResxError(f"--span {span!r}: the start must be below the end (LO:HI, e.g. -1:1)")
    return lo, hi


def parse_shard(shard: str | Sequence[int] | None) -> tuple[int, int]:
    """'I/N' or (I, N) -> (I, N) with 1 <= I <= N; None is (1, 1), the whole grid."""
    if shard is None:
        return 1, 1
    if isinstance(shard, str):
        try:
            index, count = (int(p) for p in shard.split("/"))
        except ValueError:
            raise ResxError(f"--shard {shard}: expected I/N, e.g. 1/4") from None
    else:
        try:
            index, count = (int(v) for v in shard)
        except (TypeError, ValueError):
            raise ResxError(f"--shard {shard!r}: expected (I, N), e.g. (1, 4)") from None
    if count < 1 or not 1 <= index <= count:
        raise ResxError(f"--shard {index}/{count}: I must be between 1 and N (N >= 1)")
    return index, count


@dataclass(frozen=True)
class LandscapeOptions:
    """The checked options of one landscape study (samples and batch_size as asked for: None is automatic)."""

    dims: int
    span: tuple[float, float]
    points: int
    samples: int | None
    directions: str
    norm: str
    bn_recalibrate: bool
    shard: tuple[int, int]
    seed: int
    batch_size: int | None


def check_options(*, dims: Any, span: Any, points: Any, samples: Any, directions: Any, norm: Any,
                  bn_recalibrate: Any, shard: Any, seed: Any, batch_size: Any) -> LandscapeOptions:
    """Every option checked before anything is loaded: one-line ResxErrors saying what is allowed."""
    _check_choice(directions, DIRECTIONS, "--directions")
    _check_choice(norm, NORMS, "--norm")
    if isinstance(dims, bool) or dims not in DIMS:
        raise ResxError(f"--dims must be 1 or 2, got {dims!r}")
    if directions == "interpolate" and dims != 1:
        raise ResxError("--directions interpolate gives the 1D line between two nets; use --dims 1")
    points = _check_int(points, "--points", 2)
    samples = None if samples is None else _check_int(samples, "--samples", 1)
    batch_size = None if batch_size is None else _check_int(batch_size, "--batch-size", 1)
    seed = _check_int(seed, "--seed", 0)
    return LandscapeOptions(int(dims), parse_span(span), points, samples, directions, norm, bool(bn_recalibrate),
                            parse_shard(shard), seed, batch_size)


# --- the grid -----------------------------------------------------------------------------------------------------
def grid_axis(span: tuple[float, float], points: int) -> list[float]:
    """`points` evenly spaced steps from lo to hi, both included; a step within 1e-12 of 0 is exactly 0, so an odd
    number of points over a symmetric span measures the unperturbed net itself."""
    lo, hi = span
    values = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    return [0.0 if abs(v) < 1e-12 else v for v in values]


def grid_points(dims: int, span: tuple[float, float], points: int) -> list[tuple[int, float, float]]:
    """[(p, x, y)] in row-major order (x slowest); y = 0.0 in 1D."""
    axis = grid_axis(span, points)
    if dims == 1:
        return [(i, x, 0.0) for i, x in enumerate(axis)]
    return [(i * points + j, x, y) for i, x in enumerate(axis) for j, y in enumerate(axis)]


def shard_points(grid: Sequence[tuple[int, float, float]], shard: tuple[int, int]) -> list[tuple[int, float, float]]:
    """The points of shard I of N: those whose index p has p % N == I - 1 (round robin, so every shard gets centre
    and edge points alike)."""
    index, count = shard
    return [point for point in grid if point[0] % count == index - 1]


# --- directions (Li et al. 2018 §4) --------------------------------------------------------------------------------
def random_directions(net: nn.Module, count: int, seed: int) -> list[list[torch.Tensor]]:
    """`count` raw Gaussian directions (CPU, float32), each one tensor per parameter in `net.parameters()` order,
    drawn from one torch.Generator seeded with `seed`: direction 1 whole, then direction 2. Nets with the same
    parameter shapes in the same order get the same directions."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(tuple(p.shape), generator=generator, dtype=torch.float32) for p in net.parameters()]
            for _ in range(count)]


def normalize_direction(direction: Sequence[torch.Tensor], weights: Sequence[torch.Tensor],
                        norm: str) -> list[torch.Tensor]:
    """Li et al. 2018 §4, Eq. in "Filter-Wise Normalization": scale each filter d_ij of the direction to the norm
    of the filter theta_ij of the weights (`filter`), or each tensor to the weight tensor's norm (`layer`); 1-D
    parameters (BN weights and biases, biases) get a zero direction under both. `none` keeps the raw direction."""
    _check_choice(norm, NORMS, "--norm")
    out = []
    for d, w in zip(direction, weights):
        d, w = d.detach().float().cpu(), w.detach().float().cpu()
        if norm == "none":
            out.append(d.clone())
        elif d.dim() <= 1:
            out.append(torch.zeros_like(d))
        elif norm == "layer":
            out.append(d * (w.norm() / (d.norm() + 1e-10)))
        else:  # one filter per output unit: dim 0 of a conv weight [out, in, k, k] or a linear weight [out, in]
            scale = w.flatten(1).norm(dim=1) / (d.flatten(1).norm(dim=1) + 1e-10)
            out.append(d * scale.view(-1, *([1] * (d.dim() - 1))))
    return out


def make_directions(net: nn.Module, dims: int, norm: str, seed: int) -> list[list[torch.Tensor]]:
    """`dims` normalised random directions around `net`'s current weights (see `random_directions`)."""
    weights = list(net.parameters())
    return [normalize_direction(d, weights, norm) for d in random_directions(net, dims, seed)]


# --- moving one net through weight space --------------------------------------------------------------------------
class Plane:
    """theta + x d1 (+ y d2), written into the net's parameters in place (Li et al. 2018 §4: random directions)."""

    def __init__(self, net: nn.Module, directions: Sequence[Sequence[torch.Tensor]]):
        params = list(net.parameters())
        self.theta = [p.detach().clone() for p in params]
        self.directions = [[d.to(device=p.device, dtype=p.dtype) for d, p in zip(ds, params)] for ds in directions]

    @torch.no_grad()
    def apply(self, net: nn.Module, x: float, y: float = 0.0) -> None:
        for k, p in enumerate(net.parameters()):
            p.copy_(self.theta[k])
            for direction, step in zip(self.directions, (x, y)):
                if step:
                    p.add_(direction[k], alpha=step)


def _float_buffers(net: nn.Module) -> list[torch.Tensor]:
    return [b for b in net.buffers() if b.is_floating_point()]


class Line:
    """(1 - a) theta0 + a theta1 (Goodfellow et al. 2015; Li et al. 2018 §3), written into the net in place with
    torch.lerp (exact at a = 0 and a = 1). The float buffers (BN running mean and variance) are interpolated too,
    the variance clamped at 0 beyond the ends; with recalibration they are recomputed anyway."""

    def __init__(self, net: nn.Module, start: nn.Module, end: nn.Module):
        device = next(net.parameters()).device
        self.theta0 = [p.detach().to(device).clone() for p in start.parameters()]
        self.theta1 = [p.detach().to(device).clone() for p in end.parameters()]
        self.buffers0 = [b.detach().to(device).clone() for b in _float_buffers(start)]
        self.buffers1 = [b.detach().to(device).clone() for b in _float_buffers(end)]
        self.variances = [name.endswith("running_var") for name, b in net.named_buffers() if b.is_floating_point()]

    @torch.no_grad()
    def apply(self, net: nn.Module, x: float, y: float = 0.0) -> None:
        for p, a, b in zip(net.parameters(), self.theta0, self.theta1):
            p.copy_(torch.lerp(a, b, float(x)))
        for buf, a, b, is_var in zip(_float_buffers(net), self.buffers0, self.buffers1, self.variances):
            buf.copy_(torch.lerp(a, b, float(x)))
            if is_var:
                buf.clamp_(min=0.0)


# --- the subset and one point's measurement ------------------------------------------------------------------------
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


# --- the nets -----------------------------------------------------------------------------------------------------
@dataclass
class Target:
    """One surface to measure: a net, how to move it (Plane or Line), and how its BN statistics are handled."""

    name: str
    model: str
    net: nn.Module
    mover: Plane | Line | None  # set once the net is on the device (`prepare_target`)
    recalibrate: bool
    bn: str  # the BN rule, in words, for landscape_info.json
    trained: bool
    source: str
    checkpoint: str | None = None
    directions_from: nn.Module | None = None  # interpolation: the net at a = 0

    @property
    def residual(self) -> bool:
        return bool(getattr(self.net, "residual", False))


def fresh_net(model: str, options: dict, seed: int) -> nn.Module:
    """A freshly initialised net seeded with `seed`, in eval mode (resx.studies.common.fresh_net: the caller's RNG
    untouched, a residual net and its plain twin get the same weights); a run's zero_init_residual is kept."""
    return common.fresh_net(model, options, seed, keep=("zero_init_residual",))


def _bn_rule(recalibrate: bool, forced: bool) -> str:
    if forced:
        return ("recalibrated at every point (forced: a freshly initialised net has no running statistics that "
                "describe data)")
    return "recalibrated at every point (asked for)" if recalibrate else "eval mode, the trained running statistics"


def _random_targets(loaded: list, model: str | None, init: bool, seed: int, bn_recalibrate: bool,
                    data_options: dict) -> list[Target]:
    taken: set[str] = set()
    if model:
        net = fresh_net(model, data_options, seed)
        return [Target(unique_label(f"{model}-init", taken), model, net, None, True, _bn_rule(True, True), False,
                       f"fresh, seed {seed}")]
    targets = []
    for run in loaded:
        if init:
            net = fresh_net(run.model, dict(run.net.model_options), seed)
            targets.append(Target(unique_label(f"{run.name}-init", taken), run.model, net, None, True,
                                  _bn_rule(True, True), False, f"fresh {run.model}, seed {seed}", str(run.checkpoint)))
        else:
            targets.append(Target(unique_label(run.name, taken), run.model, run.net, None, bn_recalibrate,
                                  _bn_rule(bn_recalibrate, False), True, _where(run.checkpoint), str(run.checkpoint)))
    return targets


def _where(path: str | Path) -> str:
    """A checkpoint's absolute path: what identifies a run in landscape_info.json, from any working folder."""
    return str(Path(path).resolve())


def _same_parameters(a: nn.Module, b: nn.Module) -> bool:
    return [tuple(p.shape) for p in a.parameters()] == [tuple(p.shape) for p in b.parameters()]


def _interpolation_target(loaded: list, init: bool, seed: int, bn_recalibrate: bool) -> Target:
    """The line from the first run to the second, or with `init` from the run's fresh net to the run."""
    if init:
        if len(loaded) != 1:
            raise ResxError("--directions interpolate with --init takes one run (the line from its fresh net to it)")
        (run,) = loaded
        start = fresh_net(run.model, dict(run.net.model_options), seed)
        name, forced = f"{run.name}-init-to-trained", True
        source = f"fresh {run.model} (seed {seed}) -> {_where(run.checkpoint)}"
    else:
        if len(loaded) != 2:
            raise ResxError(f"--directions interpolate takes two runs (or one with --init), got {len(loaded)}")
        first, run = loaded
        if first.model != run.model or not _same_parameters(first.net, run.net):
            raise ResxError(f"--directions interpolate needs two nets of one model; {first.name} is {first.model}, "
                            f"{run.name} is {run.model}")
        start, name, forced = first.net, f"{first.name}-to-{run.name}", False
        source = f"{_where(first.checkpoint)} -> {_where(run.checkpoint)}"
    recalibrate = bn_recalibrate or forced
    return Target(name, run.model, run.net, None, recalibrate, _bn_rule(recalibrate, forced),
                  True, source, str(run.checkpoint), directions_from=start)


def _dataset_spec(loaded: list, data: str | None, data_dir: Any) -> tuple[str, Any]:
    """The one dataset of the study: `data`, else the runs' own (which must then agree), else cifar10."""
    from resx.data import normalise_data_spec

    if data:
        return data, data_dir if data_dir is not None else (loaded[0].data_dir if loaded else None)
    specs = {normalise_data_spec(r.data_spec) for r in loaded if r.data_spec}
    if len(specs) > 1:
        names = ", ".join(f"{r.name} ({r.data_spec})" for r in loaded)
        raise ResxError(f"the runs were trained on different datasets: {names}; give runs of one dataset, or --data")
    if loaded and not specs:
        raise ResxError(f"run {loaded[0].name}: its checkpoint names no dataset; give --data")
    spec = loaded[0].data_spec if loaded else "cifar10"
    return spec, data_dir if data_dir is not None else (loaded[0].data_dir if loaded else None)


def load_targets(runs: Sequence[str | Path], model: str | None, options: LandscapeOptions, init: bool,
                 data: str | None, data_dir: Any, force: bool) -> tuple[list[Target], Any]:
    """(the surfaces to measure, the dataset). Every run and option is checked before any evaluation."""
    from resx.data import load_dataset

    runs = list(runs or ())
    if runs and model:
        raise ResxError("give run folders or --model, not both (use --init to start from a run's model freshly "
                        "initialised)")
    if not runs and not model:
        raise ResxError("give run folders or checkpoints (e.g. runs/resnet56 runs/plain56), or --model NAME --init "
                        "for a freshly initialised net")
    if model and not init:
        raise ResxError(f"--model {model} is a fresh net: add --init (or give a trained run folder instead)")
    if model and options.directions == "interpolate":
        raise ResxError("--directions interpolate needs a trained run (the line from its fresh net to it: "
                        "RUN_DIR --init)")
    loaded = []
    if runs:
        from resx.studies.common import load_runs

        loaded = load_runs(runs)
        for run in loaded:
            guards.check_run(run.name, run.checkpoint, run.data_spec, data, force=force,
                             what="measure the landscape of")
    else:
        from resx.models import get_model_spec

        get_model_spec(model)  # unknown names: one line before any data is loaded
    spec, root = _dataset_spec(loaded, data, data_dir)
    dataset = load_dataset(spec, root)
    for run in loaded:
        guards.check_data_fits(run.name, run.model, getattr(run.net, "model_options", None), dataset,
                               what="measure the landscape of")
    if options.directions == "interpolate":
        targets = [_interpolation_target(loaded, init, options.seed, options.bn_recalibrate)]
    else:
        targets = _random_targets(loaded, model, init, options.seed, options.bn_recalibrate, dataset.model_options)
    return targets, dataset


def prepare_target(target: Target, options: LandscapeOptions, device: torch.device) -> None:
    """Directions from the CPU weights (the same for twins on any device), then the net on the device."""
    from resx.engine.device import wants_channels_last

    directions = (make_directions(target.net, options.dims, options.norm, options.seed)
                  if options.directions == "random" else None)
    target.net = target.net.to(device).eval()
    if wants_channels_last(target.net):
        target.net = target.net.to(memory_format=torch.channels_last)
    if directions is not None:
        target.mover = Plane(target.net, directions)
    else:
        target.mover = Line(target.net, target.directions_from, target.net)
        target.directions_from = None  # its weights are copied; let it go


def measure(target: Target, subset: Subset, x: float, y: float, device: torch.device, precision: str) -> Point:
    """One point of the surface: move the net there, recalibrate BN if the target wants it, evaluate."""
    started = time.perf_counter()
    target.mover.apply(target.net, x, y)
    if target.recalibrate:
        recalibrate_batchnorm(target.net, subset, device, precision)
    loss, error, se = evaluate_subset(target.net, subset, device, precision)
    return Point(loss, error, se, time.perf_counter() - started)


# --- landscape.csv and landscape_info.json ------------------------------------------------------------------------
class LandscapeStore:
    """The study's two files in `out`: what is done (for resuming), the settings check, and merged atomic rewrites
    under an exclusive lock (fcntl.flock on out/.landscape.lock), so that shards may write at the same time."""

    def __init__(self, out: Path, settings: dict[str, Any], overwrite: bool):
        self.out = Path(out)
        self.settings = json.loads(json.dumps(settings))  # as JSON reads it back (tuples become lists)
        self.overwrite = overwrite
        self.earlier: list[Path] = []
        self.pending: list[dict] = []
        self.run_info: dict[str, dict] = {}
        self.increments: dict[str, list[float]] = {}  # run -> [points evaluated, seconds] since the last flush
        self.last_flush = time.monotonic()

    @property
    def csv_path(self) -> Path:
        return self.out / CSV_NAME

    @property
    def info_path(self) -> Path:
        return self.out / INFO_NAME

    def earlier_files(self) -> list[Path]:
        """The files of an earlier landscape study in `out` (those the study declares, resx.plugins.landscape).
        Not guards.check_study_folder: a study with the same settings is resumed, not refused."""
        return guards.earlier_study(self.out, "landscape")

    def read_info(self) -> dict | None:
        try:
            return json.loads(self.info_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise ResxError(f"{self.info_path} is not readable JSON; pass --overwrite to replace the study, or "
                            "give another --out") from None

    def check(self, targets: Sequence[Target]) -> None:
        """An existing study in `out` is resumed only when its settings match (else a one-line error); with
        `overwrite` its files are listed for removal once every check has passed."""
        found = self.earlier_files()
        if self.overwrite:
            self.earlier = found
            return
        if not self.csv_path.exists():
            return
        info = self.read_info()
        if info is None:
            raise ResxError(f"{self.out} holds {CSV_NAME} without {INFO_NAME}: its settings are unknown; pass "
                            "--overwrite to replace it, or give another --out")
        diffs = [f"{k} {info.get(k)!r} there, {v!r} now" for k, v in self.settings.items() if info.get(k) != v]
        if diffs:
            raise ResxError(f"{self.out} holds a landscape study with other settings ({'; '.join(diffs[:3])}); "
                            "pass --overwrite to replace it, or give another --out")
        for target in targets:
            earlier = (info.get("runs") or {}).get(target.name, {})
            if earlier and earlier.get("source") != target.source:
                raise ResxError(f"{self.out} holds run {target.name} from {earlier.get('source')}, not "
                                f"{target.source}; pass --overwrite to replace the study, or give another --out")

    def start(self) -> None:
        """Remove the study replaced with `overwrite`; an info file without its CSV (a study stopped before its
        first row) describes nothing and goes too."""
        guards.remove_files(self.earlier)
        self.earlier = []
        if not self.csv_path.exists():
            self.info_path.unlink(missing_ok=True)

    def read_rows(self) -> pd.DataFrame:
        if not self.csv_path.exists():
            return pd.DataFrame(columns=[*CSV_COLUMNS, *EXTRA_COLUMNS])
        try:
            rows = pd.read_csv(self.csv_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ResxError(f"{self.csv_path} is not a readable CSV ({str(e).splitlines()[0][:80]}); pass "
                            "--overwrite to replace it") from None
        if "run" in rows.columns:
            rows["run"] = rows["run"].astype(str)
        return rows

    def done(self, run: str) -> set[int]:
        """Point indices of `run` already measured (here or by another shard)."""
        rows = self.read_rows()
        if "point" not in rows.columns or not len(rows):
            return set()
        return {int(p) for p in rows.loc[rows["run"].astype(str) == run, "point"]}

    def add(self, row: dict, seconds: float) -> None:
        self.pending.append(row)
        counts = self.increments.setdefault(row["run"], [0, 0.0])
        counts[0] += 1
        counts[1] += seconds

    def describe_run(self, name: str, entry: dict) -> None:
        self.run_info.setdefault(name, {}).update(entry)

    def due(self) -> bool:
        return time.monotonic() - self.last_flush >= FLUSH_SECONDS

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / LOCK_NAME, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def flush(self, info: dict[str, Any]) -> pd.DataFrame:
        """Merge the pending rows and per-run facts into the files on disk (another shard's included); returns
        every row."""
        with self._locked():
            rows = self.read_rows()
            if self.pending:
                new = pd.DataFrame(self.pending, columns=[*CSV_COLUMNS, *EXTRA_COLUMNS])
                rows = new if not len(rows) else pd.concat([rows, new], ignore_index=True)
                rows = rows.drop_duplicates(["run", "point"], keep="first")
                order = {run: i for i, run in enumerate(dict.fromkeys(rows["run"].astype(str)))}
                rows = rows.assign(_order=rows["run"].astype(str).map(order)).sort_values(
                    ["_order", "point"], kind="stable").drop(columns="_order")
                leading = [*CSV_COLUMNS, *(c for c in rows.columns if c not in CSV_COLUMNS)]
                rows = rows[leading].reset_index(drop=True)
                write_csv_atomic(self.csv_path, rows)
            merged = self._merged_info(info, rows)
            write_json_atomic(self.info_path, merged)
        self.pending, self.increments = [], {}
        self.last_flush = time.monotonic()
        return rows

    def _merged_info(self, info: dict[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
        merged = self.read_info() or {}
        devices = list(dict.fromkeys([*merged.get("devices", []), info["device"]]))
        runs = merged.get("runs") or {}
        merged.update(info)
        merged["devices"] = devices
        for name, entry in self.run_info.items():
            run = runs.setdefault(name, {})
            run.update(entry)
            points, seconds = self.increments.get(name, (0, 0.0))
            run["evaluated_points"] = run.get("evaluated_points", 0) + points
            run["evaluated_seconds"] = round(run.get("evaluated_seconds", 0.0) + seconds, 4)
            if run["evaluated_points"]:
                run["seconds_per_point"] = round(run["evaluated_seconds"] / run["evaluated_points"], 4)
            run["points_done"] = int((rows["run"].astype(str) == name).sum()) if len(rows) else 0
        merged["runs"] = runs
        return merged


# --- the whole study ------------------------------------------------------------------------------------------------
@dataclass
class LandscapeResult:
    out: Path
    frame: pd.DataFrame  # every row of landscape.csv (all runs, all shards so far)
    info: dict[str, Any]
    metrics: pd.DataFrame  # resx.plots.landscape.surface_metrics of the frame
    evaluated: int  # points measured by this call (the reference points not counted)
    skipped: int  # points of this shard that were already in landscape.csv
    figures: list[Path] = field(default_factory=list)


def _row(target: Target, options: LandscapeOptions, subset: Subset, p: int, x: float, y: float,
         point: Point) -> dict:
    return dict(run=target.name, residual=target.residual, dims=options.dims, x=x, y=y, train_loss=point.loss,
                train_error=point.error, loss_se=point.loss_se, model=target.model, point=p, samples=subset.samples,
                bn_recalibrate=target.recalibrate, directions=options.directions, norm=options.norm,
                seconds=round(point.seconds, 5))


def _study_info(options: LandscapeOptions, dataset: Any, subset: Subset, device: torch.device, precision: str,
                why: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "study": "loss landscape (Li et al. 2018, §4, Fig. 1 and Fig. 5)",
        **settings,  # directions, dims, span, points, samples, batch_size, norm, bn_recalibrate, seed, precision, data
        "grid_points": options.points ** options.dims,
        "batches": len(subset.batches),
        "direction_seed": options.seed if options.directions == "random" else None,
        "subset": f"the first {subset.samples} of a permutation of the {len(dataset.train_images)} training images "
                  f"seeded with seed * 1000 + {SUBSET_STREAM}; no augmentation",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision_why": why,
        "loss_se": "std of the per-batch mean losses / sqrt(batches), equal-size batches",
        "note": "random directions: Gaussian, drawn parameter by parameter from a generator seeded with `seed` "
                f"(twins with identical parameter shapes get identical raw directions), {options.norm}-normalised"
                + ("; 1-D parameters (BN, biases) not moved" if options.norm != "none" else "")
                if options.directions == "random" else
                "interpolation (1 - a) theta0 + a theta1 with torch.lerp; BN running statistics interpolated unless "
                "recalibrated",
    }


def _settings(options: LandscapeOptions, subset: Subset, precision: str, dataset: Any) -> dict[str, Any]:
    from resx.data import normalise_data_spec

    return {"directions": options.directions, "dims": options.dims, "span": list(options.span),
            "points": options.points, "samples": subset.samples, "batch_size": subset.batch_size, "norm": options.norm,
            "bn_recalibrate": options.bn_recalibrate, "seed": options.seed, "precision": precision,
            "data": normalise_data_spec(dataset.name)}


def _reference_points(options: LandscapeOptions) -> list[tuple[float, float]]:
    """The unperturbed net (x = y = 0), and for an interpolation also its end (a = 1): measured first, for
    landscape_info.json and to time a point."""
    return [(0.0, 0.0), (1.0, 0.0)] if options.directions == "interpolate" else [(0.0, 0.0)]


def _announce(targets: Sequence[Target], todo: dict[str, list], options: LandscapeOptions, subset: Subset,
              skipped: int, say: Callable[[str], None]) -> None:
    grid = options.points ** options.dims
    count = sum(len(v) for v in todo.values())
    passes = sum(len(todo[t.name]) * (2 if t.recalibrate else 1) for t in targets) * subset.samples
    shard = f" in shard {options.shard[0]}/{options.shard[1]}" if options.shard[1] > 1 else ""
    say(f"landscape: {len(targets)} run(s) x {grid} points ({options.dims}D, {options.points} per axis over "
        f"{options.span[0]:g}:{options.span[1]:g}); {count} to do{shard}, {skipped} already done; x {subset.samples} "
        f"training images in batches of {subset.batch_size} = {passes:,} image passes"
        + (" (BN recalibration doubles a point's cost)" if any(t.recalibrate for t in targets) else ""))


def _measure_references(target: Target, options: LandscapeOptions, subset: Subset, device: torch.device,
                        precision: str) -> dict[tuple[float, float], Point]:
    from resx.engine.device import autocast

    with torch.no_grad(), autocast(device, precision):  # warm-up: kernels chosen and caches filled, not timed
        target.net(subset.batches[0][0])
    return {xy: measure(target, subset, *xy, device, precision) for xy in _reference_points(options)}


def _describe_target(target: Target, references: dict[tuple[float, float], Point]) -> dict[str, Any]:
    centre = references[(0.0, 0.0)]
    entry = {"model": target.model, "residual": target.residual, "trained": target.trained, "source": target.source,
             "checkpoint": target.checkpoint, "bn": target.bn, "bn_recalibrate": target.recalibrate,
             "centre_loss": centre.loss, "centre_error": centre.error, "centre_loss_se": centre.loss_se,
             "trained_loss": centre.loss if target.trained and (1.0, 0.0) not in references else None}
    if (1.0, 0.0) in references:
        end = references[(1.0, 0.0)]
        entry.update(end_loss=end.loss, end_error=end.error, trained_loss=end.loss)
    return entry


def run_landscape(
    runs: Sequence[str | Path] = (),
    model: str | None = None,
    *,
    init: bool = False,
    dims: int = 2,
    span: str | Sequence[float] = (-1.0, 1.0),
    points: int = 21,
    samples: int | None = None,
    directions: str = "random",
    norm: str = "filter",
    bn_recalibrate: bool = False,
    shard: str | Sequence[int] | None = (1, 1),
    data: str | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    batch_size: int | None = None,
    out: str | Path = Path("results/landscape"),
    overwrite: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
    say: Callable[[str], None] = print,
    precision: str = "fp32",
    plot: bool = True,
) -> LandscapeResult:
    """Measure loss surfaces (Li et al. 2018) and write landscape.csv, landscape_info.json and the figures to `out`.

    runs:        run folders or checkpoint.pt files; each gets its own surface around its trained weights
                 (random directions), or, with directions='interpolate', the line from the first to the second
                 (from a run's fresh net to it with `init`)
    model:       with `init`: a freshly initialised net of this name (seeded with `seed`) instead of runs
    init:        measure around the freshly initialised nets of the runs' models (or of `model`); BN recalibrated
    dims:        1 (a line) or 2 (a plane); interpolation is 1D
    span:        'LO:HI' or (lo, hi), the steps along each direction; points: grid points per axis (>= 2)
    samples:     training images of the fixed subset (default 1024 on CPU, 8192 on CUDA; capped at the set)
    norm:        filter | layer | none (see the module docstring); bn_recalibrate: recompute BN statistics per point
    shard:       'I/N' or (I, N): only the points p with p % N == I - 1
    data:        dataset spec (default: the runs' own; cifar10 for `model`); `force` allows another one, and runs
                 that are not finished
    precision:   fp32 (default: bf16 rounding of the logits shows as roughness near a minimum), bf16, or auto (bf16
                 where the device computes it natively)
    out:         an existing study there is resumed when its settings match (points done are skipped), refused
                 when they differ, replaced with `overwrite`
    progress:    progress(run name, points done, points of this shard) after each point
    say:         one-line messages: the cost up front, the estimate from the first measured point
    plot:        draw the figures at the end (resx.plots.landscape.plot_landscape)
    """
    from resx.engine.device import precision_choice, resolve_device, wants_channels_last

    options = check_options(dims=dims, span=span, points=points, samples=samples, directions=directions, norm=norm,
                            bn_recalibrate=bn_recalibrate, shard=shard, seed=seed, batch_size=batch_size)
    out = check_output_folder(Path(out))
    dev = resolve_device(device)
    precision, why = precision_choice(precision, dev)
    targets, dataset = load_targets(runs, model, options, init, data, data_dir, force)
    recalibrated = any(t.recalibrate and common.has_batchnorm(t.net) for t in targets)
    count, size = subset_size(options.samples, len(dataset.train_images), options.batch_size, dev, say,
                              min_batch=common.MIN_BN_BATCH if recalibrated else 1)
    conv = any(wants_channels_last(t.net) for t in targets) and dataset.train_images.dim() == 4
    subset = training_subset(dataset, count, size, options.seed, dev, channels_last=conv)
    settings = _settings(options, subset, precision, dataset)
    store = LandscapeStore(out, settings, overwrite)
    store.check(targets)
    store.start()  # every check passed: an earlier study replaced with `overwrite` goes now

    info = _study_info(options, dataset, subset, dev, precision, why, store.settings)
    mine = shard_points(grid_points(options.dims, options.span, options.points), options.shard)
    done = {t.name: store.done(t.name) for t in targets}
    todo = {t.name: [pt for pt in mine if pt[0] not in done[t.name]] for t in targets}
    skipped = sum(len(mine) - len(v) for v in todo.values())
    _announce(targets, todo, options, subset, skipped, say)
    evaluated = 0
    try:
        evaluated = _measure_all(targets, todo, options, subset, dev, precision, store, info, progress, say)
    finally:
        rows = store.flush(info)  # what was measured is kept, even when interrupted
    result_info = store.read_info() or {}
    frame = rows[rows["run"].astype(str).isin([t.name for t in targets])].reset_index(drop=True)
    metrics = surface_metrics(_for_metrics(frame)) if len(frame) else pd.DataFrame()
    figures: list[Path] = []
    if plot:
        from resx.plots.landscape import plot_landscape  # Li et al. 2018 Fig. 1 and 5, from the CSV just written

        figures = plot_landscape(out)
    return LandscapeResult(out, frame, result_info, metrics, evaluated, skipped, figures)


def _for_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["residual"] = frame["residual"].astype(str).str.lower().isin(("true", "1"))
    frame["y"] = pd.to_numeric(frame["y"], errors="coerce").fillna(0.0)
    frame["run"] = frame["run"].astype(str)
    return frame


def _measure_all(targets: Sequence[Target], todo: dict[str, list], options: LandscapeOptions, subset: Subset,
                 device: torch.device, precision: str, store: LandscapeStore, info: dict, progress: ProgressFn | None,
                 say: Callable[[str], None]) -> int:
    """Every target's points of this shard that are not done yet; returns how many were measured."""
    evaluated, announced = 0, False
    left = sum(len(v) for v in todo.values())
    for target in targets:
        points = todo[target.name]
        total = len(points)
        if not points and target.name in ((store.read_info() or {}).get("runs") or {}):
            continue
        prepare_target(target, options, device)
        references = _measure_references(target, options, subset, device, precision)
        store.describe_run(target.name, _describe_target(target, references))
        if not announced and left:
            per_point = references[(0.0, 0.0)].seconds
            say(f"landscape: the first point of {target.name} took {per_point:.3f} s; {left} point(s) to do: "
                f"about {_duration(per_point * left)} ({device}, {precision})")
            announced = True
        for done, (p, x, y) in enumerate(points, start=1):
            point = references.get((x, y)) or measure(target, subset, x, y, device, precision)
            store.add(_row(target, options, subset, p, x, y, point), point.seconds)
            evaluated += 1
            if progress:
                progress(target.name, done, total)
            if store.due():
                store.flush(info)
        store.flush(info)
        target.mover = None  # free the copies of the weights before the next net
        target.net = target.net.cpu()
    return evaluated


def _duration(seconds: float) -> str:
    from resx.markdown import duration

    return duration(seconds)
