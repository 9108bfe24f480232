"""Residual nets as ensembles of paths: the path-length distribution and the gradient per path length.

Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow Networks", §5, Fig. 6.
Unravelled, a net of n blocks y_i = y_{i-1} + f_i(y_{i-1}) is a sum of 2^n paths; C(n, k) of them go through
exactly k residual branches (binomial, centred at n/2). Veit et al. measure how much gradient a path of length k
carries: forward a training batch through the whole net, and in the backward pass let the gradient flow only
through the branches of k randomly chosen blocks and only through the shortcuts of the other n - k; the norm of
the gradient that reaches the input falls exponentially with k (Fig. 6b). The total gradient per length,
C(n, k) x mean magnitude at k, comes almost entirely from short paths: 5 to 17 of 54 blocks in ResNet-110 (Fig. 6c),
0.45% of all paths, against a distribution centred at 27.

How it is measured here (see `path_gradients`):
  * BatchNorm in eval mode, so each example's loss depends only on its own input; with a summed cross-entropy
    each example's input gradient is one sample. Each example of a batch gets its own k and its own random
    k-subset of blocks (per-example gradient gates, resx.studies.gradient_gates), so samples x (n + 1)
    measurements cost about samples x (n + 1) / batch_size backward passes over one retained forward graph.
  * "the input" is the input of the first block (the stem's output), where all 2^n paths start.
  * grad_norm is the L2 norm of one example's gradient (of its own cross-entropy loss, summed over nothing
    else); grad_norm_mean / grad_norm_std are the mean and sample standard deviation over the samples at k.
  * Post-activation (original) blocks have a ReLU after the addition that mixes the two branches. As Veit et al.
    did, the gates sit before the addition and the ReLU's backward applies its forward mask to whatever gradient
    flows through; the 2^n path gradients still sum to the true gradient, but a path's share depends on the
    other paths through that mask. Pre-activation nets (preresnet*) make the split exact. The note is written
    into paths_info.json.
  * A freshly initialised net (--model / --init) has BN running statistics (0, 1) that describe no data: in eval
    mode it would run un-normalised, which no training step ever sees. Its statistics are first estimated on the
    analysed batch (`calibrate_batchnorm`; nothing is learnt), so the eval-mode net computes what the
    training-mode net computes at initialisation while the examples stay independent. Trained nets keep theirs.

Block gradients (the vanishing-gradient picture, measured): for each block, the mean over the batch of
the per-example L2 norm of d(loss_i)/d(block input), same batch, same eval-mode BN rule as above, for the
residual net and its plain twin at initialisation (same seed, same weights: the twins have the same
parameters), and for every checkpoint given.

Shared with the signal and landscape studies (one implementation each, in resx.studies.common, re-exported
here): `analysis_mode`, `calibrate_batchnorm`, `analysis_batch`, the seeded fresh nets and the twins. The CSVs'
columns are declared with the study (resx.plugins.paths).

Outputs (tidy CSV, written atomically): path_distribution.csv (k, paths, fraction), path_gradients.csv
(k, samples, grad_norm_mean, grad_norm_std), path_total_gradient.csv (k, total, fraction), block_gradients.csv
(run, residual, trained, block, grad_norm), paths_info.json.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from resx.errors import ResxError
from resx.labels import run_label, unique_label
from resx.models.net import BlockNet
from resx.stats import mean_std
from resx.plugins.paths import BLOCK_COLUMNS, DISTRIBUTION_COLUMNS, GRADIENT_COLUMNS, TOTAL_COLUMNS  # declared with the study
from resx.studies import guards
from resx.studies.common import analysis_batch, analysis_mode, calibrate_batchnorm, fresh_net, precision, twin_of
from resx.studies.gradient_gates import gated_blocks_forward
from resx.studies.path_window import effective_window

PathsProgress = Callable[[str, int, int], None]  # (stage, done, total)


POST_ACTIVATION_NOTE = (
    "post-activation blocks (ReLU after the addition): the gradient gates sit before the addition and the ReLU's "
    "backward applies its forward mask to whatever flows through, as Veit et al. 2016 did; the path gradients sum "
    "to the true gradient, but each path's share depends on the other paths through that mask. Pre-activation "
    "nets (preresnet*) make the split exact."
)
PRE_ACTIVATION_NOTE = "pre-activation blocks: nothing after the addition, the split into paths is exact."


# --- the path-length distribution ----------------------------------------------------------------------------
def path_distribution(n: int) -> pd.DataFrame:
    """Paths of each length k = 0..n through n blocks: C(n, k) of them (exact Python ints), and their fraction
    C(n, k) / 2^n computed in log space (lgamma), so n in the hundreds or thousands neither overflows nor
    loses the tails to 0/0."""
    if n < 0:
        raise ValueError(f"number of blocks must be >= 0, got {n}")
    ks = range(n + 1)
    log_total = n * math.log(2.0)
    fractions = [math.exp(log_binomial(n, k) - log_total) for k in ks]
    paths = [math.comb(n, k) for k in ks]
    return pd.DataFrame({"k": list(ks), "paths": pd.Series(paths, dtype=object if n > 60 else "int64"),
                         "fraction": fractions})


def log_binomial(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


# --- gradient per path length ---------------------------------------------------------------------------------
def random_branch_masks(ks: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, B] float masks: column b has exactly ks[b] ones, at a uniformly random k-subset of the n blocks
    (the ranks of n uniform draws are a uniform permutation; the first k of it is a uniform k-subset)."""
    scores = torch.rand(len(ks), n, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return (ranks < ks[:, None]).T.to(torch.float32)


def _loss_gradient(net: BlockNet, h_last: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d(sum of per-example cross-entropy)/d(last block's output): row b is example b's own gradient."""
    h = h_last.detach().requires_grad_(True)
    loss = F.cross_entropy(net.head(h), labels, reduction="sum")
    return torch.autograd.grad(loss, h)[0]


class PathBackward:
    """One forward pass of `h0` (the stem's output) through the gated blocks; each call runs one backward pass
    routed by `masks` [n_blocks, B] (1: through the block's branch, 0: through its shortcut, per example) and
    returns the gradient of the summed per-example loss at h0, row b being example b's own measurement.
    The graph is retained between calls and the masks are written into the gates' tensor in place, so each
    measurement batch costs one backward pass (Veit et al. 2016, §5: one forward, then routed backward passes).
    Call inside `analysis_mode(net)` (eval-mode BN keeps the examples independent)."""

    def __init__(self, net: BlockNet, h0: torch.Tensor, labels: torch.Tensor):
        self.h0 = h0.detach().requires_grad_(True)
        self.masks = torch.zeros(len(net.blocks), len(h0), device=h0.device, dtype=h0.dtype)
        self.h_last = gated_blocks_forward(net, self.h0, self.masks)
        self.grad_last = _loss_gradient(net, self.h_last, labels)

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        self.masks.copy_(masks)
        (grad,) = torch.autograd.grad(self.h_last, self.h0, self.grad_last, retain_graph=True)
        return grad


def path_input_gradient(net: BlockNet, h0: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The gradient at the first block's input with the backward pass routed by `masks` [n_blocks, B]."""
    with analysis_mode(net):
        return PathBackward(net, h0, labels)(masks.to(h0.device))


def _chunks(images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def check_residual(net: BlockNet) -> None:
    if not net.residual:
        name = net.model_name or "this net"
        raise ResxError(f"{name} has no shortcuts: the path analysis needs a residual net")


def path_gradients(
    net: BlockNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    samples: int,
    generator: torch.Generator,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: PathsProgress | None = None,
) -> pd.DataFrame:
    """Gradient magnitude per path length (Veit et al. 2016, §5, Fig. 6b): `samples` measurements for each
    k = 0..n. Returns a frame (k, samples, grad_norm_mean, grad_norm_std).

    images: normalised float images [N, C, H, W] (or [N, D]), labels [N]. Each chunk of `batch_size` images is
    forwarded once; its graph is kept and backward passes with fresh per-example masks are run over it, each
    example getting its own k (a random permutation of samples x {0..n}) and its own random k-subset of blocks,
    drawn with `generator` (a CPU torch.Generator) so results repeat for a seed. Memory is bounded by the
    activations of one chunk. fp32 (or TF32 on CUDA): gradients of long paths are many orders of magnitude
    below those of short ones, and bf16 would round their norms to 2-3 digits.
    """
    check_residual(net)
    if samples < 1:
        raise ResxError(f"samples must be at least 1, got {samples}")
    if batch_size < 1:
        raise ResxError(f"batch size must be at least 1, got {batch_size}")
    if len(images) == 0:
        raise ResxError("no images to measure gradients on")
    device = torch.device(device) if device is not None else images.device
    n = len(net.blocks)
    total = samples * (n + 1)
    ks = torch.arange(n + 1).repeat_interleave(samples)[torch.randperm(total, generator=generator)]
    # Every chunk gets the same number of backward passes; together they cover all `total` measurements.
    passes_per_chunk = math.ceil(total / len(images))
    sizes = [len(chunk) for chunk, _ in _chunks(images, labels, batch_size)]
    total_passes, left = 0, total
    for size in sizes:
        for _ in range(passes_per_chunk):
            if left <= 0:
                break
            left -= size
            total_passes += 1

    measured_k: list[torch.Tensor] = []
    measured_norm: list[torch.Tensor] = []
    position, done = 0, 0
    with analysis_mode(net):
        for chunk, chunk_labels in _chunks(images, labels, batch_size):
            if position >= total:
                break
            x, y = chunk.to(device), chunk_labels.to(device)
            with torch.no_grad():
                h0 = net.stem(x)  # the stem's own backward is not needed: paths start at the first block
            backward = PathBackward(net, h0, y)
            masks = torch.zeros_like(backward.masks)
            for _ in range(passes_per_chunk):
                take = ks[position:position + len(x)]
                if len(take) == 0:
                    break
                position += len(take)
                # Rows beyond `take` (last pass only) get zero masks everywhere and are not recorded.
                masks.zero_()
                masks[:, : len(take)] = random_branch_masks(take, n, generator).to(device)
                grad = backward(masks)
                measured_norm.append(grad[: len(take)].flatten(1).norm(dim=1).double().cpu())
                measured_k.append(take)
                done += 1
                if progress:
                    progress("path gradients", done, total_passes)
            del backward
    frame = pd.DataFrame({"k": torch.cat(measured_k).numpy(), "grad_norm": torch.cat(measured_norm).numpy()})
    stats = mean_std(frame, "k", "grad_norm").reindex(range(n + 1))
    return pd.DataFrame({
        "k": np.arange(n + 1),
        "samples": stats["count"].fillna(0).astype("int64").to_numpy(),
        "grad_norm_mean": stats["mean"].to_numpy(),
        "grad_norm_std": stats["std"].to_numpy(),
    })


def total_gradient(gradients: pd.DataFrame) -> pd.DataFrame:
    """Total gradient per path length (Veit et al. 2016, Fig. 6c): C(n, k) x mean magnitude at k, and its
    fraction of the sum over k. The fraction is computed in log space, so it stays finite for any n; `total`
    itself is a float64 and overflows to inf only past n of about 1,000."""
    n = int(gradients["k"].max())
    ks = gradients["k"].to_numpy()
    means = gradients["grad_norm_mean"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_total = np.array([log_binomial(n, int(k)) for k in ks]) + np.log(np.where(means > 0, means, 0.0))
    finite = np.isfinite(log_total)
    peak = log_total[finite].max() if finite.any() else 0.0
    weights = np.where(finite, np.exp(log_total - peak), 0.0)
    fraction = weights / weights.sum() if weights.sum() > 0 else weights
    with np.errstate(over="ignore"):
        total = np.where(finite, np.exp(log_total), 0.0)
    return pd.DataFrame({"k": ks, "total": total, "fraction": fraction})


# --- gradient per block ------------------------------------------------------------------------------------------
def block_gradient_norms(
    net: BlockNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None
) -> list[float]:
    """For each block, the mean over the examples of ||d loss_i / d x_i|| where x_i is the example's input to
    that block and loss_i its own cross-entropy (eval-mode BN: examples are independent). Works for plain nets
    too. Block 0's input is the stem's output."""
    n = len(net.blocks)
    sums = torch.zeros(n, dtype=torch.float64)
    batch_size = batch_size or len(images)
    with analysis_mode(net):
        for x, y in _chunks(images, labels, batch_size):
            with torch.no_grad():
                h = net.stem(x)
            h.requires_grad_(True)
            inputs = []
            for block in net.blocks:
                inputs.append(h)
                h = block(h)
            loss = F.cross_entropy(net.head(h), y, reduction="sum")
            grads = torch.autograd.grad(loss, inputs)
            for i, g in enumerate(grads):
                sums[i] += g.flatten(1).norm(dim=1).double().sum().cpu()
    return (sums / len(images)).tolist()


# --- the whole study -------------------------------------------------------------------------------------------
@dataclass
class PathsResult:
    model: str
    n_blocks: int
    distribution: pd.DataFrame
    gradients: pd.DataFrame
    total: pd.DataFrame
    block_gradients: pd.DataFrame
    info: dict[str, Any]
    out: Path | None = None
    first_last_ratio: dict[str, float] = field(default_factory=dict)  # run label -> block 0 / block n-1 grad norm
    figures: list[Path] = field(default_factory=list)


@dataclass
class _Net:
    label: str
    net: BlockNet
    trained: bool
    source: str
    checkpoint: dict = field(default_factory=dict)  # what a trained net was loaded from (empty for a fresh one)

    @property
    def own_options(self) -> dict:
        """The checkpoint's model options other than the data's (classes, channels, size)."""
        from resx.models.registry import DATA_OPTIONS

        return {k: v for k, v in self.checkpoint["model_options"].items() if k not in DATA_OPTIONS}


# --- the steps of the study ------------------------------------------------------------------------------------
def check_paths_options(checkpoints: Sequence[str | Path], model: str | None, samples: int,
                        batch_size: int | None) -> None:
    if samples < 1:
        raise ResxError(f"--samples must be at least 1, got {samples}")
    if batch_size is not None and batch_size < 1:
        raise ResxError(f"--batch-size must be at least 1, got {batch_size}")
    if not checkpoints and not model:
        raise ResxError("give a run folder or checkpoint to analyse, or --model NAME for a freshly initialised net")
    if checkpoints and model:
        raise ResxError("give checkpoints or --model, not both (use --init to analyse a checkpoint's model at initialisation)")


def load_trained_nets(checkpoints: Sequence[str | Path], data: str | None, force: bool, taken: set[str]) -> list[_Net]:
    """Each checkpoint read, checked (finished, trained on `data`: see guards.check_run) and loaded; labelled after
    its run folder (resx.labels), each label added to `taken`."""
    from resx.engine import load_model, read_checkpoint

    nets = []
    for path in checkpoints:
        ckpt = read_checkpoint(path)
        guards.check_run(str(path), path, (ckpt.get("config") or {}).get("data"), data, force=force, what="analyse")
        net, ckpt = load_model(ckpt)
        label = unique_label(run_label(path, fallback=ckpt.get("model_name") or "run"), taken)
        nets.append(_Net(label, net, True, str(path), ckpt))
    return nets


def analysed_model(loaded: Sequence[_Net], model: str | None, data: str | None,
                   data_dir: str | Path | None) -> tuple[str, dict, str, str | Path | None]:
    """(model name, its own options, dataset, data folder) of the analysed net: `model`, or the first residual
    net given; the dataset is `data`, else that net's, else cifar10."""
    if model:
        from resx.models import get_model_spec

        spec = get_model_spec(model)  # unknown names: one-line error before any data is loaded
        if not spec.residual:
            raise ResxError(f"{model} has no shortcuts: the path analysis needs a residual net")
        return model, {}, data or "cifar10", data_dir
    residual = [entry for entry in loaded if entry.net.residual]
    if not residual:
        raise ResxError(f"{loaded[0].net.model_name} has no shortcuts: the path analysis needs a residual net")
    primary = residual[0]
    config = primary.checkpoint.get("config", {})
    return (primary.checkpoint["model_name"], primary.own_options, data or config.get("data") or "cifar10",
            data_dir or config.get("data_dir"))


def fresh_pairs(name: str, own_options: dict, loaded: Sequence[_Net]) -> list[tuple[str, dict]]:
    """The nets to build at initialisation: the analysed model and its plain twin, then each other residual net
    given and its twin (e.g. ResNet-56 and plain-56 beside a trained 110): every trained pair gets its pair at
    init. Each (name, depth) once: an MLP's depth is an option, not in its name."""
    wanted: list[tuple[str, dict]] = [(name, own_options)]
    wanted += [(entry.checkpoint["model_name"], entry.own_options) for entry in loaded if entry.net.residual]
    pairs: list[tuple[str, dict]] = []
    planned: set[tuple[str, Any]] = set()
    for base_name, options in wanted:
        for fresh_name in (base_name, twin_of(base_name)):
            if fresh_name is not None and (fresh_name, options.get("depth")) not in planned:
                planned.add((fresh_name, options.get("depth")))
                pairs.append((fresh_name, options))
    return pairs


def check_batchnorm_batch(pairs: Sequence[tuple[str, dict]], batch_images: int) -> None:
    """The fresh nets' BN statistics are estimated on the batch (`calibrate_batchnorm`): it needs 2 images or more
    where a net has BatchNorm."""
    from resx.studies.common import MIN_BN_BATCH, model_has_batchnorm

    with_bn = [fresh_name for fresh_name, _ in pairs if model_has_batchnorm(fresh_name)]
    if with_bn and batch_images < MIN_BN_BATCH:
        raise ResxError(f"--batch-size must be at least {MIN_BN_BATCH} for {with_bn[0]} (got {batch_images} images): "
                        "the BatchNorm statistics of its fresh net are estimated on the batch")


def build_fresh_nets(pairs: Sequence[tuple[str, dict]], data_options: dict, seed: int, images: torch.Tensor,
                     batch_size: int, taken: set[str], device: torch.device) -> list[_Net]:
    """Each of `pairs` freshly initialised with `seed`, its BN statistics those of `images` (see
    `calibrate_batchnorm`), labelled NAME-init."""
    fresh = []
    for fresh_name, options in pairs:
        net = fresh_net(fresh_name, {**options, **data_options}, seed).to(device)
        calibrate_batchnorm(net, images, batch_size)
        fresh.append(_Net(unique_label(f"{fresh_name}-init", taken), net, False, f"fresh, seed {seed}"))
    return fresh


def timed_path_gradients(net: BlockNet, images: torch.Tensor, labels: torch.Tensor, samples: int,
                         generator: torch.Generator, batch_size: int, device: torch.device,
                         progress: PathsProgress | None) -> tuple[pd.DataFrame, float]:
    """`path_gradients`, and the seconds it took (the device synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    gradients = path_gradients(net, images, labels, samples, generator, batch_size, device, progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return gradients, time.perf_counter() - t0


def block_gradients(nets: Sequence[_Net], images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    progress: PathsProgress | None) -> pd.DataFrame:
    """block_gradients.csv: every net's gradient norm at each block (`block_gradient_norms`)."""
    rows = []
    for i, entry in enumerate(nets):
        norms = block_gradient_norms(entry.net, images, labels, batch_size)
        rows += [dict(run=entry.label, residual=entry.net.residual, trained=entry.trained, block=b, grad_norm=g)
                 for b, g in enumerate(norms)]
        if progress:
            progress("block gradients", i + 1, len(nets))
    return pd.DataFrame(rows, columns=list(BLOCK_COLUMNS))


def first_last_ratios(blocks: pd.DataFrame) -> dict[str, float]:
    """Per net: the gradient norm at its first block over that at its last (inf when the last is 0)."""
    ratios = {}
    for label, group in blocks.groupby("run", sort=False):
        g = group.sort_values("block")["grad_norm"].to_numpy()
        ratios[label] = float(g[0] / g[-1]) if g[-1] > 0 else float("inf")
    return ratios


def paths_info(*, model: str, analysed: _Net, nets: Sequence[_Net], data: str, seed: int, samples: int,
               batch_images: int, window: float, total: pd.DataFrame, distribution: pd.DataFrame,
               ratios: dict[str, float], path_seconds: float, device: torch.device, tf32: bool) -> dict[str, Any]:
    """paths_info.json (its `seconds` is filled in at the end)."""
    n = int(distribution["k"].max())
    lo, hi, _ = effective_window(total["k"], total["fraction"], window)
    post_activation = any(b.post_activation for b in analysed.net.blocks)
    return {
        "model": model,
        "source": analysed.source,
        "trained": analysed.trained,
        "blocks": n,
        "data": data,
        "seed": seed,
        "samples": samples,
        "batch_size": batch_images,
        "window_fraction": window,
        "window": [lo, hi],
        "window_gradient_fraction": float(total["fraction"].iloc[lo:hi + 1].sum()),
        "window_paths_fraction": float(distribution["fraction"].iloc[lo:hi + 1].sum()),
        "centre": n / 2,
        "mode": n // 2,
        "gradient_peak_k": int(total["fraction"].idxmax()),
        "first_last_block_gradient_ratio": ratios,
        "seconds_path_gradients": round(path_seconds, 3),
        "seconds": None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": ("tf32" if tf32 else "fp32") if device.type == "cuda" else "fp32",
        "post_activation": post_activation,
        "note": POST_ACTIVATION_NOTE if post_activation else PRE_ACTIVATION_NOTE,
        "grad_norm": "L2 norm of one example's gradient of its own cross-entropy; path gradients at the first "
                     "block's input (stem output); block gradients at each block's input, mean over the batch",
        "batchnorm": "eval mode; " + ("running statistics from training" if analysed.trained else
                                       "statistics of the analysed batch (fresh net, nothing learnt)"),
        "nets": [dict(run=e.label, model=e.net.model_name, residual=e.net.residual, trained=e.trained, source=e.source)
                 for e in nets],
    }


def run_paths(
    checkpoints: Sequence[str | Path] = (),
    model: str | None = None,
    *,
    init: bool = False,
    data: str | None = None,
    data_dir: str | Path | None = None,
    samples: int = 1000,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    tf32: bool = True,
    window: float = 0.9,
    out: str | Path | None = "results/paths",
    progress: PathsProgress | None = None,
    overwrite: bool = True,
    force: bool = False,
) -> PathsResult:
    """The path study (library entry point of `resx paths`).

    Nets: the checkpoints given (run folders or checkpoint.pt files), or a fresh `model`. The path analysis runs on
    the first residual net given (with `init`, on a fresh seeded copy of it); a plain net there is an error when
    no residual net is given. Every net given gets block gradients (plain ones too: e.g. `resnet56 plain56`), and so
    do, freshly initialised with `seed`, the analysed model, every other residual net given, and their plain twins.
    Data: `data`, else the first checkpoint's dataset, else cifar10; the batch is `batch_size` un-augmented
    training images drawn with `seed` (default batch: 500 on CUDA, 128 on the CPU).
    Writes the CSVs and paths_info.json into `out` (None: write nothing). An earlier paths study there is replaced
    (its files removed first) with `overwrite`, refused without it (the CLI's default). Runs that are not finished,
    or `data` other than a run's own, are refused unless `force`.
    """
    from resx.data import load_dataset
    from resx.engine import resolve_device

    started = time.perf_counter()
    check_paths_options(checkpoints, model, samples, batch_size)
    seed = 0 if seed is None else seed
    dev = resolve_device(device)
    batch_size = batch_size or (500 if dev.type == "cuda" else 128)

    taken: set[str] = set()  # the nets' labels
    loaded = load_trained_nets(checkpoints, data, force, taken)
    name, own_options, data, data_dir = analysed_model(loaded, model, data, data_dir)
    earlier = guards.check_study_folder(out, "paths", overwrite) if out is not None else []
    dataset = load_dataset(data, data_dir)
    for entry in loaded:
        guards.check_data_fits(entry.label, entry.checkpoint.get("model_name", ""),
                               entry.checkpoint.get("model_options"), dataset, what="analyse")
    pairs = fresh_pairs(name, own_options, loaded)
    check_batchnorm_batch(pairs, min(batch_size, len(dataset.train_images)))
    guards.remove_files(earlier)  # every check passed: the earlier study goes
    generator = torch.Generator().manual_seed(seed)  # the batch, then the path draws
    images, labels = analysis_batch(dataset, batch_size, generator, dev)

    with precision(dev, tf32):  # BN calibration, path and block gradients: TF32 or strict fp32, never bf16
        fresh = build_fresh_nets(pairs, dataset.model_options, seed, images, batch_size, taken, dev)
        for entry in loaded:
            entry.net.to(dev)
        analysed = fresh[0] if model or init else next(entry for entry in loaded if entry.net.residual)
        check_residual(analysed.net)
        gradients, path_seconds = timed_path_gradients(analysed.net, images, labels, samples, generator, batch_size,
                                                       dev, progress)
        nets = [*loaded, *fresh]
        blocks = block_gradients(nets, images, labels, batch_size, progress)

    n = len(analysed.net.blocks)
    distribution, total = path_distribution(n), total_gradient(gradients)
    ratios = first_last_ratios(blocks)
    info = paths_info(model=name, analysed=analysed, nets=nets, data=data, seed=seed, samples=samples,
                      batch_images=len(images), window=window, total=total, distribution=distribution, ratios=ratios,
                      path_seconds=path_seconds, device=dev, tf32=tf32)
    result = PathsResult(name, n, distribution, gradients, total, blocks, info, None, ratios)
    info["seconds"] = round(time.perf_counter() - started, 3)
    if out is not None:
        write_paths_results(result, out)
    return result


def write_paths_results(result: PathsResult, out: str | Path) -> Path:
    """The four CSVs and paths_info.json into `out`, each written atomically."""
    from resx.atomic import write_csv_atomic, write_json_atomic

    out = Path(out)
    write_csv_atomic(out / "path_distribution.csv", result.distribution[list(DISTRIBUTION_COLUMNS)])
    write_csv_atomic(out / "path_gradients.csv", result.gradients[list(GRADIENT_COLUMNS)])
    write_csv_atomic(out / "path_total_gradient.csv", result.total[list(TOTAL_COLUMNS)])
    write_csv_atomic(out / "block_gradients.csv", result.block_gradients[list(BLOCK_COLUMNS)])
    write_json_atomic(out / "paths_info.json", result.info)
    result.out = out
    from resx.plots import plot_paths  # Veit et al. 2016 Fig. 6 and the block gradient norms, from the CSVs

    result.figures = list(plot_paths(out))
    return out
