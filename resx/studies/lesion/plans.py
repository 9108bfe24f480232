"""Which lesions a net can take, and the random draws of them (Veit et al. 2016 §4): the blocks that may be
deleted, the same-shape pairs that may be swapped, the options that name them, and a lesioned net as a plan,
position by position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from resx.errors import ResxError
from resx.options import int_list
from resx.studies.lesion.declare import STUDIES
from resx.studies.lesion.kendall import kendall_tau

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
    for count in counts:
        for d in range(draws):
            order = list(range(n))
            for pick in torch.randint(len(pairs), (count,), generator=generator).tolist():
                a, b = pairs[pick]
                order[a], order[b] = order[b], order[a]
            out.append((count, d, order, kendall_tau(order)))
    return out
