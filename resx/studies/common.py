"""What the torch studies (lesion, paths, landscape, signal) share, one implementation each:

- `fresh_net`: a seeded freshly initialised net, the caller's global RNG untouched (a residual net and its plain
  twin get the same weights: same parameters, built in the same order);
- `twin_of`: a net's plain or residual twin (resx.models.twin_name), with the nearest plain net for a
  pre-activation net;
- `calibrate_batchnorm`: BN running statistics re-estimated on given images (cumulative average, then eval),
  with a one-line ResxError for a batch of one;
- `analysis_mode`: eval mode, parameter gradients off (or on), restored afterwards;
- `precision`: TF32 or strict fp32 on CUDA, restored afterwards;
- `analysis_batch`: a seeded batch of un-augmented, normalised training images;
- `load_runs`: trained run folders or checkpoints, loaded and named (`TrainedRun`), with one-line errors;
- `run_record`: what a studied checkpoint was (its run's status, its epoch and iterations), for the info files, so
  that a study made with --force of an unfinished run says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resx.errors import ResxError
from resx.labels import run_label, unique_label

MIN_BN_BATCH = 2  # training-mode BatchNorm needs more than one value per channel


# --- nets -----------------------------------------------------------------------------------------------------------
def fresh_net(name: str, options: dict, seed: int, dtype: torch.dtype | None = None,
              keep: tuple[str, ...] = ()) -> nn.Module:
    """A freshly initialised `name` seeded with `seed` (the caller's global RNG untouched), in eval mode. Only the
    data options, the model's own options and those named in `keep` (e.g. zero_init_residual, for the landscape
    from a run's own initialisation) are passed on, None ones dropped; `dtype` builds it with that default dtype
    from the start (the deep linear nets in float64)."""
    from resx.models import create_model, get_model_spec
    from resx.models.registry import DATA_OPTIONS

    spec = get_model_spec(name)
    allowed = set(DATA_OPTIONS) | set(spec.options) | set(keep)
    opts = {k: v for k, v in options.items() if k in allowed and v is not None}
    if not spec.residual:
        opts.pop("stochastic_depth", None)
    with torch.random.fork_rng(devices=[]), _default_dtype(dtype):
        torch.manual_seed(seed)
        return create_model(name, **opts).eval()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def twin_of(name: str) -> str | None:
    """The plain twin of a residual net and vice versa (resx.models.twin_name); for a pre-activation net the
    basic-block plain net of its depth (no exact twin), none for the pre-activation bottleneck nets."""
    from resx.models import get_model_spec, twin_name

    try:
        return twin_name(name)
    except ResxError:
        spec = get_model_spec(name)
        if spec.family == "preact" and spec.depth and (spec.depth - 2) % 6 == 0:
            return f"plain{spec.depth}"
        return None


def batchnorms(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(net: nn.Module) -> bool:
    return bool(batchnorms(net))


def model_has_batchnorm(name: str) -> bool:
    """Whether a model of this name has BatchNorm layers (every family but the deep linear nets and the one-neuron
    ResNets)."""
    from resx.models import get_model_spec

    return get_model_spec(name).family not in ("linear", "onenet")


# --- BatchNorm statistics -----------------------------------------------------------------------------------------
def image_chunks(images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """`images` in chunks of `batch_size`; a last chunk of one image joins the one before (BN needs two)."""
    chunks = [images[s:s + batch_size] for s in range(0, len(images), batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < MIN_BN_BATCH:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


@torch.no_grad()
def calibrate_batchnorm(net: nn.Module, batches: torch.Tensor | Iterable[torch.Tensor], batch_size: int | None = None,
                        context: Any = contextlib.nullcontext) -> None:
    """Replace every BN's running statistics by those of the images: reset them, momentum None (a cumulative
    average over the batches), forward the batches with BN in training mode (everything else, e.g. stochastic
    depth, as at test time) under `context()` (e.g. autocast), then eval mode. Nothing is learnt. `batches`: a
    tensor of images (in chunks of `batch_size`, all of them by default) or an iterable of image batches.
    A batch of one image is refused with a one-line ResxError (training-mode BN needs two values per channel)."""
    norms = batchnorms(net)
    if not norms:
        return
    if isinstance(batches, torch.Tensor):
        batches = image_chunks(batches, batch_size or len(batches))
    momenta = [m.momentum for m in norms]
    net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for images in batches:
            try:
                with context():
                    net(images)
            except ValueError as error:
                if "Expected more than 1 value per channel" not in str(error):
                    raise
                raise ResxError(f"BatchNorm statistics need batches of at least {MIN_BN_BATCH} images, got a batch "
                                f"of {len(images)}; use --samples and --batch-size of at least {MIN_BN_BATCH}") from None
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        net.eval()


# --- measuring ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def analysis_mode(net: nn.Module, requires_grad: bool = False) -> Iterator[nn.Module]:
    """Eval mode, and parameter gradients off (the backward pass then computes input gradients only, about the cost
    of a forward pass) or, with `requires_grad`, on; both restored afterwards."""
    was_training = net.training
    flags = [p.requires_grad for p in net.parameters()]
    net.eval()
    net.requires_grad_(requires_grad)
    try:
        yield net
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)
        net.train(was_training)


@contextlib.contextmanager
def precision(device: torch.device, tf32: bool) -> Iterator[None]:
    """TF32 (10-bit mantissa, fp32 range) or strict fp32 on CUDA, restored afterwards; never bf16 (gradients that
    span many orders of magnitude)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def analysis_batch(dataset: Any, batch_size: int, generator: torch.Generator,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` un-augmented training images drawn with `generator`, normalised, on `device`, and their labels."""
    from resx.data import normalize

    count = min(batch_size, len(dataset.train_images))
    index = torch.randperm(len(dataset.train_images), generator=generator)[:count]
    mean = torch.tensor(dataset.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, device=device).view(1, -1, 1, 1)
    images = normalize(dataset.train_images[index].to(device), mean, std)
    return images, dataset.train_labels[index].to(device)


# --- trained runs ---------------------------------------------------------------------------------------------------
def run_record(checkpoint: str | Path, ckpt: dict | None = None) -> dict[str, Any]:
    """What a checkpoint was when it was studied, for a study's info file: {"status": its run's status in the
    run_info.json beside it (finished, running, interrupted, diverged; None without one), "epoch" and
    "iterations_done": the checkpoint's own (an epoch-NNN.pt of a finished run is of an earlier epoch),
    "total_iterations": what the run was to train (None when unknown)}. A study run with --force on an unfinished
    run thus says, in its own files, how far that run had trained. `ckpt`: the checkpoint already read (else it is
    read here). What cannot be read is None: a record never stops a study."""
    from resx.engine.checkpoint import find_checkpoint, read_checkpoint
    from resx.engine.run_folder import EPOCH_CHECKPOINTS

    file = Path(checkpoint)
    try:  # a record never stops a study: what cannot be read is None
        file = find_checkpoint(file)
        if ckpt is None:
            ckpt = read_checkpoint(file)
    except ResxError:
        ckpt = ckpt or {}
    folder = file if file.is_dir() else file.parent
    if folder.name == EPOCH_CHECKPOINTS and not (folder / "run_info.json").exists():
        folder = folder.parent  # RUN_DIR/checkpoints/epoch-NNN.pt: the run's run_info.json is in RUN_DIR
    try:
        info = json.loads((folder / "run_info.json").read_text())
        info = info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        info = {}
    return {"status": info.get("status"), "epoch": ckpt.get("epoch"), "iterations_done": ckpt.get("iteration"),
            "total_iterations": info.get("total_iterations")}


@dataclass
class TrainedRun:
    """A trained net loaded from its run folder or checkpoint, to be studied (lesion, landscape)."""

    name: str
    checkpoint: Path
    net: nn.Module
    config: dict
    model: str
    data_spec: str
    data_dir: str | None
    record: dict = field(default_factory=dict)  # `run_record`: its run's status, its epoch and iterations

    @property
    def residual(self) -> bool:
        return bool(self.net.residual)


def load_runs(checkpoints: Iterable[str | Path]) -> list[TrainedRun]:
    """Each run folder or checkpoint, loaded (one-line errors for a missing, truncated or foreign one) and named
    after its folder (resx.labels: the same name twice becomes name-2)."""
    from resx.engine.checkpoint import find_checkpoint, load_model

    if not checkpoints:
        raise ResxError("give at least one run folder or checkpoint")
    runs: list[TrainedRun] = []
    taken: set[str] = set()
    for path in checkpoints:
        file = find_checkpoint(path)  # one-line errors for a missing file or a folder without a checkpoint
        net, ckpt = load_model(file)  # ... and for a truncated or foreign one
        name = unique_label(run_label(path), taken)
        config = ckpt.get("config") or {}
        runs.append(TrainedRun(name, file, net, config, ckpt.get("model_name", ""), config.get("data", ""),
                              config.get("data_dir"), run_record(file, ckpt)))
    return runs
