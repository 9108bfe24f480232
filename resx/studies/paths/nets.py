"""The nets of a path study: the trained runs given (checked and labelled), the analysed model, and the seeded
fresh nets at initialisation (each residual net given and its plain twin), their BatchNorm statistics estimated on
the analysed batch (resx.studies.common.calibrate_batchnorm: a fresh net's running statistics (0, 1) describe no
data, and eval mode would run it un-normalised, which no training step ever sees; nothing is learnt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resx.errors import ResxError
from resx.labels import run_label, unique_label
from resx.models.net import BlockNet
from resx.studies import guards
from resx.studies.common import calibrate_batchnorm, fresh_net, twin_of
from resx.studies.paths.path_gradients import analysable, check_residual, concatenates, not_decomposable


@dataclass
class StudiedNet:
    """A net of the study: its label (the CSVs' `run`), the net, trained or fresh, and where it came from."""

    label: str
    net: BlockNet
    trained: bool
    source: str
    checkpoint: dict = field(default_factory=dict)  # what a trained net was loaded from (empty for a fresh one)

    @property
    def own_options(self) -> dict:
        """The checkpoint's model options other than the data's (classes, channels, size)."""
        from resx.models.registry import DATA_OPTIONS

        return {k: v for k, v in self.checkpoint["model_options"].items() if k not in DATA_OPTIONS}


# --- the options and the nets ------------------------------------------------------------------------------
def check_paths_options(checkpoints: Sequence[str | Path], model: str | None, samples: int,
                        batch_size: int | None) -> None:
    if samples < 1:
        raise ResxError(f"--samples must be at least 1, got {samples}")
    if batch_size is not None and batch_size < 1:
        raise ResxError(f"--batch-size must be at least 1, got {batch_size}")
    if not checkpoints and not model:
        raise ResxError("give a run folder or checkpoint to analyse, or --model NAME for a freshly initialised net")
    if checkpoints and model:
        raise ResxError("give checkpoints or --model, not both (use --init to analyse a checkpoint's model at initialisation)")


def load_trained_nets(checkpoints: Sequence[str | Path], data: str | None, force: bool, taken: set[str]) -> list[StudiedNet]:
    """Each checkpoint read, checked (finished, trained on `data`: see guards.check_run) and loaded; labelled after
    its run folder (resx.labels), each label added to `taken`."""
    from resx.engine import load_model, read_checkpoint

    nets = []
    for path in checkpoints:
        ckpt = read_checkpoint(path)
        guards.check_run(str(path), path, (ckpt.get("config") or {}).get("data"), data, force=force, what="analyse")
        net, ckpt = load_model(ckpt)
        label = unique_label(run_label(path, fallback=ckpt.get("model_name") or "run"), taken)
        nets.append(StudiedNet(label, net, True, str(path), ckpt))
    return nets


def analysed_model(loaded: Sequence[StudiedNet], model: str | None, data: str | None,
                   data_dir: str | Path | None) -> tuple[str, dict, str, str | Path | None]:
    """(model name, its own options, dataset, data folder) of the analysed net: `model`, or the first residual
    net given; the dataset is `data`, else that net's, else cifar10."""
    if model:
        from resx.models import get_model_spec

        spec = get_model_spec(model)  # unknown names: one-line error before any data is loaded
        if spec.family == "densenet":
            raise ResxError(not_decomposable(model))
        if not spec.residual:
            raise ResxError(f"{model} has no shortcuts: the path analysis needs a residual net")
        return model, {}, data or "cifar10", data_dir
    residual = [entry for entry in loaded if analysable(entry.net)]
    if not residual:
        check_residual(next((entry.net for entry in loaded if concatenates(entry.net)), loaded[0].net))
        raise ResxError(f"{loaded[0].net.model_name} has no shortcuts: the path analysis needs a residual net")
    primary = residual[0]
    config = primary.checkpoint.get("config", {})
    return (primary.checkpoint["model_name"], primary.own_options, data or config.get("data") or "cifar10",
            data_dir or config.get("data_dir"))


def fresh_pairs(name: str, own_options: dict, loaded: Sequence[StudiedNet]) -> list[tuple[str, dict]]:
    """The nets to build at initialisation: the analysed model and its plain twin, then each other residual net
    given and its twin (e.g. ResNet-56 and plain-56 beside a trained 110): every trained pair gets its pair at
    init. Each (name, depth) once: an MLP's depth is an option, not in its name."""
    wanted: list[tuple[str, dict]] = [(name, own_options)]
    wanted += [(entry.checkpoint["model_name"], entry.own_options) for entry in loaded if entry.net.residual]
    pairs: list[tuple[str, dict]] = []
    planned: set[tuple[str, Any]] = set()
    for base_name, options in wanted:
        for fresh_name in (base_name, twin_of(base_name)):
            if fresh_name is not None and (fresh_name, options.get("depth")) not in planned:
                planned.add((fresh_name, options.get("depth")))
                pairs.append((fresh_name, options))
    return pairs


def check_batchnorm_batch(pairs: Sequence[tuple[str, dict]], batch_images: int) -> None:
    """The fresh nets' BN statistics are estimated on the batch (`calibrate_batchnorm`): it needs 2 images or more
    where a net has BatchNorm."""
    from resx.studies.common import MIN_BN_BATCH, model_has_batchnorm

    with_bn = [fresh_name for fresh_name, _ in pairs if model_has_batchnorm(fresh_name)]
    if with_bn and batch_images < MIN_BN_BATCH:
        raise ResxError(f"--batch-size must be at least {MIN_BN_BATCH} for {with_bn[0]} (got {batch_images} images): "
                        "the BatchNorm statistics of its fresh net are estimated on the batch")


def build_fresh_nets(pairs: Sequence[tuple[str, dict]], data_options: dict, seed: int, images: torch.Tensor,
                     batch_size: int, taken: set[str], device: torch.device) -> list[StudiedNet]:
    """Each of `pairs` freshly initialised with `seed`, its BN statistics those of `images` (see
    `calibrate_batchnorm`), labelled NAME-init."""
    fresh = []
    for fresh_name, options in pairs:
        net = fresh_net(fresh_name, {**options, **data_options}, seed).to(device)
        calibrate_batchnorm(net, images, batch_size)
        fresh.append(StudiedNet(unique_label(f"{fresh_name}-init", taken), net, False, f"fresh, seed {seed}"))
    return fresh
