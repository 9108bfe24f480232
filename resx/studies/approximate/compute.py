"""`resx approximate`: narrow nets against one-neuron ResNets on 2-D tasks (Lin & Jegelka 2018), measured.

For every seed, model spec and depth: a net is built from the seed, trained on the seed's points (train.py), and
measured: training and test accuracy, the final training loss, the share of far circles (radius 5, 50, 500) it puts
in class 1 and the largest class-1 margin on them (farfield.py); for the first seed also its decision region on a
grid. Every finished net is written at once (store.py), so that rerunning the same command after an interruption
skips what is done.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from resx.atomic import check_output_folder
from resx.errors import ResxError
from resx.options import int_list
from resx.provenance import now, provenance
from resx.studies import guards
from resx.studies.approximate.declare import (DEFAULT_DEPTHS, DEFAULT_GRID, DEFAULT_LR, DEFAULT_MODELS, DEFAULT_POINTS,
                                              DEFAULT_STEPS, FAR_ANGLES, LR_MILESTONES, MARGIN_COLUMNS, RADII,
                                              SEARCH_ANGLES, SHARE_COLUMNS, TASK_ABOUT)
from resx.studies.approximate.draw import summarise
from resx.studies.approximate.farfield import decision_grid, far_field
from resx.studies.approximate.specs import ModelChoice, resolve_models, resolve_task
from resx.studies.approximate.store import ApproximateStore
from resx.studies.approximate.tasks import DATA_STREAM, Task, task_data
from resx.studies.approximate.train import CURVE_POINTS, predictions, train_net
from resx.studies.common import precision as fp32_precision

PRECISION = "fp32"  # strict fp32 (no TF32 on CUDA): tiny nets, where speed is not the question


@dataclass
class ApproximateResult:
    out: Path
    frame: pd.DataFrame  # every row of approximation.csv
    info: dict[str, Any]

    def summary(self) -> pd.DataFrame:
        return summarise(self.frame.assign(label=self.frame["label"].astype(str)))


def check_options(steps: int, lr: float, batch_size: int | None, train_points: int, test_points: int, grid: int,
                  seeds: int) -> None:
    """One-line errors for values no run can use (the CLI's check_numbers catches most of them first)."""
    checks = [(steps >= 1, f"--steps must be at least 1, got {steps}"),
              (lr > 0 and lr == lr and lr != float("inf"), f"--lr must be a finite positive number, got {lr}"),
              (batch_size is None or batch_size >= 2, f"--batch-size must be at least 2 (BatchNorm), got {batch_size}"),
              (train_points >= 4, f"--train-points must be at least 4, got {train_points}"),
              (test_points >= 2, f"--test-points must be at least 2, got {test_points}"),
              (grid >= 2, f"--grid must be at least 2 points per side, got {grid}"),
              (seeds >= 1, f"--seeds must be at least 1, got {seeds}")]
    for fine, message in checks:
        if not fine:
            raise ResxError(message)


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[int]:
    """One CPU thread while the tiny nets train (more only adds overhead at these sizes); restored afterwards."""
    saved = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)


def recipe(steps: int, lr: float, batch_size: int | None, train_points: int) -> dict[str, Any]:
    batch = (f"full batch (all {train_points} training points every step)" if batch_size is None or
             batch_size >= train_points else f"shuffled minibatches of {batch_size} points")
    return {
        "optimizer": "Adam (betas 0.9, 0.999; no weight decay)",
        "batch": batch,
        "steps": steps,
        "lr": lr,
        "lr_schedule": f"divided by 10 at {', '.join(f'{100 * f:g}%' for f in LR_MILESTONES)} of the steps",
        "loss": "mean cross-entropy over two logits (softmax; the logistic loss of their difference)",
        "step": "one Adam update on one batch",
        "batchnorm": "mlp_*: batch statistics in training; afterwards the running statistics are those of the whole "
                     "training set, and every measurement is in eval mode",
        "initialisation": "onenet_res: U He-normal, b = 0, V ~ N(0, 1/depth^2) (resx/models/onenet.py); mlp_*: He "
                          "et al.'s (resx/models/net.py); seed s builds every net of seed s",
        "final_loss": "mean cross-entropy on the whole training set after training, eval mode",
    }


def _points_frame(task: Task, seed: int, data: tuple) -> pd.DataFrame:
    parts = []
    for split, points, labels in (("train", data[0], data[1]), ("test", data[2], data[3])):
        parts.append(pd.DataFrame({"task": task.name, "seed": seed, "split": split, "x": points[:, 0].round(5),
                                   "y": points[:, 1].round(5), "class": labels}))
    return pd.concat(parts, ignore_index=True)


def measure(choice: ModelChoice, depth: int, seed: int, task: Task, tensors: tuple, *, steps: int, lr: float,
            batch_size: int | None, grid: int | None, device: torch.device) -> tuple[dict, pd.DataFrame | None, pd.DataFrame]:
    """Build, train and measure one net: (its CSV row, its decision region or None, its loss curve)."""
    x_train, y_train, x_test, y_test = tensors
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = choice.build(depth).to(device)
    trained = train_net(net, x_train, y_train, steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    train_pred, test_pred = predictions(net, x_train), predictions(net, x_test)
    far = far_field(net)
    class1 = float(y_train.double().mean())
    row: dict[str, Any] = {
        "task": task.name, "model": choice.name, "width": choice.width, "depth": depth, "seed": seed,
        "params": sum(p.numel() for p in net.parameters()),
        "train_accuracy": float((train_pred == y_train).double().mean()),
        "test_accuracy": float((test_pred == y_test).double().mean()),
        "final_loss": trained.final_loss, "far_class1_share": far[-1].share,
        "label": choice.label, "residual": choice.residual, "hidden_layers": choice.hidden_layers(depth),
        **{column: f.share for column, f in zip(SHARE_COLUMNS, far)},
        **{column: f.margin_max for column, f in zip(MARGIN_COLUMNS, far)},
        "train_class1_share": float(train_pred.double().mean()), "majority_share": max(class1, 1 - class1),
        "loss_half": trained.loss_at(0.5), "loss_three_quarters": trained.loss_at(0.75), "steps": steps,
        "seconds": round(trained.seconds, 3),
    }
    key = {"label": choice.label, "depth": depth, "seed": seed}
    regions = None
    if grid is not None:
        xs, ys, p = decision_grid(net, task.extent, grid)
        regions = pd.DataFrame({"task": task.name, "model": choice.name, "depth": depth, "seed": seed,
                                "x": xs.numpy().round(5), "y": ys.numpy().round(5), "p_class1": p.numpy().round(4),
                                "label": choice.label})
    curve = pd.DataFrame([{"task": task.name, **key, "step": s, "loss": loss} for s, loss in trained.curve])
    return row, regions, curve


@guards.one_writer("approximate")
def run_approximate(
    task: str | Task = "ball",
    models: str | list[str] = DEFAULT_MODELS,
    depths: str | list[int] = DEFAULT_DEPTHS,
    seeds: int = 5,
    *,
    seed: int | None = None,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    batch_size: int | None = None,
    train_points: int = DEFAULT_POINTS,
    test_points: int = DEFAULT_POINTS,
    grid: int = DEFAULT_GRID,
    device: str = "auto",
    out: str | Path = "results/approximate",
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> ApproximateResult:
    """Train every model spec at every depth for `seeds` seeds (seed, seed + 1, ...) on `task` and measure each net;
    the files go to `out` (approximation.csv, _regions.csv.gz, _points.csv, _curves.csv, approximation_info.json)."""
    from resx.engine import resolve_device

    say = say or (lambda line: None)
    check_options(steps, lr, batch_size, train_points, test_points, grid, seeds)
    task = resolve_task(task)
    choices = resolve_models(models)
    depth_list = list(dict.fromkeys(int_list(depths, "--depths", minimum=1, allow_empty=False)))
    first = 0 if seed is None else seed
    if first < 0:
        raise ResxError(f"--seed must be at least 0, got {first}")
    seed_list = list(range(first, first + seeds))
    out = check_output_folder(out)
    dev = resolve_device(device)
    settings = {"task": task.spec, "steps": steps, "lr": lr, "lr_milestones": list(LR_MILESTONES),
                "batch_size": batch_size, "train_points": train_points, "test_points": test_points, "grid": grid,
                "radii": list(RADII), "far_angles": FAR_ANGLES, "search_angles": SEARCH_ANGLES,
                "precision": PRECISION}
    store = ApproximateStore(out, settings, overwrite)
    store.check()
    out.mkdir(parents=True, exist_ok=True)
    store.start()
    done = store.done()
    history = list(store.info.get("history") or [])
    earlier_seconds = float(store.info.get("seconds") or 0.0)
    total = len(seed_list) * len(choices) * len(depth_list)
    count = sum((c.label, d, s) in done for s in seed_list for c in choices for d in depth_list)
    started = time.perf_counter()
    label = f"approximate {task.name}"
    if count:
        say(f"{out}: {count} of {total} nets already done (resumed)")
    with _one_thread(dev) as threads, fp32_precision(dev, tf32=False):
        block = provenance(dev, PRECISION, threads=threads)
        invocation = {"time": now(), "git_commit": block["git_commit"], "device": str(dev),
                      "models": [c.label for c in choices], "depths": depth_list, "seeds": seed_list,
                      "nets_done_before": count}

        def info(final: bool = False) -> dict[str, Any]:
            spent = time.perf_counter() - started
            return {
                "study": "approximate", "settings": store.settings, "task": task.spec, "task_name": task.name,
                "task_options": task.options, "task_about": TASK_ABOUT[task.name], "grid_extent": task.extent,
                "models": {c.label: {"model": c.name, "options": c.options, "family": c.family,
                                     "residual": c.residual, "width": c.width} for c in choices},
                "depths": depth_list, "depth": "blocks: onenet_res one-neuron blocks x + V relu(U x + b); mlp_* "
                "blocks of two layers (2 * depth + 1 hidden layers, registry depth 2 * depth + 2); linear_* matrices",
                "seeds": seed_list, "seed": first,
                "data": f"seed s draws its {train_points} training and then {test_points} test points from numpy's "
                        f"default_rng([s, {DATA_STREAM}]), half of each class; every net of seed s sees them",
                "recipe": recipe(steps, lr, batch_size, train_points), "curve_points": CURVE_POINTS,
                "far_class1_share": f"the share of the circle of the largest radius ({RADII[-1]:g}) put in class 1; "
                                    f"far_class1_share_r* per radius, {FAR_ANGLES} equally spaced points each",
                "far_margin_max": f"the largest logit_1 - logit_0 found on each circle ({SEARCH_ANGLES} angles, then "
                                  "two finer searches around the best): above 0, class 1 reaches that circle",
                "regions": f"the first seed's nets, p(class 1) on a {grid} x {grid} grid over "
                           f"[-{task.extent:g}, {task.extent:g}]^2",
                "precision": PRECISION, "provenance": block, "threads": threads,
                "seconds": round(earlier_seconds + spent, 1), "finished": final,
                "history": [*history, {**invocation, "seconds": round(spent, 1)}],
            }

        store.write_info(info())
        if progress:
            progress(label, count, total)
        for s in seed_list:
            data = task_data(task, s, train_points, test_points)
            if s == first and not store.has_points(s):
                store.add_points(_points_frame(task, s, data))
            tensors = tuple(torch.as_tensor(a).to(dev) for a in data)
            for choice in choices:
                for depth in depth_list:
                    if (choice.label, depth, s) in done:
                        continue
                    row, regions, curve = measure(choice, depth, s, task, tensors, steps=steps, lr=lr,
                                                  batch_size=batch_size, grid=grid if s == first else None, device=dev)
                    store.add(row, regions, curve, info())
                    count += 1
                    say(f"{choice.label} depth {depth} seed {s}: train {100 * row['train_accuracy']:.1f}%, test "
                        f"{100 * row['test_accuracy']:.1f}%, class 1 on {100 * row['far_class1_share']:.1f}% of the "
                        f"r={RADII[-1]:g} circle ({row['seconds']:.1f} s)")
                    if progress:
                        progress(label, count, total)
        store.write_info(info(final=True))
    return ApproximateResult(out, store.rows.reset_index(drop=True), store.info)
