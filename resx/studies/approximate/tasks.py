"""The study's 2-D tasks, drawn from a seed with numpy: points in the plane, half in class 1 and half in class 0.

    ball          Lin & Jegelka 2018's toy: class 1 uniform in the disc |z| <= radius, class 0 uniform in the ring
                  ring_inner <= |z| <= ring_outer (uniform in area). A net must enclose the disc to separate them,
                  which a ReLU net of hidden width <= 2 cannot (its class-1 region reaches infinity).
    rings         concentric bands of `width` with `gap` between them, alternating classes: class 1 in the centre
                  disc, class 0 in the next ring, and so on (each class uniform in area over its bands).
    spiral        two interleaved Archimedean spirals (class 1 is class 0's turned by half a turn) of `turns` turns
                  out to `radius`, with Gaussian noise of std `noise` in each coordinate.
    checkerboard  the square [-half, half]^2 cut into cells x cells squares of alternating classes (class 1 where the
                  cell's row and column indices have an even sum); each class uniform over its squares.

Seed s draws its training points, then its test points, from numpy's default_rng([s, DATA_STREAM]); the nets of
seed s (every model and depth) see the same points, so that their numbers are paired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from resx.errors import ResxError
from resx.studies.approximate.declare import INTEGER_TASK_OPTIONS, TASKS

DATA_STREAM = 1806  # the second word of the data generator's seed (arXiv 1806.10909), apart from the nets' seeds
EXTENT_FACTOR = 1.5  # the decision-region grid covers 1.5 times the data's box: what a net does just outside it


@dataclass(frozen=True)
class Task:
    name: str
    options: dict[str, float] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """The task with every option, as `--task` takes it: ball:radius=1:ring_inner=2:ring_outer=3."""
        return ":".join([self.name, *(f"{k}={self.options[k]:g}" for k in TASKS[self.name])])

    def option(self, key: str) -> float:
        return self.options.get(key, TASKS[self.name][key])

    @property
    def data_box(self) -> float:
        """Half the side of a square centred at 0 that holds every point (without the spiral's noise tails)."""
        o = self.option
        if self.name == "ball":
            return o("ring_outer")
        if self.name == "rings":
            return (int(o("rings")) - 1) * (o("width") + o("gap")) + o("width")
        if self.name == "spiral":
            return o("radius") + 3 * o("noise")
        return o("half")

    @property
    def extent(self) -> float:
        """Half the side of the decision-region grid."""
        return EXTENT_FACTOR * self.data_box


def make_task(name: str, options: dict[str, float] | None = None) -> Task:
    """A checked task: a known name, known options, values that make both classes (one-line errors otherwise)."""
    if name not in TASKS:
        raise ResxError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(TASKS[name]))
    if unknown:
        raise ResxError(f"task {name!r} has no option {unknown[0]!r}; allowed: {', '.join(TASKS[name])}")
    resolved: dict[str, float] = {}
    for key, default in TASKS[name].items():
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ResxError(f"task {name!r}: {key} must be a finite number, got {value!r}")
        if key in INTEGER_TASK_OPTIONS:
            if value != int(value):
                raise ResxError(f"task {name!r}: {key} must be a whole number, got {value:g}")
            value = int(value)
        resolved[key] = value
    task = Task(name, resolved)
    _check(task)
    return task


def _check(task: Task) -> None:
    o = task.option
    problems = {
        "ball": (lambda: 0 < o("radius") < o("ring_inner") < o("ring_outer"),
                 "needs 0 < radius < ring_inner < ring_outer"),
        "rings": (lambda: o("rings") >= 2 and o("width") > 0 and o("gap") > 0,
                  "needs rings >= 2 (both classes), width > 0 and gap > 0"),
        "spiral": (lambda: o("turns") > 0 and o("radius") > 0 and o("noise") >= 0,
                   "needs turns > 0, radius > 0 and noise >= 0"),
        "checkerboard": (lambda: o("cells") >= 2 and o("half") > 0, "needs cells >= 2 (both classes) and half > 0"),
    }
    fine, need = problems[task.name]
    if not fine():
        raise ResxError(f"task {task.spec}: {need}")


# --- the generators: (points [n, 2], labels [n]) for n_class points of one class ------------------------------
def _polar(radius: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0.0, 2 * np.pi, len(radius))
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _uniform_radius(inner: float, outer: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Radii of points uniform in area over the ring inner <= r <= outer."""
    return np.sqrt(rng.uniform(inner ** 2, outer ** 2, n))


def _ball(task: Task, cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    o = task.option
    radius = _uniform_radius(0.0, o("radius"), n, rng) if cls else _uniform_radius(o("ring_inner"), o("ring_outer"), n, rng)
    return _polar(radius, rng)


def _rings(task: Task, cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    o = task.option
    step, width = o("width") + o("gap"), o("width")
    bands = [k for k in range(int(o("rings"))) if (k % 2 == 0) == bool(cls)]  # class 1: the centre disc, band 2, ...
    edges = np.array([(k * step, k * step + width) for k in bands])
    area = edges[:, 1] ** 2 - edges[:, 0] ** 2
    which = rng.choice(len(bands), size=n, p=area / area.sum())
    radius = np.sqrt(rng.uniform(edges[which, 0] ** 2, edges[which, 1] ** 2))
    return _polar(radius, rng)


def _spiral(task: Task, cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    o = task.option
    top = 2 * np.pi * o("turns")
    theta = top * np.sqrt(rng.uniform(0.0, 1.0, n))  # about uniform along the arc
    radius = o("radius") * theta / top
    angle = theta + (np.pi if cls else 0.0)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points + rng.normal(0.0, o("noise"), points.shape)


def _checkerboard(task: Task, cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    cells, half = int(task.option("cells")), task.option("half")
    size = 2 * half / cells
    mine = np.array([(i, j) for i in range(cells) for j in range(cells) if ((i + j) % 2 == 0) == bool(cls)])
    which = mine[rng.integers(0, len(mine), n)]
    return -half + size * (which + rng.uniform(0.0, 1.0, (n, 2)))


GENERATORS = {"ball": _ball, "rings": _rings, "spiral": _spiral, "checkerboard": _checkerboard}


def class_of(task: Task, points: np.ndarray) -> np.ndarray:
    """The true class of any points, where the task defines one (ball and rings: -1 in the gaps; checkerboard: -1
    outside the square; spiral: -1, it is defined by its samples only). For the tests and the report."""
    o = task.option
    radius = np.hypot(points[:, 0], points[:, 1])
    out = np.full(len(points), -1)
    if task.name == "ball":
        out[radius <= o("radius")] = 1
        out[(radius >= o("ring_inner")) & (radius <= o("ring_outer"))] = 0
    elif task.name == "rings":
        step = o("width") + o("gap")
        band = np.floor(radius / step).astype(int)
        inside = (radius - band * step <= o("width")) & (band < int(o("rings")))
        out[inside] = (band[inside] % 2 == 0).astype(int)
    elif task.name == "checkerboard":
        cells, half = int(o("cells")), o("half")
        cell = np.floor((points + half) / (2 * half / cells)).astype(int)
        inside = ((cell >= 0) & (cell < cells)).all(axis=1)
        out[inside] = ((cell[inside].sum(axis=1) % 2) == 0).astype(int)
    return out


def sample(task: Task, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points of `task` (n // 2 of class 1, the rest class 0), shuffled: (points [n, 2] float32, labels [n])."""
    ones = n // 2
    points = np.concatenate([GENERATORS[task.name](task, 1, ones, rng), GENERATORS[task.name](task, 0, n - ones, rng)])
    labels = np.concatenate([np.ones(ones, dtype=np.int64), np.zeros(n - ones, dtype=np.int64)])
    order = rng.permutation(n)
    return points[order].astype(np.float32), labels[order]


def task_data(task: Task, seed: int, train_points: int, test_points: int):
    """Seed `seed`'s (train points, train labels, test points, test labels): the same for every model and depth."""
    rng = np.random.default_rng([seed, DATA_STREAM])
    train = sample(task, train_points, rng)
    test = sample(task, test_points, rng)
    return (*train, *test)
