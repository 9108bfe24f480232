"""Kendall's rank correlation tau, for the reordering lesion (Veit et al. 2016, §4.3 and Fig. 5b).

Veit et al. measure how far a shuffled residual net is from its trained order by Kendall's tau between the
original block order and the new one: 1 for the original order, -1 for the reversed one. Orders are
permutations (no ties), so tau = 1 - 4 D / (n (n - 1)) where D is the number of discordant pairs, which is
the number of inversions of one order read in the ranks of the other. D is counted by merge sort in
O(n log n); `discordant_pairs_brute_force` is the O(n^2) definition the tests check it against.
"""

from __future__ import annotations

from collections.abc import Sequence


def count_inversions(values: Sequence[int]) -> int:
    """Pairs i < j with values[i] > values[j], by merge sort."""
    items = list(values)
    inversions = 0
    width = 1
    n = len(items)
    while width < n:
        merged: list[int] = []
        for lo in range(0, n, 2 * width):
            left, right = items[lo : lo + width], items[lo + width : lo + 2 * width]
            i = j = 0
            while i < len(left) and j < len(right):
                if right[j] < left[i]:
                    # right[j] jumps over every element still waiting on the left: each is one inversion.
                    inversions += len(left) - i
                    merged.append(right[j])
                    j += 1
                else:
                    merged.append(left[i])
                    i += 1
            merged += left[i:] + right[j:]
        items = merged
        width *= 2
    return inversions


def _ranks_in(order: Sequence[int], reference: Sequence[int]) -> list[int]:
    if len(order) != len(reference) or sorted(order) != sorted(reference) or len(set(order)) != len(order):
        raise ValueError("Kendall's tau needs two orders of the same distinct items")
    position = {item: rank for rank, item in enumerate(reference)}
    return [position[item] for item in order]


def kendall_tau(order: Sequence[int], reference: Sequence[int] | None = None) -> float:
    """Kendall's tau between `order` and `reference` (default: sorted order, i.e. 0..n-1 for block indices)."""
    reference = sorted(order) if reference is None else reference
    ranks = _ranks_in(order, reference)
    n = len(ranks)
    if n < 2:
        return 1.0
    pairs = n * (n - 1) // 2
    return 1.0 - 2.0 * count_inversions(ranks) / pairs


def discordant_pairs_brute_force(order: Sequence[int], reference: Sequence[int] | None = None) -> int:
    """The O(n^2) definition: pairs ordered one way in `reference` and the other way in `order`."""
    reference = sorted(order) if reference is None else reference
    ranks = _ranks_in(order, reference)
    return sum(1 for i in range(len(ranks)) for j in range(i + 1, len(ranks)) if ranks[i] > ranks[j])
