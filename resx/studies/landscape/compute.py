"""Loss landscapes (Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets",
NeurIPS; Fig. 1 and Fig. 5: ResNet-56 is smooth and nearly convex around its minimum, the same net without
shortcuts chaotic): the whole study, `run_landscape`.

The training loss is measured on a grid of weights around a net's weights theta, along filter-normalised random
directions or the line between two nets (directions.py), on a fixed subset of the training set with a standard
error per point (surface.py), for trained runs or fresh nets (targets.py); the grid is resumable and shardable
(store.py). `say` gets the cost up front and an estimate from the measured first point (the centre).
landscape_info.json carries the provenance block (resx.provenance), with the precision the surface was measured
in (fp32 by default).

Library entry point: `run_landscape(...)`; no typer or rich here (progress and messages are callbacks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from resx.atomic import check_output_folder
from resx.provenance import provenance
from resx.studies import common
from resx.studies.landscape.metrics import surface_metrics
from resx.studies.landscape.options import LandscapeOptions, check_options, grid_points, shard_points
from resx.studies.landscape.store import LandscapeStore
from resx.studies.landscape.surface import SUBSET_STREAM, Point, Subset, measure, subset_size, training_subset
from resx.studies.landscape.targets import Target, load_targets, prepare_target

ProgressFn = Callable[[str, int, int], None]  # (run name, points done in this shard, points in this shard)


@dataclass
class LandscapeResult:
    out: Path
    frame: pd.DataFrame  # every row of landscape.csv (all runs, all shards so far)
    info: dict[str, Any]
    metrics: pd.DataFrame  # metrics.surface_metrics of the frame
    evaluated: int  # points measured by this call (the reference points not counted)
    skipped: int  # points of this shard that were already in landscape.csv
    figures: list[Path] = field(default_factory=list)


def _row(target: Target, options: LandscapeOptions, subset: Subset, p: int, x: float, y: float,
         point: Point) -> dict:
    return dict(run=target.name, residual=target.residual, dims=options.dims, x=x, y=y, train_loss=point.loss,
                train_error=point.error, loss_se=point.loss_se, model=target.model, point=p, samples=subset.samples,
                bn_recalibrate=target.recalibrate, directions=options.directions, norm=options.norm,
                seconds=round(point.seconds, 5))


def _study_info(options: LandscapeOptions, dataset: Any, subset: Subset, device: torch.device, precision: str,
                why: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "study": "loss landscape (Li et al. 2018, §4, Fig. 1 and Fig. 5)",
        # resx, torch, the device and the precision of the points measured last (a shard rewrites it)
        "provenance": provenance(device, precision),
        **settings,  # directions, dims, span, points, samples, batch_size, norm, bn_recalibrate, seed, precision, data
        "grid_points": options.points ** options.dims,
        "batches": len(subset.batches),
        "direction_seed": options.seed if options.directions == "random" else None,
        "subset": f"the first {subset.samples} of a permutation of the {len(dataset.train_images)} training images "
                  f"seeded with seed * 1000 + {SUBSET_STREAM}; no augmentation",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision_why": why,
        "loss_se": "std of the per-batch mean losses / sqrt(batches), equal-size batches",
        "note": "random directions: Gaussian, drawn parameter by parameter from a generator seeded with `seed` "
                f"(twins with identical parameter shapes get identical raw directions), {options.norm}-normalised"
                + ("; 1-D parameters (BN, biases) not moved" if options.norm != "none" else "")
                if options.directions == "random" else
                "interpolation (1 - a) theta0 + a theta1 with torch.lerp; BN running statistics interpolated unless "
                "recalibrated",
    }


def _settings(options: LandscapeOptions, subset: Subset, precision: str, dataset: Any) -> dict[str, Any]:
    from resx.data import normalise_data_spec

    return {"directions": options.directions, "dims": options.dims, "span": list(options.span),
            "points": options.points, "samples": subset.samples, "batch_size": subset.batch_size, "norm": options.norm,
            "bn_recalibrate": options.bn_recalibrate, "seed": options.seed, "precision": precision,
            "data": normalise_data_spec(dataset.name)}


def _reference_points(options: LandscapeOptions) -> list[tuple[float, float]]:
    """The unperturbed net (x = y = 0), and for an interpolation also its end (a = 1): measured first, for
    landscape_info.json and to time a point."""
    return [(0.0, 0.0), (1.0, 0.0)] if options.directions == "interpolate" else [(0.0, 0.0)]


def _announce(targets: Sequence[Target], todo: dict[str, list], options: LandscapeOptions, subset: Subset,
              skipped: int, say: Callable[[str], None]) -> None:
    grid = options.points ** options.dims
    count = sum(len(v) for v in todo.values())
    passes = sum(len(todo[t.name]) * (2 if t.recalibrate else 1) for t in targets) * subset.samples
    shard = f" in shard {options.shard[0]}/{options.shard[1]}" if options.shard[1] > 1 else ""
    say(f"landscape: {len(targets)} run(s) x {grid} points ({options.dims}D, {options.points} per axis over "
        f"{options.span[0]:g}:{options.span[1]:g}); {count} to do{shard}, {skipped} already done; x {subset.samples} "
        f"training images in batches of {subset.batch_size} = {passes:,} image passes"
        + (" (BN recalibration doubles a point's cost)" if any(t.recalibrate for t in targets) else ""))


def _measure_references(target: Target, options: LandscapeOptions, subset: Subset, device: torch.device,
                        precision: str) -> dict[tuple[float, float], Point]:
    from resx.engine.device import autocast

    with torch.no_grad(), autocast(device, precision):  # warm-up: kernels chosen and caches filled, not timed
        target.net(subset.batches[0][0])
    return {xy: measure(target, subset, *xy, device, precision) for xy in _reference_points(options)}


def _describe_target(target: Target, references: dict[tuple[float, float], Point]) -> dict[str, Any]:
    centre = references[(0.0, 0.0)]
    entry = {"model": target.model, "residual": target.residual, "trained": target.trained, "source": target.source,
             "checkpoint": target.checkpoint, "bn": target.bn, "bn_recalibrate": target.recalibrate,
             # its run's status, its epoch and iterations (an unfinished run studied with --force)
             "run_record": common.run_record(target.checkpoint) if target.trained and target.checkpoint else None,
             "centre_loss": centre.loss, "centre_error": centre.error, "centre_loss_se": centre.loss_se,
             "trained_loss": centre.loss if target.trained and (1.0, 0.0) not in references else None}
    if (1.0, 0.0) in references:
        end = references[(1.0, 0.0)]
        entry.update(end_loss=end.loss, end_error=end.error, trained_loss=end.loss)
    return entry


def run_landscape(
    runs: Sequence[str | Path] = (),
    model: str | None = None,
    *,
    init: bool = False,
    dims: int = 2,
    span: str | Sequence[float] = (-1.0, 1.0),
    points: int = 21,
    samples: int | None = None,
    directions: str = "random",
    norm: str = "filter",
    bn_recalibrate: bool = False,
    shard: str | Sequence[int] | None = (1, 1),
    data: str | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    batch_size: int | None = None,
    out: str | Path = Path("results/landscape"),
    overwrite: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
    say: Callable[[str], None] = print,
    precision: str = "fp32",
    plot: bool = True,
) -> LandscapeResult:
    """Measure loss surfaces (Li et al. 2018) and write landscape.csv, landscape_info.json and the figures to `out`.

    runs:        run folders or checkpoint.pt files; each gets its own surface around its trained weights
                 (random directions), or, with directions='interpolate', the line from the first to the second
                 (from a run's fresh net to it with `init`)
    model:       with `init`: a freshly initialised net of this name (seeded with `seed`) instead of runs
    init:        measure around the freshly initialised nets of the runs' models (or of `model`); BN recalibrated
    dims:        1 (a line) or 2 (a plane); interpolation is 1D
    span:        'LO:HI' or (lo, hi), the steps along each direction; points: grid points per axis (>= 2)
    samples:     training images of the fixed subset (default 1024 on CPU, 8192 on CUDA; capped at the set)
    norm:        filter | layer | none (see directions.py); bn_recalibrate: recompute BN statistics per point
    shard:       'I/N' or (I, N): only the points p with p % N == I - 1
    data:        dataset spec (default: the runs' own; cifar10 for `model`); `force` allows another one, and runs
                 that are not finished
    precision:   fp32 (default: bf16 rounding of the logits shows as roughness near a minimum), bf16, or auto (bf16
                 where the device computes it natively)
    out:         an existing study there is resumed when its settings match (points done are skipped), refused
                 when they differ, replaced with `overwrite`
    progress:    progress(run name, points done, points of this shard) after each point
    say:         one-line messages: the cost up front, the estimate from the first measured point
    plot:        draw the figures at the end (draw.plot_landscape)
    """
    from resx.engine.device import precision_choice, resolve_device, wants_channels_last

    options = check_options(dims=dims, span=span, points=points, samples=samples, directions=directions, norm=norm,
                            bn_recalibrate=bn_recalibrate, shard=shard, seed=seed, batch_size=batch_size)
    out = check_output_folder(Path(out))
    dev = resolve_device(device)
    precision, why = precision_choice(precision, dev)
    targets, dataset = load_targets(runs, model, options, init, data, data_dir, force)
    recalibrated = any(t.recalibrate and common.has_batchnorm(t.net) for t in targets)
    count, size = subset_size(options.samples, len(dataset.train_images), options.batch_size, dev, say,
                              min_batch=common.MIN_BN_BATCH if recalibrated else 1)
    conv = any(wants_channels_last(t.net) for t in targets) and dataset.train_images.dim() == 4
    subset = training_subset(dataset, count, size, options.seed, dev, channels_last=conv)
    settings = _settings(options, subset, precision, dataset)
    store = LandscapeStore(out, settings, overwrite)
    store.check(targets)
    store.start()  # every check passed: an earlier study replaced with `overwrite` goes now

    info = _study_info(options, dataset, subset, dev, precision, why, store.settings)
    mine = shard_points(grid_points(options.dims, options.span, options.points), options.shard)
    done = {t.name: store.done(t.name) for t in targets}
    todo = {t.name: [pt for pt in mine if pt[0] not in done[t.name]] for t in targets}
    skipped = sum(len(mine) - len(v) for v in todo.values())
    _announce(targets, todo, options, subset, skipped, say)
    evaluated = 0
    try:
        evaluated = _measure_all(targets, todo, options, subset, dev, precision, store, info, progress, say)
    finally:
        rows = store.flush(info)  # what was measured is kept, even when interrupted
    result_info = store.read_info() or {}
    frame = rows[rows["run"].astype(str).isin([t.name for t in targets])].reset_index(drop=True)
    metrics = surface_metrics(_for_metrics(frame)) if len(frame) else pd.DataFrame()
    figures: list[Path] = []
    if plot:
        from resx.studies.landscape.draw import plot_landscape  # Li et al. 2018 Fig. 1 and 5, from the CSV just written

        figures = plot_landscape(out)
    return LandscapeResult(out, frame, result_info, metrics, evaluated, skipped, figures)


def _for_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["residual"] = frame["residual"].astype(str).str.lower().isin(("true", "1"))
    frame["y"] = pd.to_numeric(frame["y"], errors="coerce").fillna(0.0)
    frame["run"] = frame["run"].astype(str)
    return frame


def _measure_all(targets: Sequence[Target], todo: dict[str, list], options: LandscapeOptions, subset: Subset,
                 device: torch.device, precision: str, store: LandscapeStore, info: dict, progress: ProgressFn | None,
                 say: Callable[[str], None]) -> int:
    """Every target's points of this shard that are not done yet; returns how many were measured."""
    evaluated, announced = 0, False
    left = sum(len(v) for v in todo.values())
    for target in targets:
        points = todo[target.name]
        total = len(points)
        if not points and target.name in ((store.read_info() or {}).get("runs") or {}):
            continue
        prepare_target(target, options, device)
        references = _measure_references(target, options, subset, device, precision)
        store.describe_run(target.name, _describe_target(target, references))
        if not announced and left:
            per_point = references[(0.0, 0.0)].seconds
            say(f"landscape: the first point of {target.name} took {per_point:.3f} s; {left} point(s) to do: "
                f"about {_duration(per_point * left)} ({device}, {precision})")
            announced = True
        for done, (p, x, y) in enumerate(points, start=1):
            point = references.get((x, y)) or measure(target, subset, x, y, device, precision)
            store.add(_row(target, options, subset, p, x, y, point), point.seconds)
            evaluated += 1
            if progress:
                progress(target.name, done, total)
            if store.due():
                store.flush(info)
        store.flush(info)
        target.mover = None  # free the copies of the weights before the next net
        target.net = target.net.cpu()
    return evaluated


def _duration(seconds: float) -> str:
    from resx.markdown import duration

    return duration(seconds)
