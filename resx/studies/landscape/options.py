"""The landscape study's options, checked before anything is loaded (one-line ResxErrors saying what is allowed),
and its grid of points: row-major (x slowest), shard I of N holding the points p with p % N == I - 1 (round robin,
like compare-plain's --shard). No torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resx.errors import ResxError
from resx.studies.landscape.declare import DEFAULT_SAMPLES, DIMS, DIRECTIONS, NORMS


def check_int(value: Any, option: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ResxError(f"{option} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ResxError(f"{option} must be an integer >= {low}, got {value}")
    return value


def check_choice(value: Any, allowed: Sequence[Any], option: str) -> Any:
    if value not in allowed:
        raise ResxError(f"unknown {option} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def parse_span(span: str | Sequence[float]) -> tuple[float, float]:
    """'-1:1' or (lo, hi) -> (lo, hi): finite numbers with lo < hi."""
    if isinstance(span, str):
        parts = span.replace(" ", "").split(":")
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise ResxError(f"--span {span!r}: expected LO:HI, e.g. -1:1") from None
    else:
        try:
            lo, hi = (float(v) for v in span)
        except (TypeError, ValueError):
            raise ResxError(f"--span {span!r}: expected two numbers (lo, hi), e.g. (-1, 1)") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ResxError(f"--span {span!r}: both ends must be finite numbers")
    if not lo < hi:
        raise ResxError(f"--span {span!r}: the start must be below the end (LO:HI, e.g. -1:1)")
    return lo, hi


def parse_shard(shard: str | Sequence[int] | None) -> tuple[int, int]:
    """'I/N', 'auto' (a SLURM array task's: resx.shards) or (I, N) -> (I, N) with 1 <= I <= N; None, or auto
    outside an array job, is (1, 1), the whole grid."""
    from resx.shards import parse_shard as parse

    return parse(shard) or (1, 1)


@dataclass(frozen=True)
class LandscapeOptions:
    """The checked options of one landscape study (samples and batch_size as asked for: None is automatic)."""

    dims: int
    span: tuple[float, float]
    points: int
    samples: int | None
    directions: str
    norm: str
    bn_recalibrate: bool
    shard: tuple[int, int]
    seed: int
    batch_size: int | None


def check_options(*, dims: Any, span: Any, points: Any, samples: Any, directions: Any, norm: Any,
                  bn_recalibrate: Any, shard: Any, seed: Any, batch_size: Any) -> LandscapeOptions:
    """Every option checked before anything is loaded: one-line ResxErrors saying what is allowed."""
    check_choice(directions, DIRECTIONS, "--directions")
    check_choice(norm, NORMS, "--norm")
    if isinstance(dims, bool) or dims not in DIMS:
        raise ResxError(f"--dims must be 1 or 2, got {dims!r}")
    if directions == "interpolate" and dims != 1:
        raise ResxError("--directions interpolate gives the 1D line between two nets; use --dims 1")
    points = check_int(points, "--points", 2)
    samples = None if samples is None else check_int(samples, "--samples", 1)
    batch_size = None if batch_size is None else check_int(batch_size, "--batch-size", 1)
    seed = check_int(seed, "--seed", 0)
    shard = parse_shard(shard)
    check_plan(int(dims), points, samples, shard)
    return LandscapeOptions(int(dims), parse_span(span), points, samples, directions, norm, bool(bn_recalibrate),
                            shard, seed, batch_size)


# The most grid points one process measures per net: 201 x 201, 16 times Li et al.'s densest grid (51 x 51), hours
# on a GPU and days on a CPU (a point is 1,024 to 8,192 forward passes). A larger grid is measured in slices on
# several processes or machines (--shard I/N, resumable into one --out), not refused outright: the cap is per shard.
MAX_POINTS = 201 * 201
GRID_POINT_BYTES = 200  # one grid point's (p, x, y) tuple in the list of the whole grid, built before sharding


def describe_plan(dims: int, points: int, samples: int | None) -> str:
    """'21 x 21 = 441 points x 1,024 images per net' (the images: --samples, or the defaults)."""
    grid = points ** dims
    images = f"{samples:,}" if samples else " or ".join(f"{n:,} ({d})" for d, n in DEFAULT_SAMPLES.items())
    axes = " x ".join([f"{points:,}"] * dims)
    return f"{axes + ' = ' if dims > 1 else ''}{grid:,} points x {images} images per net"


def check_plan(dims: int, points: int, samples: int | None, shard: tuple[int, int]) -> None:
    """Refuse, in one line and before anything is loaded, a grid whose list would not fit in memory, and one with
    more than MAX_POINTS points for this process (this shard) to measure per net."""
    from resx.memory import check_fits

    grid = points ** dims
    plan = describe_plan(dims, points, samples)
    check_fits(f"the landscape grid of {grid:,} points ({' x '.join([f'{points:,}'] * dims)})", grid * GRID_POINT_BYTES,
               "use fewer --points")
    mine = -(-grid // shard[1])  # the largest shard's points
    if mine > MAX_POINTS:
        sliced = f" in {shard[1]:,} shards is {mine:,} points per shard," if shard[1] > 1 else ""
        raise ResxError(f"landscape: {plan}{sliced} over the {MAX_POINTS:,} (201 x 201) one process measures per "
                        f"net; use fewer --points, or split the grid into at least {-(-grid // MAX_POINTS):,} shards "
                        f"with --shard I/N (each its own process, into the same --out)")


# --- the grid -----------------------------------------------------------------------------------------------------
def grid_axis(span: tuple[float, float], points: int) -> list[float]:
    """`points` evenly spaced steps from lo to hi, both included; a step within 1e-12 of 0 is exactly 0, so an odd
    number of points over a symmetric span measures the unperturbed net itself."""
    lo, hi = span
    values = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    return [0.0 if abs(v) < 1e-12 else v for v in values]


def grid_points(dims: int, span: tuple[float, float], points: int) -> list[tuple[int, float, float]]:
    """[(p, x, y)] in row-major order (x slowest); y = 0.0 in 1D."""
    axis = grid_axis(span, points)
    if dims == 1:
        return [(i, x, 0.0) for i, x in enumerate(axis)]
    return [(i * points + j, x, y) for i, x in enumerate(axis) for j, y in enumerate(axis)]


def shard_points(grid: Sequence[tuple[int, float, float]], shard: tuple[int, int]) -> list[tuple[int, float, float]]:
    """The points of shard I of N: those whose index p has p % N == I - 1 (round robin, so every shard gets centre
    and edge points alike)."""
    index, count = shard
    return [point for point in grid if point[0] % count == index - 1]
