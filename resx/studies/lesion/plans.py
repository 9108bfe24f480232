"""Which lesions a net can take, and the random draws of them (Veit et al. 2016 §4): the blocks that may be
deleted, the same-shape pairs that may be swapped, the options that name them, a lesioned net as a plan, position
by position, and each run's plan of studies (`plan_run`), checked before anything is evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from resx.errors import ResxError
from resx.options import int_list
from resx.studies.common import TrainedRun
from resx.studies.lesion.declare import DEFAULT_MAX_K, STUDIES
from resx.studies.lesion.kendall import kendall_tau
from resx.text import count

# A lesioned net, position by position: (index of the block run there, True when it is deleted).
Plan = tuple[tuple[int, bool], ...]


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


def swap_groups(net: nn.Module) -> list[list[int]]:
    """The positions whose blocks may be exchanged, group by group: non-downsampling blocks of one shape (same
    stage, same channels in and out), groups of two or more only."""
    groups: dict[tuple, list[int]] = {}
    for b in net.block_info():
        if not b.downsampling:
            groups.setdefault((b.stage, b.in_channels, b.out_channels), []).append(b.index)
    return [members for members in groups.values() if len(members) > 1]


def swappable_pairs(net: nn.Module) -> list[tuple[int, int]]:
    """Pairs of positions whose blocks have the same shape and keep it (same stage, not downsampling), so that
    swapping them keeps every tensor shape (Veit et al. 2016 §4.3: "swap ... building blocks of the same size")."""
    return [(i, j) for members in swap_groups(net) for a, i in enumerate(members) for j in members[a + 1 :]]


def groups_of_pairs(pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The groups (`swap_groups`) that `pairs` (`swappable_pairs`) come from: every pair of a group is there."""
    groups: list[set[int]] = []
    for a, b in pairs:
        joined = [g for g in groups if a in g or b in g]
        merged = set().union({a, b}, *joined)
        groups = [g for g in groups if g not in joined] + [merged]
    return [sorted(g) for g in groups]


def reachable_orders(pairs: Sequence[tuple[int, int]]) -> int:
    """How many orders of the blocks swaps of `pairs` can make, the original one included: g! per group of g."""
    return math.prod(math.factorial(len(g)) for g in groups_of_pairs(pairs))


def most_swaps(pairs: Sequence[tuple[int, int]]) -> int:
    """The most swaps any reachable order needs: g - 1 per group of g (a permutation of g blocks is at most g - 1
    transpositions). Every order more swaps make, fewer make too."""
    return sum(len(g) - 1 for g in groups_of_pairs(pairs))


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
    for swaps in counts:
        for d in range(draws):
            order = list(range(n))
            for pick in torch.randint(len(pairs), (swaps,), generator=generator).tolist():
                a, b = pairs[pick]
                order[a], order[b] = order[b], order[a]
            out.append((swaps, d, order, kendall_tau(order)))
    return out


# --- the options of a lesion study, and each run's plan -------------------------------------------------------------
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
    swap_counts: list[int] = field(default_factory=list)  # the asked-for counts this net can take
    notes: list[str] = field(default_factory=list)  # what was changed from the options, and why


def check_settings(studies: str | Iterable[str] | None, blocks: str | Iterable[int] | None, max_k: int | None,
                   draws: int, swaps: str | int | Iterable[int], seed: int, batch_size: int | None,
                   cache_bytes: int | None) -> LesionOptions:
    """The options, parsed and checked before anything is loaded."""
    explicit_studies = studies is not None
    parsed = parse_studies(studies)
    # --draws is not capped at the number of distinct sets (or orders) a draw can give: each draw is random, with
    # replacement (as Veit et al.'s), and labelled as the draw it is, so a set drawn twice is still "k blocks
    # deleted"; the mean over draws estimates the mean over sets either way. Swap counts are capped (plan_run):
    # there a count beyond the most any order needs labels a lesser lesion, or the intact net, with that count.
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


def plan_run(run: TrainedRun, settings: LesionOptions) -> RunPlan:
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
    swap_counts, notes = list(settings.swap_counts), []
    if "swap" in run_studies:
        swap_counts, note = swap_counts_for(run, pairs, settings.swap_counts)
        notes += [note] if note else []
    deletable = deletable_blocks(run.net)
    k_max = settings.max_k
    if "delete-k" in run_studies:
        if not deletable:
            raise ResxError(f"run {run.name} ({run.model}) has no non-downsampling block to delete")
        if k_max is None:
            k_max = min(DEFAULT_MAX_K, len(deletable))
        elif k_max > len(deletable):
            raise ResxError(f"--max-k {k_max} is more than the {count(len(deletable), 'deletable (non-downsampling) block')} "
                            f"of run {run.name} ({run.model})")
    return RunPlan(run_studies, skipped, deletable, k_max, pairs, swap_counts, notes)


def _orders(n: int) -> str:
    return count(n, "order") if n < 10**9 else f"{float(n):.2g} orders"


def swap_counts_for(run: TrainedRun, pairs: list[tuple[int, int]], asked: list[int]) -> tuple[list[int], str | None]:
    """The swap counts of `asked` that `run`'s net can take, and a note naming those it cannot (None: all fit).

    Capped, not refused, at the most swaps any order of its blocks needs (g - 1 per group of g same-shape blocks):
    a swap count is how far from the original order a lesion is meant to go, and more swaps than that only make
    orders that fewer swaps make too, down to the intact net (one pair: every even count swaps it back, and the
    intact net would be reported as "1000 swaps"). Capping keeps the counts that mean what they say, so one set of
    counts (the default 1..10, a profile's) serves nets of every size side by side; when no count is left, the
    option asked for nothing this net can do, and it is refused."""
    limit = most_swaps(pairs)
    kept = [c for c in asked if c <= limit]
    dropped = [c for c in asked if c > limit]
    if not dropped:
        return kept, None
    what = (f"run {run.name} ({run.model}) has {count(len(pairs), 'pair')} of same-shape blocks to swap: "
            f"{_orders(reachable_orders(pairs))} of its blocks, each reached in at most {count(limit, 'swap')}")
    if not kept:
        raise ResxError(f"--swaps {','.join(map(str, asked))}: {what}; more swaps only repeat orders fewer swaps make "
                        f"(down to the intact net); give swap counts up to {limit}")
    return kept, f"swap counts {','.join(map(str, dropped))} left out: {what}"
