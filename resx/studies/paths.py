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

Outputs (tidy CSV, written atomically): path_distribution.csv (k, paths, fraction), path_gradients.csv
(k, samples, grad_norm_mean, grad_norm_std), path_total_gradient.csv (k, total, fraction), block_gradients.csv
(run, residual, trained, block, grad_norm), paths_info.json.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from resx.errors import ResxError
from resx.studies import guards
from resx.models.net import BlockNet
from resx.studies.gradient_gates import gated_blocks_forward

PathsProgress = Callable[[str, int, int], None]  # (stage, done, total)

DISTRIBUTION_COLUMNS = ("k", "paths", "fraction")
GRADIENT_COLUMNS = ("k", "samples", "grad_norm_mean", "grad_norm_std")
TOTAL_COLUMNS = ("k", "total", "fraction")
BLOCK_COLUMNS = ("run", "residual", "trained", "block", "grad_norm")

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
@contextlib.contextmanager
def analysis_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients (the backward pass then computes input gradients only, about the
    cost of a forward pass); both restored afterwards."""
    was_training = net.training
    flags = [p.requires_grad for p in net.parameters()]
    net.eval()
    net.requires_grad_(False)
    try:
        yield net
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)
        net.train(was_training)


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
    stats = frame.groupby("k")["grad_norm"].agg(["count", "mean", "std"]).reindex(range(n + 1))
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


def effective_window(fractions: Sequence[float] | np.ndarray, fraction: float = 0.9) -> tuple[int, int]:
    """The shortest contiguous range of path lengths [lo, hi] holding at least `fraction` of the total
    (Veit et al. 2016 §5: "5 to 17 blocks" for ResNet-110). `fractions[k]` is the share at length k (need not be
    normalised). Ties go to the range holding more, then to the shorter paths."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    values = np.clip(np.asarray(fractions, dtype=np.float64), 0.0, None)
    if values.sum() <= 0:
        raise ValueError("the distribution is all zero")
    cumulative = np.concatenate([[0.0], np.cumsum(values / values.sum())])
    need = fraction - 1e-12  # float slack so that fraction = 1 accepts the whole range
    best: tuple[int, float, int, int] | None = None
    for lo in range(len(values)):
        end = int(np.searchsorted(cumulative, cumulative[lo] + need, side="left"))  # first end with mass >= need
        if end > len(values):
            break
        end = max(end, lo + 1)
        key = (end - lo, -(cumulative[end] - cumulative[lo]), lo, end - 1)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2], best[3]


# --- gradient per block ------------------------------------------------------------------------------------------
def calibrate_batchnorm(net: nn.Module, images: torch.Tensor, batch_size: int = 500) -> None:
    """Replace the BN running statistics by those of `images` (cumulative average over chunks), learning
    nothing else. For a fresh net, whose statistics (0, 1) describe no data; see the module docstring."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = net.training
    net.eval()  # stochastic depth and everything else as at test time ...
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the chunks
        m.train()  # ... but BN normalises with the batch's statistics and records them
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                net(images[start:start + batch_size])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        net.train(was_training)


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


@contextlib.contextmanager
def _precision(device: torch.device, tf32: bool) -> Iterator[None]:
    """TF32 (10-bit mantissa, fp32 range) or strict fp32 on CUDA, restored afterwards; never bf16 (see
    `path_gradients`)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _run_label(path: Path, ckpt: dict, taken: set[str]) -> str:
    path = Path(path)
    label = path.name if path.is_dir() else (path.parent.name if path.stem == "checkpoint" else path.stem)
    label = label or ckpt.get("model_name", "run")
    unique, i = label, 2
    while unique in taken:
        unique, i = f"{label}#{i}", i + 1
    taken.add(unique)
    return unique


def _fresh_net(name: str, options: dict, seed: int) -> BlockNet:
    """A seeded fresh net, without touching the caller's global RNG. The same seed gives a residual net and its
    plain twin the same weights (same parameters, built in the same order)."""
    from resx.models import create_model, get_model_spec
    from resx.models.registry import DATA_OPTIONS

    spec = get_model_spec(name)
    allowed = set(DATA_OPTIONS) | set(spec.options)
    opts = {k: v for k, v in options.items() if k in allowed and v is not None}
    if not spec.residual:
        opts.pop("stochastic_depth", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, **opts)


def _twin(name: str) -> str | None:
    from resx.models import get_model_spec, twin_name

    try:
        return twin_name(name)
    except ResxError:
        spec = get_model_spec(name)
        if spec.family == "preact" and spec.depth and (spec.depth - 2) % 6 == 0:
            return f"plain{spec.depth}"  # no exact twin (pre-activation); the basic-block plain net of that depth
        return None


def _check_data(label: str, ckpt: dict, data_options: dict) -> None:
    stored = ckpt.get("model_options", {})
    for key, value in data_options.items():
        if key in stored and stored[key] != value:
            raise ResxError(
                f"{label} was trained on data with {key}={stored[key]}, but the analysed data has {key}={value}; "
                "give nets trained on one dataset (or --data matching them)"
            )


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
    from resx.data import load_dataset, normalize
    from resx.engine import load_model, read_checkpoint, resolve_device
    from resx.models.registry import DATA_OPTIONS

    started = time.perf_counter()
    if samples < 1:
        raise ResxError(f"--samples must be at least 1, got {samples}")
    if batch_size is not None and batch_size < 1:
        raise ResxError(f"--batch-size must be at least 1, got {batch_size}")
    if not checkpoints and not model:
        raise ResxError("give a run folder or checkpoint to analyse, or --model NAME for a freshly initialised net")
    if checkpoints and model:
        raise ResxError("give checkpoints or --model, not both (use --init to analyse a checkpoint's model at initialisation)")
    seed = 0 if seed is None else seed
    dev = resolve_device(device)
    batch_size = batch_size or (500 if dev.type == "cuda" else 128)

    # --- the nets -----------------------------------------------------------------------------------------
    loaded: list[tuple[_Net, dict]] = []
    taken: set[str] = set()
    for path in checkpoints:
        ckpt = read_checkpoint(path)
        guards.check_run(str(path), path, (ckpt.get("config") or {}).get("data"), data, force=force, what="analyse")
        net, ckpt = load_model(ckpt)
        loaded.append((_Net(_run_label(Path(path), ckpt, taken), net, True, str(path)), ckpt))
    if model:
        from resx.models import get_model_spec

        spec = get_model_spec(model)  # unknown names: one-line error before any data is loaded
        if not spec.residual:
            raise ResxError(f"{model} has no shortcuts: the path analysis needs a residual net")
        name, own_options, data = model, {}, data or "cifar10"
    else:
        residual = [(n, c) for n, c in loaded if n.net.residual]
        if not residual:
            first = loaded[0][0].net.model_name
            raise ResxError(f"{first} has no shortcuts: the path analysis needs a residual net")
        primary, primary_ckpt = residual[0]
        name = primary_ckpt["model_name"]
        own_options = {k: v for k, v in primary_ckpt["model_options"].items() if k not in DATA_OPTIONS}
        config = primary_ckpt.get("config", {})
        data = data or config.get("data") or "cifar10"
        data_dir = data_dir or config.get("data_dir")

    earlier = guards.check_study_folder(out, "paths", overwrite) if out is not None else []

    # --- the batch ------------------------------------------------------------------------------------------
    dataset = load_dataset(data, data_dir)
    data_options = dataset.model_options
    for net_entry, ckpt in loaded:
        _check_data(net_entry.label, ckpt, data_options)
    guards.remove_files(earlier)  # every check passed: the earlier study goes
    generator = torch.Generator().manual_seed(seed)
    count = min(batch_size, len(dataset.train_images))
    index = torch.randperm(len(dataset.train_images), generator=generator)[:count]
    mean = torch.tensor(dataset.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, device=dev).view(1, -1, 1, 1)
    images = normalize(dataset.train_images[index].to(dev), mean, std)
    labels = dataset.train_labels[index].to(dev)

    with _precision(dev, tf32):  # BN calibration, path and block gradients: TF32 or strict fp32, never bf16
        # --- the fresh nets, at initialisation: the analysed model and its plain twin, then each other residual net
        # given and its twin (e.g. ResNet-56 and plain-56 beside a trained 110): every trained pair gets its pair at init.
        wanted: list[tuple[str, dict]] = [(name, own_options)]
        wanted += [(ckpt["model_name"], {k: v for k, v in ckpt["model_options"].items() if k not in DATA_OPTIONS})
                   for entry, ckpt in loaded if entry.net.residual]
        pairs: list[tuple[str, dict]] = []
        planned: set[tuple[str, Any]] = set()  # (name, depth): an MLP's depth is an option, not in its name
        for base_name, options in wanted:
            for fresh_name in (base_name, _twin(base_name)):
                if fresh_name is not None and (fresh_name, options.get("depth")) not in planned:
                    planned.add((fresh_name, options.get("depth")))
                    pairs.append((fresh_name, options))
        fresh: list[_Net] = []
        for fresh_name, options in pairs:
            net = _fresh_net(fresh_name, {**options, **data_options}, seed).to(dev)
            calibrate_batchnorm(net, images, batch_size)
            label = f"{fresh_name}-init"
            while label in taken:
                label += "'"
            taken.add(label)
            fresh.append(_Net(label, net, False, f"fresh, seed {seed}"))
        for entry, _ in loaded:
            entry.net.to(dev)

        if model or init:
            analysed = fresh[0]
        else:
            analysed = next(entry for entry, _ in loaded if entry.net.residual)
        net = analysed.net
        check_residual(net)
        n = len(net.blocks)
        post_activation = any(b.post_activation for b in net.blocks)

        # --- gradient per path length ----------------------------------------------------------------------------
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        gradients = path_gradients(net, images, labels, samples, generator, batch_size, dev, progress)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        path_seconds = time.perf_counter() - t0

        # --- gradient per block -------------------------------------------------------------------------------------
        rows = []
        nets = [entry for entry, _ in loaded] + fresh
        for i, entry in enumerate(nets):
            norms = block_gradient_norms(entry.net, images, labels, batch_size)
            rows += [dict(run=entry.label, residual=entry.net.residual, trained=entry.trained, block=b, grad_norm=g)
                     for b, g in enumerate(norms)]
            if progress:
                progress("block gradients", i + 1, len(nets))
    blocks = pd.DataFrame(rows, columns=list(BLOCK_COLUMNS))

    distribution = path_distribution(n)
    total = total_gradient(gradients)
    lo, hi = effective_window(total["fraction"].to_numpy(), window)
    ratios = {}
    for label, group in blocks.groupby("run", sort=False):
        g = group.sort_values("block")["grad_norm"].to_numpy()
        ratios[label] = float(g[0] / g[-1]) if g[-1] > 0 else float("inf")

    info = {
        "model": name,
        "source": analysed.source,
        "trained": analysed.trained,
        "blocks": n,
        "data": data,
        "seed": seed,
        "samples": samples,
        "batch_size": count,
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
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": ("tf32" if tf32 else "fp32") if dev.type == "cuda" else "fp32",
        "post_activation": post_activation,
        "note": POST_ACTIVATION_NOTE if post_activation else PRE_ACTIVATION_NOTE,
        "grad_norm": "L2 norm of one example's gradient of its own cross-entropy; path gradients at the first "
                     "block's input (stem output); block gradients at each block's input, mean over the batch",
        "batchnorm": "eval mode; " + ("running statistics from training" if analysed.trained else
                                       "statistics of the analysed batch (fresh net, nothing learnt)"),
        "nets": [dict(run=e.label, model=e.net.model_name, residual=e.net.residual, trained=e.trained, source=e.source)
                 for e in nets],
    }
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
