"""Test error of lesioned nets from the intact net's cached activations (the speed of the lesion study: see
resx.studies.lesion.compute's docstring).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resx.errors import ResxError
from resx.studies.lesion.plans import Plan, first_change


# --- the evaluator with prefix caching --------------------------------------------------------------------------------
def fold_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of an eval-mode net with every Conv2d -> BatchNorm2d pair (inside an nn.Sequential) folded into one
    convolution: the same function with fewer kernels and memory passes. Used on CUDA only."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                    module._modules[a] = fuse_conv_bn_eval(conv, bn)
                    module._modules[b] = nn.Identity()
    return net


def choose_cached_positions(sizes: Sequence[int], budget: int) -> list[int]:
    """Which activations to keep (positions 0..n: the input of block p; n is the last block's output).
    All of them when they fit `budget` bytes; else every s-th one for the smallest stride s that fits (a
    lesion starting at p then recomputes at most s - 1 intact blocks); none if not even one fits."""
    positions = range(len(sizes))
    for stride in range(1, len(sizes) + 1):
        chosen = list(positions[::stride])
        if sum(sizes[p] for p in chosen) <= budget:
            return chosen
    return []


def free_cuda_memory(device: torch.device) -> int:
    """Bytes free on the GPU, counting what PyTorch holds cached but unused (the previous run's lesion cache,
    released but still reserved, would otherwise shrink the next run's batch and cache)."""
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    return free


def default_cache_budget(device: torch.device) -> int:
    """Bytes for the prefix cache. CUDA: half the free memory (ResNet-110 on 10,000 CIFAR images needs about
    10.6 GB in bf16). CPU: a quarter of the available RAM, at most 2 GiB (all of ResNet-110 would be 21 GB in
    fp32; then every s-th position is cached, see `choose_cached_positions`)."""
    if device.type == "cuda":
        return int(free_cuda_memory(device) * 0.5)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 << 30
    return int(min(2 << 30, available // 4))


class LesionEvaluator:
    """Test error of lesioned versions of one trained net, from the intact net's cached activations.

    `evaluate(plans)` returns the error and mean loss of each plan; `logits(plan)` the logits (for tests)."""

    def __init__(
        self,
        net: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        device: torch.device,
        precision: str = "fp32",
        batch_size: int | None = None,
        cache_bytes: int | None = None,
        fold_bn: bool | None = None,
    ):
        from resx.data.augment import normalize

        self._normalize = normalize
        self.device, self.precision = device, precision
        net = net.to(device).eval()
        if fold_bn if fold_bn is not None else device.type == "cuda":
            net = fold_batchnorm(net)
        self.channels_last = device.type == "cuda" and images.dim() == 4
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.blocks = list(net.blocks)
        self.n = len(self.blocks)
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.num_images = int(self.images.shape[0])
        shape = (1, self.images.shape[1], 1, 1) if self.images.dim() == 4 else (1, -1)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
        # bf16 on CUDA: the activations are bf16 under autocast anyway, so the cache costs half and loses nothing.
        self.cache_dtype = torch.bfloat16 if precision == "bf16" else torch.float32

        shapes = self._activation_shapes()
        per_image = [math.prod(s) * self.cache_dtype.itemsize for s in shapes]
        if batch_size is None:
            batch_size = self._auto_batch_size(max(per_image))
        self.batch_size = max(1, min(batch_size, self.num_images))
        self.chunks = [(s, min(s + self.batch_size, self.num_images)) for s in range(0, self.num_images, self.batch_size)]

        budget = default_cache_budget(device) if cache_bytes is None else cache_bytes
        self.cached_positions = choose_cached_positions([p * self.num_images for p in per_image], budget)
        self.cache_bytes = sum(per_image[p] * self.num_images for p in self.cached_positions)
        self.cache: dict[int, torch.Tensor] = {}
        self._fill_cache(shapes)

    # --- setup ---
    def _inputs(self, start: int, end: int) -> torch.Tensor:
        return self._normalize(self.images[start:end], self.mean, self.std, channels_last=self.channels_last)

    def _autocast(self):
        from resx.engine.device import autocast

        return autocast(self.device, self.precision)

    @torch.no_grad()
    def _activation_shapes(self) -> list[tuple[int, ...]]:
        """Per-image shape of the input of each position 0..n (n: the last block's output), from one image."""
        with self._autocast():
            h = self.net.stem(self._inputs(0, 1))
            shapes = [tuple(h.shape[1:])]
            for block in self.blocks:
                h = block(h)
                shapes.append(tuple(h.shape[1:]))
        return shapes

    def _auto_batch_size(self, largest_activation_bytes: int) -> int:
        if self.device.type != "cuda":
            return 1000  # as `Evaluator`, so the baseline matches `resx train`'s test error exactly
        # The whole test set at once when it fits: fewest kernel launches. A block holds a few activations alive.
        free = free_cuda_memory(self.device)
        return max(256, int(0.15 * free) // (8 * largest_activation_bytes))

    @torch.no_grad()
    def _fill_cache(self, shapes: list[tuple[int, ...]]) -> None:
        if not self.cached_positions:
            return
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for p in self.cached_positions:
            fmt = memory_format if len(shapes[p]) == 3 else torch.contiguous_format
            self.cache[p] = torch.empty((self.num_images, *shapes[p]), dtype=self.cache_dtype, device=self.device,
                                        memory_format=fmt)
        wanted = set(self.cached_positions)
        for start, end in self.chunks:
            with self._autocast():
                h = self.net.stem(self._inputs(start, end))
                for p in range(self.n + 1):
                    if p in wanted:
                        self.cache[p][start:end].copy_(h)
                        h = self.cache[p][start:end]  # continue from the cached value: cache on/off give the same
                    if p < self.n:
                        h = self.blocks[p](h)

    # --- evaluation ---
    def start_position(self, plan: Plan) -> int | None:
        """The cached position to start `plan` from (None: from the images)."""
        first = first_change(plan)
        usable = [p for p in self.cached_positions if p <= first]
        return usable[-1] if usable else None

    def _forward_chunk(self, plan: Plan, start: int | None, chunk: tuple[int, int]) -> torch.Tensor:
        lo, hi = chunk
        with self._autocast():
            if start is None:
                h, start = self.net.stem(self._inputs(lo, hi)), 0
            else:
                h = self.cache[start][lo:hi]
            # Positions before `start` run the intact blocks, which is what the cache holds.
            for i, deleted in plan[start:]:
                block = self.blocks[i]
                h = block.forward_deleted(h) if deleted else block(h)
            return self.net.head(h)

    @torch.no_grad()
    def logits(self, plan: Plan, use_cache: bool = True) -> torch.Tensor:
        self._check(plan)
        start = self.start_position(plan) if use_cache else None
        return torch.cat([self._forward_chunk(plan, start, c).float() for c in self.chunks])

    @torch.no_grad()
    def evaluate(self, plans: Sequence[Plan], progress: Callable[[int, int], None] | None = None,
                 use_cache: bool = True) -> tuple[list[float], list[float]]:
        """(test errors, mean test losses) of `plans`, read back from the device once at the end."""
        for plan in plans:
            self._check(plan)
        wrong = torch.zeros(len(plans), dtype=torch.int64, device=self.device)
        loss = torch.zeros(len(plans), dtype=torch.float32, device=self.device)
        first_of: dict[tuple, int] = {}  # random draws repeat (k = 1 draws among few blocks): evaluate each plan once
        for k, plan in enumerate(plans):
            key = tuple(plan)
            if key in first_of:
                wrong[k], loss[k] = wrong[first_of[key]], loss[first_of[key]]
                if progress:
                    progress(k + 1, len(plans))
                continue
            first_of[key] = k
            start = self.start_position(plan) if use_cache else None
            for chunk in self.chunks:
                logits = self._forward_chunk(plan, start, chunk).float()
                labels = self.labels[chunk[0] : chunk[1]]
                wrong[k] += (logits.argmax(dim=1) != labels).sum()
                loss[k] += F.cross_entropy(logits, labels, reduction="sum")
            if progress:
                progress(k + 1, len(plans))
        n = self.num_images
        return (wrong.cpu() / n).tolist(), (loss.cpu() / n).tolist()

    def _check(self, plan: Plan) -> None:
        bad = [i for i, _ in plan if not 0 <= i < self.n]
        if bad:
            raise ResxError(f"block {bad[0]} out of range; this net has blocks 0..{self.n - 1}")
