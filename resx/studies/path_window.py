"""The effective paths of a residual net (Veit, Wilber, Belongie 2016, §5): the shortest range of path lengths
that carries most of the gradient, and the mean path length. numpy only (no torch, no matplotlib), for the
study (resx.studies.paths), its figures (resx.plots.paths) and REPORT.md alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def effective_window(k: Sequence[float], total: Sequence[float], mass: float = 0.9) -> tuple[int, int, float]:
    """The shortest contiguous range of path lengths [k_lo, k_hi] holding at least `mass` of the total gradient.

    Veit et al. 2016 (Sec. 5) find that almost all of the gradient comes from paths 5 to 17 blocks long in a
    54-block ResNet. `total[i]` is the gradient (or its share: it need not be normalised) at path length `k[i]`;
    missing or negative values count as 0. "Shortest" is measured in path lengths (k_hi - k_lo); among equally
    short windows the one holding the most gradient wins, then the one of shorter paths. Returns (k_lo, k_hi,
    share of the total inside)."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    order = np.argsort(np.asarray(k, dtype=float))
    ks = np.asarray(k, dtype=float)[order]
    values = np.clip(np.nan_to_num(np.asarray(total, dtype=float)[order]), 0, None)
    if len(ks) == 0 or values.sum() <= 0:
        raise ValueError("the total gradient is empty or zero")
    share = values / values.sum()
    cumulative = np.concatenate([[0.0], np.cumsum(share)])
    best: tuple[float, float, int, int] | None = None  # (width, -captured, lo, hi)
    for lo in range(len(ks)):
        # the first hi at which [lo, hi] holds enough (tolerance for float sums such as 0.1 + 0.8)
        need = cumulative[lo] + mass - 1e-12
        hi = int(np.searchsorted(cumulative, need, side="left")) - 1
        if hi >= len(ks) or cumulative[min(hi + 1, len(ks))] < need:
            break  # windows starting further right hold less
        hi = max(hi, lo)
        captured = cumulative[hi + 1] - cumulative[lo]
        candidate = (ks[hi] - ks[lo], -captured, lo, hi)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    assert best is not None  # lo = 0 always reaches the whole mass
    _, neg_captured, lo, hi = best
    return int(ks[lo]), int(ks[hi]), float(-neg_captured)


def distribution_centre(k: Sequence[float], fraction: Sequence[float]) -> float:
    """The mean path length (n/2 for the binomial distribution of an n-block ResNet; 27 in Veit et al.)."""
    fraction = np.asarray(fraction, dtype=float)
    return float(np.sum(np.asarray(k, dtype=float) * fraction) / np.sum(fraction))
