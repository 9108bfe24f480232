"""Lesion studies of trained nets (Veit, Wilber & Belongie 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", §4): delete or reorder blocks at test time and measure the test error.

    single    delete each block in turn (§4.1, Fig. 3): the block is replaced by its shortcut (identity, or the
              downsampling shortcut where the shape changes); for a plain net its layers become the identity
              (option A map where the shape changes). Residual nets barely notice; plain nets drop to chance.
    delete-k  delete k random non-downsampling blocks together, k = 1..max_k, `draws` times each (§4.2, Fig. 5a):
              the error grows smoothly with k, as an ensemble's does when members are removed.
    swap      swap 1..K random pairs of blocks of the same shape (§4.3, Fig. 5b): the error grows smoothly as
              Kendall's tau between the original and the new order falls.

Every lesion runs in eval mode (BatchNorm running statistics) over the whole test set.

Speed (the full suite for ResNet-110 is 55 + 1,000 + 500 evaluations of 10,000 images):
  * prefix caching: the intact net's activations (the stem output and the output of every block) are computed
    once for the whole test set; a lesion whose first changed position is p starts from the cached input of p,
    so deleting block 50 of 54 costs 4 blocks, not 54. A deleted block costs only its shortcut. When the cache
    does not fit its memory budget, only every s-th position is kept and the few intact blocks between the
    nearest kept position and p are recomputed; with no budget at all, every lesion starts from the images.
  * the test set lives on the device; bf16 autocast, channels-last and BatchNorm folded into the convolutions
    on CUDA (fp32, unfolded on the CPU so results match `Evaluator` exactly); large eval batches.
  * error counts accumulate on the device: one host sync per study, not per batch or per lesion.
    Budget for ResNet-110 on CIFAR-10 (counted with these draws, not timed on a GPU): the suite costs about
    33,000 block passes over the test set with the cache against 43,000 without, counting a block on 16x16 maps
    as half and on 8x8 maps as a quarter of one on 32x32 maps (single: 600 vs 1,700; delete-k and swap gain
    less, their first change is early). At roughly 1-2 ms per 32x32 block pass over 10,000 images in bf16 on an
    H100 (memory-bound), that is 35-65 s: near the 60 s target, to be confirmed on a GPU. CUDA graphs are not
    used (every lesion is a different graph).
  * draws come from a torch.Generator seeded by `seed` (one stream per study), so runs compared side by side
    get the same deleted sets and swaps when their nets have the same blocks.

Library entry point: `run_lesion(...)`; it writes lesion_single.csv, lesion_delete_k.csv, lesion_swap.csv and
lesion_info.json (atomically) and returns a `LesionResult`. No typer or rich here: progress is a callback.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resx.atomic import write_csv_atomic, write_json_atomic
from resx.errors import ResxError
from resx.labels import run_label, unique_label
from resx.options import int_list
from resx.plugins.lesion import DELETE_K_COLUMNS, SINGLE_COLUMNS, SWAP_COLUMNS
from resx.studies import guards
from resx.studies.kendall import kendall_tau

STUDIES = ("single", "delete-k", "swap")
DEFAULT_MAX_K = 20  # Veit et al. 2016, Fig. 5a: k = 1..20 of ResNet-110's 54 blocks
DEFAULT_DRAWS = 50
DEFAULT_SWAPS = range(1, 11)  # Veit et al. 2016, Fig. 5b: up to 10 swapped pairs

# lesion_*.csv's columns are declared with the study (resx/plugins/lesion.py)

# A lesioned net, position by position: (index of the block run there, True when it is deleted).
Plan = tuple[tuple[int, bool], ...]
ProgressFn = Callable[[str, str, int, int], None]  # (run name, study, lesions done, lesions in the study)


# --- parsing and validation (shared by the CLI) -----------------------------------------------------------------
def parse_studies(studies: str | Iterable[str] | None) -> tuple[str, ...]:
    """'single,delete-k,swap' or a sequence of names; None means all three."""
    if studies is None:
        return STUDIES
    names = [s.strip() for s in (studies.split(",") if isinstance(studies, str) else studies)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in STUDIES]
    if unknown or not names:
        what = f"unknown study {unknown[0]!r}" if unknown else "no study given"
        raise ResxError(f"{what}; allowed: {', '.join(STUDIES)} (comma-separated)")
    return tuple(dict.fromkeys(names))


def parse_int_list(text: str | int | Iterable[int], what: str = "--swaps") -> list[int]:
    """'1..10' (a range, both ends included), '5', '1,2,5' or '1..3,8'; integers >= 1, each once, in order."""
    return list(dict.fromkeys(int_list(text, what, minimum=1, allow_empty=False)))


def parse_block_list(text: str | Iterable[int] | None) -> list[int] | None:
    """'0,5,18' or '0..8' (0-based block indices), each once, in order; None means every block."""
    if text is None:
        return None
    return list(dict.fromkeys(int_list(text, "--blocks", allow_empty=False,
                                       forms="0-based block indices: 3, 0..8 or 0,5,18")))


# --- which blocks a study may touch --------------------------------------------------------------------------------
def deletable_blocks(net: nn.Module) -> list[int]:
    """Non-downsampling blocks: Veit et al. 2016 §4.2 deletes only those in the k-block experiment, because a
    downsampling block's shortcut alone (a subsampled, zero-padded input) already costs much more (Fig. 3)."""
    return [b.index for b in net.block_info() if not b.downsampling]


def swappable_pairs(net: nn.Module) -> list[tuple[int, int]]:
    """Pairs of positions whose blocks have the same shape and keep it (same stage, not downsampling), so that
    swapping them keeps every tensor shape (Veit et al. 2016 §4.3: "swap ... building blocks of the same size")."""
    groups: dict[tuple, list[int]] = {}
    for b in net.block_info():
        if not b.downsampling:
            groups.setdefault((b.stage, b.in_channels, b.out_channels), []).append(b.index)
    return [(i, j) for members in groups.values() for a, i in enumerate(members) for j in members[a + 1 :]]


def intact_plan(n: int) -> Plan:
    return tuple((i, False) for i in range(n))


def deletion_plan(n: int, deleted: Iterable[int]) -> Plan:
    deleted = set(deleted)
    return tuple((i, i in deleted) for i in range(n))


def order_plan(order: Sequence[int]) -> Plan:
    return tuple((i, False) for i in order)


def first_change(plan: Plan) -> int:
    """The first position where `plan` differs from the intact net (len(plan) if it does not)."""
    for position, step in enumerate(plan):
        if step != (position, False):
            return position
    return len(plan)


# --- draws -------------------------------------------------------------------------------------------------------
def draw_deletions(deletable: Sequence[int], ks: Iterable[int], draws: int, generator: torch.Generator):
    """[(k, draw, sorted deleted blocks)]: `draws` random k-subsets of `deletable` for each k."""
    out = []
    for k in ks:
        for d in range(draws):
            pick = torch.randperm(len(deletable), generator=generator)[:k].tolist()
            out.append((k, d, sorted(deletable[p] for p in pick)))
    return out


def draw_swaps(n: int, pairs: Sequence[tuple[int, int]], counts: Iterable[int], draws: int, generator: torch.Generator):
    """[(swaps, draw, new order, Kendall's tau)]: apply `swaps` random swaps of same-shape positions to 0..n-1.
    Swaps only ever exchange blocks within one shape group, so any position pair of a group stays valid."""
    out = []
    for count in counts:
        for d in range(draws):
            order = list(range(n))
            for pick in torch.randint(len(pairs), (count,), generator=generator).tolist():
                a, b = pairs[pick]
                order[a], order[b] = order[b], order[a]
            out.append((count, d, order, kendall_tau(order)))
    return out


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


# --- runs -------------------------------------------------------------------------------------------------------------
@dataclass
class LesionRun:
    """One trained net to lesion."""

    name: str
    checkpoint: Path
    net: nn.Module
    config: dict
    model: str
    data_spec: str
    data_dir: str | None

    @property
    def residual(self) -> bool:
        return bool(self.net.residual)


@dataclass
class LesionResult:
    out: Path
    single: Any  # pandas DataFrames with the CSV columns above
    delete_k: Any
    swap: Any
    info: dict
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self, ks: Sequence[int] = (1, 5, 10, 20), swap_counts: Sequence[int] = (1, 5, 10)) -> list[dict]:
        """One dict per run: baseline, single-block min/median/max (non-downsampling), the downsampling blocks'
        errors, delete-k mean at a few k, swap mean at a few counts, seconds per study (what the CLI table shows)."""
        rows = []
        for run in self.info["runs"]:
            name = run["run"]
            row: dict[str, Any] = {"run": name, "model": run["model"], "baseline": run.get("baseline_error")}
            s = self.single[self.single["run"] == name] if len(self.single) else self.single
            if len(s):
                kept = s[~s["downsampling"]]
                if len(kept):
                    row.update(single_min=kept["test_error"].min(), single_median=kept["test_error"].median(),
                               single_max=kept["test_error"].max())
                row["downsampling"] = {int(r.block): float(r.test_error) for r in s[s["downsampling"]].itertuples()}
            d = self.delete_k[self.delete_k["run"] == name] if len(self.delete_k) else self.delete_k
            if len(d):
                means = d.groupby("k")["test_error"].mean()
                row["delete_k"] = {int(k): float(means[k]) for k in ks if k in means.index}
            w = self.swap[self.swap["run"] == name] if len(self.swap) else self.swap
            if len(w):
                means = w.groupby("swaps")["test_error"].mean()
                row["swap"] = {int(c): float(means[c]) for c in swap_counts if c in means.index}
            row["seconds"] = run["seconds"]
            rows.append(row)
        return rows


def load_runs(checkpoints: Sequence[str | Path]) -> list[LesionRun]:
    """Each run folder or checkpoint, loaded (one-line errors for a missing, truncated or foreign one) and named
    after its folder (resx.labels: the same name twice becomes name-2)."""
    from resx.engine.checkpoint import find_checkpoint, load_model

    if not checkpoints:
        raise ResxError("give at least one run folder or checkpoint to lesion")
    runs: list[LesionRun] = []
    taken: set[str] = set()
    for path in checkpoints:
        file = find_checkpoint(path)  # one-line errors for a missing file or a folder without a checkpoint
        net, ckpt = load_model(file)  # ... and for a truncated or foreign one
        name = unique_label(run_label(path), taken)
        config = ckpt.get("config") or {}
        runs.append(LesionRun(name, file, net, config, ckpt.get("model_name", ""), config.get("data", ""),
                              config.get("data_dir")))
    return runs


@dataclass
class LesionOptions:
    """The options of one lesion study, checked (see `run_lesion`)."""

    studies: tuple[str, ...]
    explicit_studies: bool  # the studies were asked for (not the default): a study a net cannot take is an error
    draws: int
    swap_counts: list[int]
    blocks: list[int] | None
    max_k: int | None
    seed: int
    batch_size: int | None
    cache_bytes: int | None


@dataclass
class RunPlan:
    """What one run's lesions will be: its studies, those skipped (and why), the blocks they may touch."""

    studies: list[str]
    skipped: dict[str, str]
    deletable: list[int]
    max_k: int | None
    pairs: list[tuple[int, int]]


@dataclass
class LesionRows:
    """The rows of the three CSVs, gathered run by run."""

    single: list[dict] = field(default_factory=list)
    delete_k: list[dict] = field(default_factory=list)
    swap: list[dict] = field(default_factory=list)

    def frames(self):
        import pandas as pd

        return (pd.DataFrame(self.single, columns=SINGLE_COLUMNS),
                pd.DataFrame(self.delete_k, columns=DELETE_K_COLUMNS),
                pd.DataFrame(self.swap, columns=SWAP_COLUMNS))


def check_settings(studies: str | Iterable[str] | None, blocks: str | Iterable[int] | None, max_k: int | None,
                   draws: int, swaps: str | int | Iterable[int], seed: int, batch_size: int | None,
                   cache_bytes: int | None) -> LesionOptions:
    """The options, parsed and checked before anything is loaded."""
    explicit_studies = studies is not None
    parsed = parse_studies(studies)
    if draws < 1:
        raise ResxError(f"--draws must be at least 1, got {draws}")
    swap_counts = parse_int_list(swaps, "--swaps")
    block_list = parse_block_list(blocks)
    if max_k is not None and max_k < 1:
        raise ResxError(f"--max-k must be at least 1, got {max_k}")
    if batch_size is not None and batch_size < 1:
        raise ResxError(f"--batch-size must be positive, got {batch_size}")
    return LesionOptions(parsed, explicit_studies, draws, swap_counts, block_list, max_k, seed, batch_size,
                          cache_bytes)


def plan_run(run: LesionRun, settings: LesionOptions) -> RunPlan:
    """Which studies `run` gets, checked against its blocks: swap needs shortcuts and two blocks of one shape
    (skipped for the default studies, an error when asked for), --blocks must exist, --max-k must not exceed
    the deletable blocks (default: 20, or all of them when fewer)."""
    n = len(run.net.blocks)
    run_studies = list(settings.studies)
    skipped: dict[str, str] = {}
    pairs = swappable_pairs(run.net)
    if "swap" in run_studies and (not run.residual or not pairs):
        why = ("has no shortcuts; swapping blocks needs a residual net" if not run.residual
               else "has no two blocks of the same shape to swap")
        if settings.explicit_studies:
            raise ResxError(f"run {run.name} ({run.model}) {why}")
        # Default studies: a plain net (or one with a single block per stage) gets single and delete-k only.
        run_studies.remove("swap")
        skipped["swap"] = why
    if settings.blocks is not None:
        bad = [b for b in settings.blocks if not 0 <= b < n]
        if bad:
            raise ResxError(f"--blocks: block {bad[0]} out of range; run {run.name} ({run.model}) has blocks 0..{n - 1}")
    deletable = deletable_blocks(run.net)
    k_max = settings.max_k
    if "delete-k" in run_studies:
        if not deletable:
            raise ResxError(f"run {run.name} ({run.model}) has no non-downsampling block to delete")
        if k_max is None:
            k_max = min(DEFAULT_MAX_K, len(deletable))
        elif k_max > len(deletable):
            raise ResxError(f"--max-k {k_max} is more than the {len(deletable)} deletable (non-downsampling) "
                            f"blocks of run {run.name} ({run.model})")
    return RunPlan(run_studies, skipped, deletable, k_max, pairs)


def load_run_data(run: LesionRun, data: str | None, data_dir: str | Path | None,
                  datasets: dict[tuple, Any]) -> tuple[str, str | None]:
    """The dataset `run` is lesioned on (`data`, else its own), loaded into `datasets` unless it is there already,
    and checked to fit the net; returns its key in `datasets`."""
    from resx.data import load_dataset

    spec = data or run.data_spec
    if not spec:
        raise ResxError(f"run {run.name}: its checkpoint names no dataset; give --data")
    root = data_dir if data_dir is not None else run.data_dir
    key = (spec, str(root) if root else None)
    if key not in datasets:
        datasets[key] = load_dataset(spec, root)
    guards.check_data_fits(run.name, run.model, getattr(run.net, "model_options", None), datasets[key],
                           what="lesion")
    return key


def study_info(settings: LesionOptions, device: torch.device, precision: str) -> dict[str, Any]:
    """lesion_info.json's settings; its `runs` are added as they are lesioned."""
    return {
        "study": "lesion (Veit et al. 2016, §4)",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": precision,
        "studies": list(settings.studies),
        "draws": settings.draws,
        "swaps": settings.swap_counts,
        "max_k": settings.max_k,
        "seed": settings.seed,
        "blocks": settings.blocks,
        "runs": [],
    }


def _study_generator(seed: int, offset: int) -> torch.Generator:
    """Each study draws from its own generator, so adding or dropping a study leaves the others' draws alone."""
    return torch.Generator().manual_seed(seed * 1000 + offset)


def lesion_single(run: LesionRun, evaluator: LesionEvaluator, baseline: float, blocks: list[int] | None,
                  report: Callable | None) -> list[dict]:
    """Veit et al. 2016 §4.1, Fig. 3: each block deleted in turn (the paper numbers blocks from 1; we from 0)."""
    n = len(run.net.blocks)
    info_blocks = run.net.block_info()
    chosen = blocks if blocks is not None else list(range(n))
    errors, losses = evaluator.evaluate([deletion_plan(n, [b]) for b in chosen], report)
    return [dict(run=run.name, block=b, stage=info_blocks[b].stage, downsampling=info_blocks[b].downsampling,
                 test_error=err, baseline_error=baseline, test_loss=loss, model=run.model, residual=run.residual)
            for b, err, loss in zip(chosen, errors, losses)]


def lesion_delete_k(run: LesionRun, evaluator: LesionEvaluator, baseline: float, plan: RunPlan,
                    settings: LesionOptions, report: Callable | None) -> list[dict]:
    """Veit et al. 2016 §4.2, Fig. 5a: k random non-downsampling blocks deleted together."""
    n = len(run.net.blocks)
    draws = draw_deletions(plan.deletable, range(1, plan.max_k + 1), settings.draws,
                           _study_generator(settings.seed, 1))
    errors, losses = evaluator.evaluate([deletion_plan(n, d) for _, _, d in draws], report)
    return [dict(run=run.name, k=k, draw=d, test_error=err, baseline_error=baseline, test_loss=loss,
                 deleted=" ".join(map(str, deleted)), model=run.model, residual=run.residual)
            for (k, d, deleted), err, loss in zip(draws, errors, losses)]


def lesion_swap(run: LesionRun, evaluator: LesionEvaluator, baseline: float, plan: RunPlan,
                settings: LesionOptions, report: Callable | None) -> list[dict]:
    """Veit et al. 2016 §4.3, Fig. 5b: random same-shape pairs swapped; error against Kendall's tau."""
    n = len(run.net.blocks)
    draws = draw_swaps(n, plan.pairs, settings.swap_counts, settings.draws, _study_generator(settings.seed, 2))
    errors, losses = evaluator.evaluate([order_plan(o) for _, _, o, _ in draws], report)
    return [dict(run=run.name, swaps=count, draw=d, kendall_tau=tau, test_error=err, baseline_error=baseline,
                 test_loss=loss, order=" ".join(map(str, order)), model=run.model, residual=run.residual)
            for (count, d, order, tau), err, loss in zip(draws, errors, losses)]


def lesion_one_run(run: LesionRun, plan: RunPlan, data: Any, settings: LesionOptions, rows: LesionRows, *,
               device: torch.device, precision: str, progress: ProgressFn | None) -> dict[str, Any]:
    """Every study of `plan` on one run: its rows are added to `rows`; returns its entry of lesion_info.json."""
    n = len(run.net.blocks)
    seconds: dict[str, float] = {}

    def report(study: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: progress(run.name, study, done, total)) if progress else None

    t0 = time.perf_counter()
    evaluator = LesionEvaluator(run.net, data.test_images, data.test_labels, data.mean, data.std, device=device,
                                precision=precision, batch_size=settings.batch_size, cache_bytes=settings.cache_bytes)
    (baseline,), (baseline_loss,) = evaluator.evaluate([intact_plan(n)])
    seconds["cache"] = time.perf_counter() - t0
    for study, target, lesion in (
        ("single", rows.single, lambda r: lesion_single(run, evaluator, baseline, settings.blocks, r)),
        ("delete-k", rows.delete_k, lambda r: lesion_delete_k(run, evaluator, baseline, plan, settings, r)),
        ("swap", rows.swap, lambda r: lesion_swap(run, evaluator, baseline, plan, settings, r)),
    ):
        if study in plan.studies:
            t0 = time.perf_counter()
            target += lesion(report(study))
            seconds[study] = time.perf_counter() - t0
    info_blocks = run.net.block_info()
    return {
        "run": run.name,
        "checkpoint": str(run.checkpoint),
        "model": run.model,
        "residual": run.residual,
        "stochastic_depth": run.config.get("stochastic_depth"),
        "data": data.name,
        "test_images": evaluator.num_images,
        "blocks": n,
        "downsampling_blocks": [b.index for b in info_blocks if b.downsampling],
        "studies": plan.studies,
        "skipped": plan.skipped,
        "max_k": plan.max_k,
        "baseline_error": baseline,
        "baseline_loss": baseline_loss,
        "batch_size": evaluator.batch_size,
        "cached_positions": len(evaluator.cached_positions),
        "cache_mb": round(evaluator.cache_bytes / 2**20, 1),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "total_seconds": round(sum(seconds.values()), 3),
    }


def write_lesion_outputs(out: Path, studies: Sequence[str], rows: LesionRows, info: dict[str, Any],
                         files: dict[str, Path]) -> None:
    """The CSV of every asked-for study and lesion_info.json, atomically; `files` gets their paths. Called after
    every run, so that a long multi-run lesion keeps what it has finished."""
    single, delete_k, swap = rows.frames()
    for study, name, frame in (("single", "lesion_single.csv", single), ("delete-k", "lesion_delete_k.csv", delete_k),
                               ("swap", "lesion_swap.csv", swap)):
        if study in studies:
            files[study] = write_csv_atomic(out / name, frame)
    info["files"] = {k: str(v) for k, v in files.items()}
    files["info"] = write_json_atomic(out / "lesion_info.json", info)


def run_lesion(
    checkpoints: Sequence[str | Path],
    *,
    data: str | None = None,
    data_dir: str | Path | None = None,
    studies: str | Iterable[str] | None = None,
    blocks: str | Iterable[int] | None = None,
    max_k: int | None = None,
    draws: int = DEFAULT_DRAWS,
    swaps: str | int | Iterable[int] = DEFAULT_SWAPS,
    seed: int = 0,
    device: str = "auto",
    batch_size: int | None = None,
    cache_bytes: int | None = None,
    out: str | Path = Path("results/lesion"),
    progress: ProgressFn | None = None,
    overwrite: bool = True,
    force: bool = False,
) -> LesionResult:
    """Lesion each trained run (a run folder or checkpoint.pt) and write the CSVs and lesion_info.json into `out`.

    data:        dataset spec; default: each run's own training dataset (from its checkpoint's config)
    studies:     'single', 'delete-k', 'swap' (comma string or sequence). None: all three, with `swap` skipped
                 for nets that cannot be reordered (plain nets: no shortcuts; nets with no two blocks of one
                 shape); asking for `swap` explicitly on such a net is an error. The CSV of every asked-for
                 study is written, even when it has no rows.
    blocks:      restrict `single` to these 0-based block indices (default: every block)
    max_k:       delete-k for k = 1..max_k; default 20, or every deletable block when a net has fewer
    draws:       random draws per k and per swap count
    swaps:       swap counts: '1..10', '5', '1,2,5' or a sequence of ints
    seed:        seeds the torch.Generator of each study's draws
    cache_bytes: memory for the prefix cache (None: automatic, 0: off)
    progress:    called as progress(run name, study, done, total) after each lesion
    overwrite:   replace an earlier lesion study in `out` (its files are removed first, so nothing mixes); False
                 (the CLI's default): refuse it
    force:       lesion runs that are not finished, or on other data than their own (refused otherwise)
    """
    from resx.engine.device import resolve_device, resolve_precision

    settings = check_settings(studies, blocks, max_k, draws, swaps, seed, batch_size, cache_bytes)
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev)
    out = Path(out)
    earlier = guards.check_study_folder(out, "lesion", overwrite)

    # Check every run and option before the first evaluation: a mistake should cost seconds, not a study.
    runs = load_runs(checkpoints)
    for run in runs:
        guards.check_run(run.name, run.checkpoint, run.data_spec, data, force=force, what="lesion")
    datasets: dict[tuple, Any] = {}  # (spec, folder): the loaded dataset, shared by the runs that use it
    plans: dict[str, RunPlan] = {}
    data_keys: dict[str, tuple] = {}
    for run in runs:
        plans[run.name] = plan_run(run, settings)
        data_keys[run.name] = load_run_data(run, data, data_dir, datasets)
    guards.remove_files(earlier)  # every check passed: the earlier study goes, so that nothing mixes

    rows = LesionRows()
    info = study_info(settings, dev, precision)
    files: dict[str, Path] = {}
    for run in runs:
        info["runs"].append(lesion_one_run(run, plans[run.name], datasets[data_keys[run.name]], settings, rows,
                                       device=dev, precision=precision, progress=progress))
        write_lesion_outputs(out, settings.studies, rows, info, files)

    from resx.plots import plot_lesion  # Veit et al. 2016 Fig. 3 and 5, drawn from the CSVs just written

    for figure in plot_lesion(out):
        files[figure.name] = figure
    return LesionResult(out, *rows.frames(), info, files)
