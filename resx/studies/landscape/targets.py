"""The surfaces to measure: the trained runs (resx.studies.common.load_runs) or freshly initialised nets, checked
against the dataset before any evaluation, each with how it moves (Plane or Line) and how its BatchNorm statistics
are handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resx.errors import ResxError
from resx.labels import unique_label
from resx.studies import common, guards
from resx.studies.landscape.directions import Line, Plane, make_directions
from resx.studies.landscape.options import LandscapeOptions


@dataclass
class Target:
    """One surface to measure: a net, how to move it (Plane or Line), and how its BN statistics are handled."""

    name: str
    model: str
    net: nn.Module
    mover: Plane | Line | None  # set once the net is on the device (`prepare_target`)
    recalibrate: bool
    bn: str  # the BN rule, in words, for landscape_info.json
    trained: bool
    source: str
    checkpoint: str | None = None
    directions_from: nn.Module | None = None  # interpolation: the net at a = 0

    @property
    def residual(self) -> bool:
        return bool(getattr(self.net, "residual", False))


def fresh_net(model: str, options: dict, seed: int) -> nn.Module:
    """A freshly initialised net seeded with `seed`, in eval mode (resx.studies.common.fresh_net: the caller's RNG
    untouched, a residual net and its plain twin get the same weights); a run's zero_init_residual is kept."""
    return common.fresh_net(model, options, seed, keep=("zero_init_residual",))


def _bn_rule(recalibrate: bool, forced: bool) -> str:
    if forced:
        return ("recalibrated at every point (forced: a freshly initialised net has no running statistics that "
                "describe data)")
    return "recalibrated at every point (asked for)" if recalibrate else "eval mode, the trained running statistics"


def _random_targets(loaded: list, model: str | None, init: bool, seed: int, bn_recalibrate: bool,
                    data_options: dict) -> list[Target]:
    taken: set[str] = set()
    if model:
        net = fresh_net(model, data_options, seed)
        return [Target(unique_label(f"{model}-init", taken), model, net, None, True, _bn_rule(True, True), False,
                       f"fresh, seed {seed}")]
    targets = []
    for run in loaded:
        if init:
            net = fresh_net(run.model, dict(run.net.model_options), seed)
            targets.append(Target(unique_label(f"{run.name}-init", taken), run.model, net, None, True,
                                  _bn_rule(True, True), False, f"fresh {run.model}, seed {seed}", str(run.checkpoint)))
        else:
            targets.append(Target(unique_label(run.name, taken), run.model, run.net, None, bn_recalibrate,
                                  _bn_rule(bn_recalibrate, False), True, _where(run.checkpoint), str(run.checkpoint)))
    return targets


def _where(path: str | Path) -> str:
    """A checkpoint's absolute path: what identifies a run in landscape_info.json, from any working folder."""
    return str(Path(path).resolve())


def _same_parameters(a: nn.Module, b: nn.Module) -> bool:
    return [tuple(p.shape) for p in a.parameters()] == [tuple(p.shape) for p in b.parameters()]


def _interpolation_target(loaded: list, init: bool, seed: int, bn_recalibrate: bool) -> Target:
    """The line from the first run to the second, or with `init` from the run's fresh net to the run."""
    if init:
        if len(loaded) != 1:
            raise ResxError(f"--directions interpolate with --init takes one run (the line from its fresh net to it); "
                            f"got {len(loaded)}")
        (run,) = loaded
        start = fresh_net(run.model, dict(run.net.model_options), seed)
        name, forced = f"{run.name}-init-to-trained", True
        source = f"fresh {run.model} (seed {seed}) -> {_where(run.checkpoint)}"
    else:
        if len(loaded) != 2:
            raise ResxError(f"--directions interpolate takes two runs (from and to) or one with --init; got {len(loaded)}")
        first, run = loaded
        if first.model != run.model or not _same_parameters(first.net, run.net):
            raise ResxError(f"--directions interpolate needs two nets of one model; {first.name} is {first.model}, "
                            f"{run.name} is {run.model}")
        start, name, forced = first.net, f"{first.name}-to-{run.name}", False
        source = f"{_where(first.checkpoint)} -> {_where(run.checkpoint)}"
    recalibrate = bn_recalibrate or forced
    return Target(name, run.model, run.net, None, recalibrate, _bn_rule(recalibrate, forced),
                  True, source, str(run.checkpoint), directions_from=start)


def _dataset_spec(loaded: list, data: str | None, data_dir: Any) -> tuple[str, Any]:
    """The one dataset of the study: `data`, else the runs' own (which must then agree), else cifar10."""
    from resx.data import normalise_data_spec

    if data:
        return data, data_dir if data_dir is not None else (loaded[0].data_dir if loaded else None)
    specs = {normalise_data_spec(r.data_spec) for r in loaded if r.data_spec}
    if len(specs) > 1:
        names = ", ".join(f"{r.name} ({r.data_spec})" for r in loaded)
        raise ResxError(f"the runs were trained on different datasets: {names}; give runs of one dataset, or --data")
    if loaded and not specs:
        raise ResxError(f"run {loaded[0].name}: its checkpoint names no dataset; give --data")
    spec = loaded[0].data_spec if loaded else "cifar10"
    return spec, data_dir if data_dir is not None else (loaded[0].data_dir if loaded else None)


def load_targets(runs: Sequence[str | Path], model: str | None, options: LandscapeOptions, init: bool,
                 data: str | None, data_dir: Any, force: bool) -> tuple[list[Target], Any]:
    """(the surfaces to measure, the dataset). Every run and option is checked before any evaluation."""
    from resx.data import load_dataset

    runs = list(runs or ())
    if options.directions == "interpolate" and runs and not model:
        # before anything is loaded: a wrong number of runs is the mistake to name, not what loading them finds
        if init and len(runs) != 1:
            raise ResxError(f"--directions interpolate with --init takes one run (the line from its fresh net to it); "
                            f"got {len(runs)}")
        if not init and len(runs) != 2:
            raise ResxError(f"--directions interpolate takes two runs (from and to) or one with --init; got {len(runs)}")
    if runs and model:
        raise ResxError("give run folders or --model, not both (use --init to start from a run's model freshly "
                        "initialised)")
    if not runs and not model:
        raise ResxError("give run folders or checkpoints (e.g. runs/resnet56 runs/plain56), or --model NAME --init "
                        "for a freshly initialised net")
    if model and not init:
        raise ResxError(f"--model {model} is a fresh net: add --init (or give a trained run folder instead)")
    if model and options.directions == "interpolate":
        raise ResxError("--directions interpolate needs a trained run (the line from its fresh net to it: "
                        "RUN_DIR --init)")
    loaded = []
    if runs:
        from resx.studies.common import load_runs

        loaded = load_runs(runs)
        for run in loaded:
            guards.check_run(run.name, run.checkpoint, run.data_spec, data, force=force,
                             what="measure the landscape of")
    else:
        from resx.models import get_model_spec

        get_model_spec(model)  # unknown names: one line before any data is loaded
    spec, root = _dataset_spec(loaded, data, data_dir)
    dataset = load_dataset(spec, root)
    for run in loaded:
        guards.check_data_fits(run.name, run.model, getattr(run.net, "model_options", None), dataset,
                               what="measure the landscape of")
    if options.directions == "interpolate":
        targets = [_interpolation_target(loaded, init, options.seed, options.bn_recalibrate)]
    else:
        targets = _random_targets(loaded, model, init, options.seed, options.bn_recalibrate, dataset.model_options)
    return targets, dataset


def prepare_target(target: Target, options: LandscapeOptions, device: torch.device) -> None:
    """Directions from the CPU weights (the same for twins on any device), then the net on the device."""
    from resx.engine.device import wants_channels_last

    directions = (make_directions(target.net, options.dims, options.norm, options.seed)
                  if options.directions == "random" else None)
    target.net = target.net.to(device).eval()
    if wants_channels_last(target.net):
        target.net = target.net.to(memory_format=torch.channels_last)
    if directions is not None:
        target.mover = Plane(target.net, directions)
    else:
        target.mover = Line(target.net, target.directions_from, target.net)
        target.directions_from = None  # its weights are copied; let it go
