"""Which nets the signal study measures, and on what: a run folder's checkpoints (each saved one and the final
one), the runs' models and their plain or residual twins freshly initialised with the seed (resx.studies.common's
fresh nets and twins), or --model's nets for each of --depths; every name and option checked before any data is
loaded. Their batch: un-augmented training images, or Gaussian vectors for linear nets analysed without data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resx.errors import ResxError
from resx.labels import run_label, unique_label
from resx.models.net import BlockNet
from resx.studies import guards
from resx.studies.common import MIN_BN_BATCH, analysis_batch, fresh_net, model_has_batchnorm, twin_of
from resx.studies.signal.declare import GAUSSIAN_CLASSES
from resx.studies.signal.layers import signal_layers
from resx.studies.signal.linear_nets import is_linear, linear_options


# --- which nets ------------------------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One net to measure."""

    run: str  # the `run` column
    name: str  # registry name
    options: dict  # model options (no data options)
    trained: bool
    checkpoint: str  # "init", or the checkpoint's path relative to its run folder
    final: bool  # a fresh net, or a run's last checkpoint
    epoch: int | None = None
    path: Path | None = None  # the checkpoint file
    ckpt: dict | None = field(default=None, repr=False)


_CIFAR = re.compile(r"^(resnet|plain|preresnet)(\d*)$")


def models_for_depths(model: str, depths: Sequence[int] | None) -> list[tuple[str, dict]]:
    """(name, options) per depth: resnet/plain/preresnet (or such a name with digits) -> resnet20, resnet56, ...;
    MLPs and linear nets (whose depth is an option) -> the same name with depth=d. No depths: the model itself."""
    from resx.models import get_model_spec

    if not depths:
        if _CIFAR.match(model) and not _CIFAR.match(model).group(2):
            raise ResxError(f"--model {model} needs --depths (e.g. --depths 20,56), or give a full name such as {model}56")
        get_model_spec(model)
        return [(model, {})]
    bad = [d for d in depths if d < 1]
    if bad:
        raise ResxError(f"--depths must be positive integers, got {bad[0]}")
    cifar = _CIFAR.match(model)
    if cifar:
        names = [f"{cifar.group(1)}{d}" for d in depths]
        for name in names:
            get_model_spec(name)  # a depth that is not 6n+2 (9n+2): one line saying what is allowed
        return [(name, {}) for name in names]
    spec = get_model_spec(model)
    if "depth" not in spec.options:
        raise ResxError(f"--depths needs a model whose depth can change: resnet, plain, preresnet (6n+2), mlp_res, "
                        f"mlp_plain, linear_plain or linear_res; {model} has a fixed depth")
    return [(model, {"depth": d}) for d in depths]


def fresh_label(name: str, options: dict) -> str:
    label = name
    if "depth" in options:
        label += str(options["depth"])
    if "scale" in options:
        label += f"-a{options['scale']:g}"
    if "init" in options:
        label += f"-{options['init']}"
    return label + "-init"


def run_checkpoints(path: Path) -> list[Path]:
    """A checkpoint file itself, or a run folder's saved checkpoints (checkpoints/*.pt, checkpoint-epoch*.pt, in the
    order of the numbers in their names) followed by its checkpoint.pt."""
    from resx.engine import find_checkpoint

    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise ResxError(f"run folder {path} not found")
    final = find_checkpoint(path)
    saved = set(path.glob("checkpoints/*.pt")) | set(path.glob("checkpoint-epoch*.pt"))

    def order(p: Path) -> tuple:
        numbers = [int(n) for n in re.findall(r"\d+", p.stem)]
        return (numbers[-1] if numbers else -1, p.name)

    return sorted(saved - {final}, key=order) + [final]


def trained_entries(runs: Sequence[str | Path], data: str | None, force: bool) -> list[Entry]:
    """Every checkpoint of every run given, each read and checked (finished, same dataset) before anything runs."""
    from resx.engine import read_checkpoint
    from resx.models.registry import DATA_OPTIONS

    entries: list[Entry] = []
    taken: set[str] = set()
    for run in runs:
        run = Path(run)
        files = run_checkpoints(run)
        label = unique_label(run_label(run), taken)
        folder = run if run.is_dir() else run.parent
        final_ckpt = read_checkpoint(files[-1])
        guards.check_run(str(run), run, (final_ckpt.get("config") or {}).get("data"), data, force=force,
                         what="analyse")
        for file in files:
            ckpt = final_ckpt if file == files[-1] else read_checkpoint(file)
            if file != files[-1] and ckpt.get("epoch") is not None and ckpt.get("epoch") == final_ckpt.get("epoch"):
                continue  # a saved copy of the final checkpoint
            options = {k: v for k, v in ckpt["model_options"].items() if k not in DATA_OPTIONS}
            try:
                relative = file.relative_to(folder).as_posix()
            except ValueError:
                relative = file.name
            entries.append(Entry(label, ckpt["model_name"], options, True, relative, file == files[-1],
                                 ckpt.get("epoch"), file, ckpt))
    return entries


def fresh_entries(bases: Sequence[tuple[str, dict]], taken: set[str]) -> list[Entry]:
    """Each base model and its twin, freshly initialised (one entry per distinct name and options)."""
    entries, planned = [], set()
    for name, options in bases:
        for fresh in (name, twin_of(name)):
            if fresh is None:
                continue
            key = (fresh, tuple(sorted(options.items())))
            if key in planned:
                continue
            planned.add(key)
            label = unique_label(fresh_label(fresh, options), taken)
            entries.append(Entry(label, fresh, dict(options), False, "init", True, 0))
    return entries


def check_batchnorm_batch(fresh: Sequence[Entry], samples: int, batch_size: int | None) -> None:
    """A fresh net's BN statistics are estimated on the analysed batch (`calibrate_batchnorm`): where a fresh net
    has BatchNorm, the batch needs 2 images or more, and so does each chunk of --batch-size."""
    with_bn = next((e for e in fresh if model_has_batchnorm(e.name)), None)
    if with_bn is None:
        return
    for option, value in (("--samples", samples), ("--batch-size", batch_size)):
        if value is not None and value < MIN_BN_BATCH:
            raise ResxError(f"{option} must be at least {MIN_BN_BATCH} for {with_bn.name} (got {value}): the BatchNorm "
                            "statistics of its fresh net are estimated on the analysed images; linear nets take 1")


def plan_nets(runs: Sequence[str | Path], model: str | None, depths: Sequence[int] | None, data: str | None,
              force: bool, scale, init_scheme: str | None, model_options: dict) -> tuple[list[Entry], list[Entry]]:
    """(the runs' checkpoints, fresh entries), every name and option checked before any data is loaded."""
    from resx.models import get_model_spec

    if not runs and not model:
        raise ResxError("give run folders or checkpoints to analyse, or --model NAME for freshly initialised nets")
    if runs and model:
        raise ResxError("give run folders or --model, not both (use --init to analyse the runs' models at initialisation)")
    if runs and (depths or scale is not None or init_scheme is not None or model_options):
        raise ResxError("--depths, --scale, --init-scheme and model options go with --model; a run's net is as trained")
    if model:
        bases = []
        for name, options in models_for_depths(model, depths):
            spec = get_model_spec(name)
            unknown = sorted(set(model_options) - set(spec.options))
            if unknown:
                raise ResxError(f"model {name!r} has no option {unknown[0]!r}; allowed: {', '.join(spec.options) or 'none'}")
            for linear in linear_options(name, scale, init_scheme):
                bases.append((name, {**options, **model_options, **linear}))
        return [], fresh_entries(bases, set())
    trained = trained_entries(runs, data, force)
    taken = {e.run for e in trained}
    bases = list(dict.fromkeys((e.name, tuple(sorted(e.options.items()))) for e in trained if e.final))
    fresh = fresh_entries([(name, dict(options)) for name, options in bases], taken)
    return trained, fresh


def data_for(entries: list[Entry], trained: list[Entry], data: str | None, data_dir) -> tuple[str | None, Any]:
    """(data spec, data dir): --data, else the first run's dataset, else none for linear nets alone, else cifar10."""
    if data:
        return data, data_dir
    for entry in trained:
        config = (entry.ckpt or {}).get("config") or {}
        if config.get("data"):
            return config["data"], data_dir or config.get("data_dir")
    if all(is_linear(e.name) for e in entries):
        return None, data_dir
    return "cifar10", data_dir


# --- the batch ----------------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    source: str


def dataset_batch(dataset, samples: int, seed: int, device: torch.device) -> Batch:
    """`samples` un-augmented training images drawn with `seed` (resx.studies.common.analysis_batch)."""
    images, labels = analysis_batch(dataset, samples, torch.Generator().manual_seed(seed), device)
    return Batch(images, labels, f"{len(images)} un-augmented training images of {dataset.name}")


def gaussian_batch(width: int, samples: int, seed: int, device: torch.device, classes: int = GAUSSIAN_CLASSES) -> Batch:
    """N(0, I) vectors of size `width` and uniform labels: the deep linear nets' inputs without a dataset."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(samples, width, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    return Batch(images.to(device), labels.to(device), f"{samples} Gaussian vectors N(0, I) of size {width}")


# --- one net ------------------------------------------------------------------------------------------------------------
def build_net(entry: Entry, data_options: dict, seed: int) -> BlockNet:
    """The trained net from its checkpoint, or a seeded fresh one (resx.studies.common.fresh_net: the caller's RNG
    untouched, the same seed gives twins the same weights where they share parameters; deep linear nets built in
    float64, so that W = (a/l) I is a/l to 1e-16, not to fp32's 1e-8)."""
    from resx.engine import load_model

    if entry.ckpt is not None:
        net, _ = load_model(entry.ckpt)
        return net
    dtype = torch.float64 if is_linear(entry.name) else None
    return fresh_net(entry.name, {**entry.options, **data_options}, seed, dtype=dtype)


def net_depth(net: BlockNet, name: str) -> int:
    """The `depth` column: the registry's depth, a linear net's number of blocks, else its main-path weighted layers."""
    from resx.models import get_model_spec

    spec = get_model_spec(name)
    if spec.depth:
        return spec.depth
    if spec.family == "linear":
        return len(net.blocks)
    return sum(1 for layer in signal_layers(net) if layer.kind != "block" and layer.index is not None)
