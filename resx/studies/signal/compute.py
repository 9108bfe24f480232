"""Vanishing and exploding signals, and residual blocks whose Jacobian stays near the identity.

The classic argument (Bengio, Simard, Frasconi 1994; Glorot and Bengio 2010). A deep linear net y = W_l ... W_1 x with every W_i = aI computes a^l x: with a = 0.5 and
l = 50 that is 8.9e-16 x (the signal vanishes), with a = 1.5 it is 6.4e8 x (it explodes); the gradient flowing back,
W_1^T ... W_l^T g, carries the same factor (Saxe et al. 2014, deep linear nets). A residual block h + F(h) has the
Jacobian I + dF/dh, so while the branches' Jacobians are small the product of the block Jacobians stays near the
identity and well conditioned, whatever the depth (He et al. 2016, "Identity mappings in deep residual networks",
§3, Eqs. 4-5: the gradient at any block is the gradient at the top plus terms through the branches, so it does not
vanish); a plain block's Jacobian is dF/dh alone. Veit et al. 2016 qualify this: trained residual nets do not keep
gradient alive through the whole depth, they shorten the paths the gradient takes (`resx paths` shows that side).
He et al. 2015 (§4.1) add that their plain nets, trained with BatchNorm, do not suffer from vanishing gradients at
all ("the backward propagated gradients exhibit healthy norms with BN"); this study measures both.

What is measured, for each net (a run's trained checkpoint, each checkpoint it saved, and the run's model and its
plain or residual twin freshly initialised with the same seed, so with the same weights where the twins share them):
  * per weighted layer (every Conv2d and Linear) and per block output, on a batch of `samples` training images:
    activation_rms, the RMS of the layer's output (input_rms: of its input); grad_input_rms, the RMS of the gradient
    of the loss at the layer's input (grad_output_rms: at its output); grad_weight_rms, the RMS of the gradient at
    its weights (empty for blocks). Loss: the mean cross-entropy over the batch. RMS = sqrt(mean of squares) over
    every element (examples x features).
  * per block: the singular values of its input-output Jacobian J, estimated WITHOUT building it, per example
    (BatchNorm in eval mode makes the examples independent, so the Jacobian of the whole batch is block diagonal;
    each of `jacobian_examples` examples gets its own estimate, computed side by side, and the CSV holds the mean
    over them). sigma_max and sigma_min_est come from `lanczos_steps` steps of Lanczos with full reorthogonalisation
    on the Gram matrix J^T J (or J J^T when the block has fewer outputs than inputs, so that the Gram matrix has no
    structural zeros), each step one forward-mode product (torch.func.jvp) and one reverse-mode product (torch.func.vjp).
    The extreme Ritz values converge to the extreme eigenvalues: sqrt of the largest converges fast and from below to
    sigma_max; sqrt of the smallest converges from ABOVE to sigma_min, and slowly when small singular values are
    crowded, so sigma_min_est is an upper bound (exact once the steps reach the Gram matrix's size, as in the tests).
  * dist_identity = ||J - I||_F / ||I||_F = sqrt(||J - I||_F^2 / dim), for blocks whose input and output shapes match
    (downsampling blocks: empty). Hutchinson's estimate ||A||_F^2 = E||A v||^2 for v ~ N(0, I) with `probes` probes
    per example (relative error about sqrt(2 / (probes x examples)) on the square at worst); exact (the basis vectors
    as probes) when the block's dimension is at most `probes`. The mean of the squares over the examples, then sqrt.
  * the whole block stack: sigma_max (and the sigma_min estimate) of the Jacobian of the map from the stem's output
    (the first block's input) to the last block's output, the product of the block Jacobians, the same way; in
    signal_info.json. For a linear net that map is W_l ... W_1 itself. (The stem and head are the same in both
    twins; the image-to-logits map adds the head's 10 outputs, which would cap the rank at 10.)

Decisions:
  * BatchNorm in eval mode (as `resx paths`): trained nets with their running statistics; fresh nets with statistics
    estimated on the analysed batch first (`calibrate_batchnorm`), so their eval-mode forward pass is the
    training-mode one at initialisation. The backward pass differs from training's: training-mode BN also
    back-propagates through the batch statistics (subtracting the gradient's batch mean and its projection); eval
    mode treats them as constants, which is also what makes the per-example Jacobians well defined.
  * fp32 (strict: no TF32 on CUDA, never bf16), as the paths study's gradient norms; the deep linear nets in float64,
    so that the measured a^l (down to 8.9e-16, and 1.5^50 after 50 roundings) matches to about 1e-15 relative.
  * Linear nets (resx/models/linear.py) analysed without --data get Gaussian inputs N(0, I) of size `width` and
    uniform random labels over 10 classes: no dataset needed, and the product W_l ... W_1 acts on the inputs directly.
  * Original (post-activation) blocks end with a ReLU after the addition, so their Jacobian is D (I + dF/dh) with D
    the ReLU's 0/1 mask: about half the coordinates are zeroed, sigma_min is 0 and ||J - I||_F / ||I||_F cannot
    fall much below sqrt(1/2) however small dF/dh is. Pre-activation blocks (preresnet*, He et al. 2016 §4) and the
    linear nets have J = I + dF/dh exactly: that is the near-identity claim's own setting.
  * At initialisation deep plain nets with BatchNorm may show gradients that GROW towards the input (measured here
    for plain-56 in eval mode; cf. Yang et al. 2019, "A mean field theory of batch normalization", for training mode):
    the study reports what it measures, the report says whether it is vanishing, exploding or neither.
  * --depths: a CIFAR family (resnet, plain, preresnet, or a full name whose digits are replaced) becomes
    resnet20, resnet56, ...; the MLPs and linear nets take the depth as their `depth` option (for a linear net the
    number of blocks, i.e. of matrices in the product).
  * A run folder: its checkpoint.pt (the trained net), and every checkpoint it saved on the way,
    RUN/checkpoints/*.pt or RUN/checkpoint-epoch*.pt, in epoch order (one of the same epoch as checkpoint.pt skipped).

Shared with the paths and landscape studies (one implementation each, resx.studies.common): the seeded fresh nets,
the twins, the BN calibration, the eval-mode measuring context, the strict-fp32 context and the training batch;
the --out check is resx.studies.guards' with the files the study declares (resx.studies.signal.declare).

The jobs, one module each: layers.py (the RMS per layer), jacobians.py (Lanczos and Hutchinson by jvp/vjp),
linear_nets.py (the deep linear nets against a^l), nets.py (which nets: runs' checkpoints, fresh twins, their batch);
this module measures each net and writes the files (`run_signal`, the library's entry point).

Outputs (tidy CSV, written atomically): signal_layers.csv (run, residual, trained, checkpoint, layer, kind,
activation_rms, grad_input_rms, grad_weight_rms, then declare.LAYER_EXTRA), block_jacobians.csv (run, residual,
trained, block, sigma_max, sigma_min_est, dist_identity, then declare.JACOBIAN_EXTRA), signal_info.json (settings,
timings, the whole stacks' estimates, the linear nets, and the provenance block: versions, device, the precision it
computed in); the figures of resx.studies.signal.draw.

Stopped part way (Ctrl-C, SIGTERM, a kill), a signal study keeps every net it finished: both CSVs are rewritten after
each net (resx.studies.resume), and the same command continues with the others, to the CSVs of an uninterrupted
study. The net under way starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from resx.errors import ResxError
from resx.models.net import BlockNet
from resx.provenance import provenance
from resx.studies import guards
from resx.studies.common import calibrate_batchnorm, precision, run_record
from resx.studies.resume import Resumable
from resx.studies.signal.declare import (GAUSSIAN_CLASSES, INFO_NAME, JACOBIAN_COLUMNS, JACOBIAN_EXTRA, LAYER_COLUMNS,
                                         LAYER_EXTRA)
from resx.studies.signal.jacobians import JACOBIAN_NOTE, WHOLE_NET_MAP, block_jacobians
from resx.studies.signal.layers import layer_signals
from resx.studies.signal.linear_nets import input_width, is_linear, linear_comparison
from resx.studies.signal.nets import (Batch, Entry, build_net, check_batchnorm_batch, data_for, dataset_batch,
                                      gaussian_batch, net_depth, plan_nets)

SignalProgress = Callable[[str, int, int], None]  # (stage, done, total)

BN_NOTE = ("eval mode: trained nets with their running statistics, fresh nets with statistics estimated on the "
           "analysed batch (nothing learnt); the backward pass treats the statistics as constants")


# --- one net ------------------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """The checked options every net is measured with."""

    samples: int
    batch_size: int | None
    jacobian_examples: int
    lanczos_steps: int
    probes: int
    seed: int


def measure_net(entry: Entry, net: BlockNet, batch: Batch, settings: Settings, device: torch.device,
                progress: SignalProgress | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """signal_layers and block_jacobians rows of one net, and its whole-stack estimates and timings."""
    dtype = torch.float64 if is_linear(entry.name) else torch.float32
    net = net.to(device=device, dtype=dtype)
    images, labels = batch.images.to(dtype), batch.labels
    if not entry.trained:
        calibrate_batchnorm(net, images, settings.batch_size or len(images))
    t0 = time.perf_counter()
    layers = layer_signals(net, images, labels, settings.batch_size)
    t1 = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed)
    examples = images[: settings.jacobian_examples]
    report = (lambda done, total: progress(f"{entry.run} {entry.checkpoint} blocks", done, total)) if progress else None
    jacobians, whole = block_jacobians(net, examples, steps=settings.lanczos_steps, probes=settings.probes,
                                       generator=generator, progress=report)
    t2 = time.perf_counter()
    common = dict(run=entry.run, residual=net.residual, trained=entry.trained, checkpoint=entry.checkpoint,
                  model=entry.name, depth=net_depth(net, entry.name), epoch=entry.epoch, final=entry.final,
                  init_scheme=(net.model_options.get("init", "scaled-identity") if is_linear(entry.name) else None),
                  scale=(float(net.model_options.get("scale", 1.0)) if is_linear(entry.name) else float("nan")))
    layers = layers.assign(**common)
    jacobians = jacobians.assign(**common)
    whole.update(run=entry.run, checkpoint=entry.checkpoint, residual=net.residual, trained=entry.trained,
                 map=WHOLE_NET_MAP, post_activation=net.residual and any(b.post_activation for b in net.blocks),
                 seconds_layers=round(t1 - t0, 3), seconds_jacobians=round(t2 - t1, 3),
                 precision="fp64" if dtype == torch.float64 else "fp32")
    return layers, jacobians, whole


# --- the whole study --------------------------------------------------------------------------------------------------
@dataclass
class SignalResult:
    layers: pd.DataFrame  # signal_layers.csv
    jacobians: pd.DataFrame  # block_jacobians.csv
    info: dict[str, Any]  # signal_info.json
    linear: pd.DataFrame  # the deep linear nets against a^l (empty when none was analysed)
    out: Path | None = None
    figures: list[Path] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """One row per net and checkpoint (resx.studies.signal.draw.summarise)."""
        from resx.studies.signal.draw import summarise

        return summarise(self.layers, self.jacobians, self.info)


def _check_settings(samples: int, batch_size: int | None, jacobian_examples: int, lanczos_steps: int,
                    probes: int) -> None:
    for option, value, low in (("--samples", samples, 1), ("--batch-size", batch_size, 1),
                               ("--jacobian-examples", jacobian_examples, 1), ("--lanczos-steps", lanczos_steps, 1),
                               ("--probes", probes, 1)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < low):
            raise ResxError(f"{option} must be an integer of at least {low}, got {value}")


@guards.one_writer("signal")
def run_signal(
    runs: Sequence[str | Path] = (),
    model: str | None = None,
    *,
    init: bool = False,
    depths: Sequence[int] | None = None,
    samples: int = 256,
    data: str | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    seed: int | None = 0,
    out: str | Path | None = "results/signal",
    overwrite: bool = False,
    force: bool = False,
    resume: bool = True,
    progress: SignalProgress | None = None,
    say: Callable[[str], None] = print,
    batch_size: int | None = None,
    jacobian_examples: int = 8,
    lanczos_steps: int = 20,
    probes: int = 8,
    scale: float | Sequence[float] | None = None,
    init_scheme: str | None = None,
    **model_options: Any,
) -> SignalResult:
    """The signal study (library entry point of `resx signal`; see the module docstring for what is measured).

    Nets: the runs given (run folders or checkpoint files: each saved checkpoint and the final one), plus each run's
    model and its twin freshly initialised with `seed`; or, with `model`, that model (for each of `depths`) and its
    twin freshly initialised. `init` with runs: only the fresh nets. Linear nets: `scale` (a number or a list,
    default 0.5, 1, 1.5) and `init_scheme` (scaled-identity | he | orthogonal); `model_options` (width=..., ...) go
    to the fresh nets. Data: `data`, else the first run's dataset, else Gaussian vectors for linear nets alone, else
    cifar10; `samples` un-augmented training images drawn with `seed`, processed `batch_size` at a time (default 128
    on the CPU, 500 on CUDA); the Jacobians at the first `jacobian_examples` of them. Writes the CSVs, signal_info.json
    and the figures into `out` (None: nothing written); an earlier signal study there is replaced with `overwrite`,
    refused without it; an unfinished one of the same settings is continued (the nets it finished are kept) unless
    `resume` is False. Runs that are not finished, or `data` other than a run's own, are refused unless `force`.
    """
    from resx.data import load_dataset
    from resx.engine import resolve_device

    started = time.perf_counter()
    _check_settings(samples, batch_size, jacobian_examples, lanczos_steps, probes)
    seed = 0 if seed is None else int(seed)
    model_options = {k: v for k, v in model_options.items() if v is not None}
    runs_read, fresh = plan_nets(runs, model, depths, data, force, scale, init_scheme, model_options)
    trained = [] if init else runs_read  # --init: the runs only name the models (and their data)
    entries = trained + fresh
    check_batchnorm_batch(fresh, samples, batch_size)
    dev = resolve_device(device)
    data, data_dir = data_for(entries, runs_read, data, data_dir)
    settings = Settings(samples, batch_size or (500 if dev.type == "cuda" else 128), jacobian_examples,
                        lanczos_steps, probes, seed)
    store = Resumable(out, "signal", _fingerprint(entries, settings, data, dev), units="nets",
                      overwrite=overwrite, resume=resume)
    store.check()
    dataset = load_dataset(data, data_dir) if data else None
    data_options = dataset.model_options if dataset is not None else {}
    if dataset is not None:
        for entry in runs_read:
            guards.check_data_fits(entry.run, entry.name, (entry.ckpt or {}).get("model_options"), dataset,
                                   what="analyse")
        check_batchnorm_batch(fresh, min(samples, len(dataset.train_images)), batch_size)
    store.start([_unit(e) for e in entries])  # every check passed: an earlier study replaced with `overwrite` goes
    with store.interruptible():
        shared = dataset_batch(dataset, samples, seed, dev) if dataset is not None else None
        say(f"signal: {len(entries)} nets ({len(trained)} trained checkpoints, {len(fresh)} at initialisation) on "
            + (shared.source if shared else "Gaussian vectors"))
        if store.resume_line():
            say(store.resume_line())
        layers, jacobians = _kept(store, entries)
        with precision(dev, tf32=False):  # strict fp32: gradients spanning many orders of magnitude
            for i, entry in enumerate(entries):
                if not store.is_done(_unit(entry)):
                    net = build_net(entry, data_options, seed)
                    batch = shared or gaussian_batch(input_width(net), samples, seed, dev)
                    new_layers, new_jacobians, stack = measure_net(entry, net, batch, settings, dev, progress)
                    layers, jacobians = _joined(layers, new_layers, entries), _joined(jacobians, new_jacobians, entries)
                    del net
                    if out is not None:
                        _write_csvs(layers, jacobians, out)
                        store.mark(_unit(entry), stack)
                    else:
                        store.kept[_unit(entry)] = stack
                if progress:
                    progress("nets", i + 1, len(entries))
        whole = [store.kept[_unit(e)] for e in entries]
        linear = linear_comparison(layers, whole)
        info = _info(entries, whole, linear, settings, dev, data, shared, started)
        result = SignalResult(layers, jacobians, info, linear)
        if out is not None:
            write_signal_results(result, out)
            store.finish()
    return result


def _unit(entry: Entry) -> str:
    return f"{entry.run}: {entry.checkpoint}"


def _fingerprint(entries: list[Entry], settings: Settings, data: str | None, dev: torch.device) -> dict[str, Any]:
    """What decides a signal study's numbers: an unfinished study is continued only with these same."""
    return {"nets": [dict(run=e.run, model=e.name, options=e.options, checkpoint=e.checkpoint, epoch=e.epoch,
                          source=str(Path(e.path).resolve()) if e.path else None) for e in entries],
            "data": data, "samples": settings.samples, "batch_size": settings.batch_size,
            "jacobian_examples": settings.jacobian_examples, "lanczos_steps": settings.lanczos_steps,
            "probes": settings.probes, "seed": settings.seed, "device": dev.type}


TEXT = ("run", "checkpoint", "model", "layer", "kind", "init_scheme", "gram_side")


def _kept(store: Resumable, entries: list[Entry]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the nets an interrupted attempt of this study finished (none when it starts afresh)."""
    layer_columns, jacobian_columns = LAYER_COLUMNS + LAYER_EXTRA, JACOBIAN_COLUMNS + JACOBIAN_EXTRA
    layers = store.read("signal_layers.csv", layer_columns, [c for c in TEXT if c in layer_columns])
    jacobians = store.read("block_jacobians.csv", jacobian_columns, [c for c in TEXT if c in jacobian_columns])
    units = [(f["run"] + ": " + f["checkpoint"]) if len(f) else pd.Series([], dtype=object)
             for f in (layers, jacobians)]
    store.confirm([u for u in store.done if u in set(units[0]) and u in set(units[1]) and u in store.kept])
    layers, jacobians = (f[u.map(store.is_done).astype(bool)] if len(f) else f
                         for f, u in zip((layers, jacobians), units))
    return _integers(layers[list(layer_columns)]), _integers(jacobians[list(jacobian_columns)])


def _joined(kept: pd.DataFrame, new: pd.DataFrame, entries: list[Entry]) -> pd.DataFrame:
    """`new` rows after `kept`, in the order of the nets, with the CSV's columns and integer counts."""
    columns = list(kept.columns)
    frame = pd.concat([kept, new[columns]], ignore_index=True) if len(kept) else new[columns]
    rank = {_unit(e): i for i, e in enumerate(entries)}
    order = (frame["run"].astype(str) + ": " + frame["checkpoint"].astype(str)).map(rank).to_numpy()
    return _integers(frame.iloc[sorted(range(len(frame)), key=lambda i: order[i])].reset_index(drop=True))


def _integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers in the CSV (3, not 3.0), missing ones empty."""
    for column in ("index", "block", "epoch", "depth", "in_dim", "out_dim", "examples", "lanczos_steps", "probes"):
        if column in frame.columns:
            frame[column] = pd.array(frame[column].astype("Float64").round(), dtype="Int64")
    return frame


def _info(entries: list[Entry], whole: list[dict], linear: pd.DataFrame, settings: Settings, dev: torch.device,
          data: str | None, batch: Batch | None, started: float) -> dict[str, Any]:
    """signal_info.json: the settings, the notes on what was measured, the whole stacks, the linear nets, the nets,
    and the provenance block (versions, device, and the precision computed in: strict fp32, linear nets fp64)."""
    precisions = sorted({w["precision"] for w in whole})
    computed_in = "fp32" if precisions == ["fp32"] else "fp32 (linear nets fp64)" if "fp32" in precisions else "fp64"
    return {
        "study": "signal (He et al. 2016, Identity mappings, §3; deep linear nets)",
        "provenance": provenance(dev, computed_in),
        "data": data or "gaussian",
        "batch": batch.source if batch else f"{settings.samples} Gaussian vectors N(0, I) of the net's width, "
                                              f"labels uniform over {GAUSSIAN_CLASSES} classes",
        "samples": settings.samples,
        "batch_size": settings.batch_size,
        "jacobian_examples": settings.jacobian_examples,
        "lanczos_steps": settings.lanczos_steps,
        "probes": settings.probes,
        "seed": settings.seed,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": computed_in,
        "loss": "mean cross-entropy over the batch",
        "batchnorm": BN_NOTE,
        "jacobian": JACOBIAN_NOTE,
        "whole_net_map": WHOLE_NET_MAP,
        "whole_net": whole,
        "linear": linear.replace({np.nan: None}).to_dict("records") if len(linear) else [],
        "nets": [dict(run=e.run, model=e.name, options=e.options, trained=e.trained, checkpoint=e.checkpoint,
                      epoch=e.epoch, final=e.final, source=str(e.path) if e.path else f"fresh, seed {settings.seed}",
                      # its run's status, its epoch and iterations (an unfinished run studied with --force)
                      run_record=run_record(e.path, e.ckpt) if e.trained and e.path else None)
                 for e in entries],
        "seconds": round(time.perf_counter() - started, 3),
    }


def _write_csvs(layers: pd.DataFrame, jacobians: pd.DataFrame, out: str | Path) -> None:
    from resx.atomic import write_csv_atomic

    write_csv_atomic(Path(out) / "signal_layers.csv", layers)
    write_csv_atomic(Path(out) / "block_jacobians.csv", jacobians)


def write_signal_results(result: SignalResult, out: str | Path) -> Path:
    """The two CSVs and signal_info.json into `out`, atomically, then the figures."""
    from resx.atomic import write_json_atomic
    from resx.studies.signal.draw import plot_signal

    out = Path(out)
    _write_csvs(result.layers, result.jacobians, out)
    write_json_atomic(out / INFO_NAME, result.info)
    result.out = out
    result.figures = list(plot_signal(out))
    return out
