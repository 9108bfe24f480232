"""The path-length distribution and the gradient per path length (Veit, Wilber, Belongie 2016, §5, Fig. 6).

Unravelled, a net of n blocks y_i = y_{i-1} + f_i(y_{i-1}) is a sum of 2^n paths; C(n, k) of them go through
exactly k residual branches (`path_distribution`: binomial, centred at n/2). The gradient a path of length k
carries (`path_gradients`, Fig. 6b) is measured with one forward pass and backward passes routed by per-example
gradient gates (gates.py): each example of a batch gets its own k and its own random k-subset of blocks, so
samples x (n + 1) measurements cost about samples x (n + 1) / batch_size backward passes over one retained forward
graph. BatchNorm runs in eval mode (`analysis_mode`), so each example's loss depends only on its own input and its
input gradient is one sample. `total_gradient` (Fig. 6c) is C(n, k) x the mean magnitude at k.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from resx.errors import ResxError
from resx.models.net import BlockNet
from resx.stats import mean_std
from resx.studies.common import analysis_mode
from resx.studies.paths.gates import gated_blocks_forward

PathsProgress = Callable[[str, int, int], None]  # (stage, done, total)


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


def chunks(images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def concatenates(net: BlockNet) -> bool:
    """True for a DenseNet (resx.models.densenet): its layers concatenate their new features to their input."""
    return any(getattr(block, "concatenates", False) for block in net.blocks)


def not_decomposable(name: str) -> str:
    """Why a DenseNet has no path analysis. Its layers are written as blocks y = x + pad(H(x)) (so that lesions
    apply), but each layer's maps are concatenated to the features, not added into them: no layer's branch and
    shortcut mix into one set of features, so Veit et al.'s 2^n shortcut-or-branch paths are not its structure."""
    return (f"{name} is a DenseNet: its layers concatenate new features to their input (y = concat(x, H(x))) instead of "
            "adding a branch to a shortcut (y = x + f(x)), so it has no shortcut-or-branch paths to count")


def analysable(net: BlockNet) -> bool:
    """A net the path analysis can take: residual blocks that add their branch to their shortcut."""
    return net.residual and not concatenates(net)


def check_residual(net: BlockNet) -> None:
    if concatenates(net):
        raise ResxError(not_decomposable(net.model_name or "this net"))
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
    sizes = [len(chunk) for chunk, _ in chunks(images, labels, batch_size)]
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
        for chunk, chunk_labels in chunks(images, labels, batch_size):
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
