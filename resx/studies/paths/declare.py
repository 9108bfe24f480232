"""What the path study declares (Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively
Shallow Networks", §5, Fig. 6): its files and their CSV columns, its section of a reproduce profile, and the
effective window of path lengths (the shortest range holding most of the gradient) with the distribution's
centre, which the study, its figures and REPORT.md all compute from the same numbers. No torch, no pandas (numpy
is imported inside the two functions that need it): every layer of the study may import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resx.studies.registry import OutputFile, figure_files

DISTRIBUTION_COLUMNS = ("k", "paths", "fraction")
GRADIENT_COLUMNS = ("k", "samples", "grad_norm_mean", "grad_norm_std")
TOTAL_COLUMNS = ("k", "total", "fraction")
BLOCK_COLUMNS = ("run", "residual", "trained", "block", "grad_norm")
INFO_NAME = "paths_info.json"
WINDOW_FRACTION = 0.9  # the effective window holds this share of the total gradient

OUTPUTS = (
    OutputFile("path_distribution.csv", DISTRIBUTION_COLUMNS, "number of paths of each length k (binomial)"),
    OutputFile("path_gradients.csv", GRADIENT_COLUMNS, "gradient norm of a path of length k (Fig. 6b)"),
    OutputFile("path_total_gradient.csv", TOTAL_COLUMNS, "total gradient of all paths of length k (Fig. 6c)"),
    OutputFile("block_gradients.csv", BLOCK_COLUMNS, "gradient norm reaching each block"),
    OutputFile(INFO_NAME, about="settings, provenance, the effective window, timings"),
    *figure_files("paths", "block_gradients"),
)


@dataclass
class PathsSettings:
    """The paths section of a reproduce profile."""

    samples: int = 1000
    batch_size: int | None = None


# --- the effective paths (numpy only) --------------------------------------------------------------------------
def effective_window(k: Sequence[float], total: Sequence[float], mass: float = WINDOW_FRACTION) -> tuple[int, int, float]:
    """The shortest contiguous range of path lengths [k_lo, k_hi] holding at least `mass` of the total gradient.

    Veit et al. 2016 (Sec. 5) find that almost all of the gradient comes from paths 5 to 17 blocks long in a
    54-block ResNet. `total[i]` is the gradient (or its share: it need not be normalised) at path length `k[i]`;
    missing or negative values count as 0. "Shortest" is measured in path lengths (k_hi - k_lo); among equally
    short windows the one holding the most gradient wins, then the one of shorter paths. Returns (k_lo, k_hi,
    share of the total inside)."""
    import numpy as np

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
    import numpy as np

    fraction = np.asarray(fraction, dtype=float)
    return float(np.sum(np.asarray(k, dtype=float) * fraction) / np.sum(fraction))
