"""Residual nets as ensembles of paths: the path study's entry point, `run_paths` (library entry point of
`resx paths`), which measures and writes what the other modules compute.

Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow Networks", §5, Fig. 6.
Unravelled, a net of n blocks y_i = y_{i-1} + f_i(y_{i-1}) is a sum of 2^n paths; C(n, k) of them go through
exactly k residual branches (binomial, centred at n/2). Veit et al. measure how much gradient a path of length k
carries: forward a training batch through the whole net, and in the backward pass let the gradient flow only
through the branches of k randomly chosen blocks and only through the shortcuts of the other n - k; the norm of
the gradient that reaches the input falls exponentially with k (Fig. 6b). The total gradient per length,
C(n, k) x mean magnitude at k, comes almost entirely from short paths: 5 to 17 of 54 blocks in ResNet-110 (Fig. 6c),
0.45% of all paths, against a distribution centred at 27.

How it is measured here (path_gradients.py, with the per-example gradient gates of gates.py):
  * BatchNorm in eval mode, so each example's loss depends only on its own input; with a summed cross-entropy
    each example's input gradient is one sample. Each example of a batch gets its own k and its own random
    k-subset of blocks, so samples x (n + 1) measurements cost about samples x (n + 1) / batch_size backward
    passes over one retained forward graph.
  * "the input" is the input of the first block (the stem's output), where all 2^n paths start.
  * grad_norm is the L2 norm of one example's gradient (of its own cross-entropy loss, summed over nothing
    else); grad_norm_mean / grad_norm_std are the mean and sample standard deviation over the samples at k.
  * Post-activation (original) blocks have a ReLU after the addition that mixes the two branches. As Veit et al.
    did, the gates sit before the addition and the ReLU's backward applies its forward mask to whatever gradient
    flows through; the 2^n path gradients still sum to the true gradient, but a path's share depends on the
    other paths through that mask. Pre-activation nets (preresnet*) make the split exact. The note is written
    into paths_info.json.
  * A freshly initialised net (--model / --init) has its BN statistics first estimated on the analysed batch
    (nets.py); trained nets keep theirs.
  * fp32 throughout (TF32 convolutions and matmuls on CUDA unless tf32=False), never bf16: gradients of long
    paths are many orders of magnitude below those of short ones. paths_info.json's `precision` and its
    provenance block say which.

Block gradients (block_gradients.py): the gradient norm reaching each block, for the residual net and its plain
twin at initialisation (same seed, same weights), and for every checkpoint given.

Outputs (tidy CSV, written atomically; columns in declare.py): path_distribution.csv, path_gradients.csv,
path_total_gradient.csv, block_gradients.csv, paths_info.json (with the provenance block), and the figures.

Stopped part way (Ctrl-C, SIGTERM, a kill), a path study keeps what it finished (resx.studies.resume): the path
gradients of the analysed net (path_gradients.csv, written when they are done) and each net's block gradients
(block_gradients.csv, rewritten after each net); the same command continues with the rest, to the CSVs of an
uninterrupted study. The part under way starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from resx.models.net import BlockNet
from resx.provenance import provenance
from resx.studies import guards
from resx.studies.common import analysis_batch, precision, run_record
from resx.studies.paths.block_gradients import block_gradients, first_last_ratios
from resx.studies.paths.declare import (BLOCK_COLUMNS, DISTRIBUTION_COLUMNS, GRADIENT_COLUMNS, INFO_NAME,
                                        TOTAL_COLUMNS, WINDOW_FRACTION, effective_window)
from resx.studies.paths.nets import (StudiedNet, analysed_model, build_fresh_nets, check_batchnorm_batch,
                                     check_paths_options, fresh_pairs, load_trained_nets)
from resx.studies.paths.path_gradients import (PathsProgress, analysable, check_residual, path_distribution,
                                               path_gradients, total_gradient)
from resx.studies.resume import Resumable

POST_ACTIVATION_NOTE = (
    "post-activation blocks (ReLU after the addition): the gradient gates sit before the addition and the ReLU's "
    "backward applies its forward mask to whatever flows through, as Veit et al. 2016 did; the path gradients sum "
    "to the true gradient, but each path's share depends on the other paths through that mask. Pre-activation "
    "nets (preresnet*) make the split exact."
)
PRE_ACTIVATION_NOTE = "pre-activation blocks: nothing after the addition, the split into paths is exact."


# --- the whole study -------------------------------------------------------------------------------------------
@dataclass
class PathsResult:
    model: str
    n_blocks: int
    distribution: pd.DataFrame
    gradients: pd.DataFrame
    total: pd.DataFrame
    block_gradients: pd.DataFrame
    info: dict[str, Any]
    out: Path | None = None
    first_last_ratio: dict[str, float] = field(default_factory=dict)  # run label -> block 0 / block n-1 grad norm
    figures: list[Path] = field(default_factory=list)


def timed_path_gradients(net: BlockNet, images: torch.Tensor, labels: torch.Tensor, samples: int,
                         generator: torch.Generator, batch_size: int, device: torch.device,
                         progress: PathsProgress | None) -> tuple[pd.DataFrame, float]:
    """`path_gradients`, and the seconds it took (the device synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    gradients = path_gradients(net, images, labels, samples, generator, batch_size, device, progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return gradients, time.perf_counter() - t0


def computed_precision(device: torch.device, tf32: bool) -> str:
    """What the study computes in: fp32 tensors throughout (never bf16); on CUDA its convolutions and matmuls
    run in TF32 unless tf32 is False (resx.studies.common.precision)."""
    return "tf32" if device.type == "cuda" and tf32 else "fp32"


def paths_info(*, model: str, analysed: StudiedNet, nets: Sequence[StudiedNet], data: str, seed: int, samples: int,
               batch_images: int, window: float, total: pd.DataFrame, distribution: pd.DataFrame,
               ratios: dict[str, float], path_seconds: float, device: torch.device, tf32: bool) -> dict[str, Any]:
    """paths_info.json (its `seconds` is filled in at the end), with the provenance block."""
    n = int(distribution["k"].max())
    lo, hi, _ = effective_window(total["k"], total["fraction"], window)
    post_activation = any(b.post_activation for b in analysed.net.blocks)
    computed_in = computed_precision(device, tf32)
    return {
        "study": "paths (Veit et al. 2016, §5)",
        "provenance": provenance(device, computed_in),
        "model": model,
        "source": analysed.source,
        "trained": analysed.trained,
        "blocks": n,
        "data": data,
        "seed": seed,
        "samples": samples,
        "batch_size": batch_images,
        "window_fraction": window,
        "window": [lo, hi],
        "window_gradient_fraction": float(total["fraction"].iloc[lo:hi + 1].sum()),
        "window_paths_fraction": float(distribution["fraction"].iloc[lo:hi + 1].sum()),
        "centre": n / 2,
        "mode": n // 2,
        "gradient_peak_k": int(total["fraction"].idxmax()),
        "first_last_block_gradient_ratio": ratios,
        "seconds_path_gradients": round(path_seconds, 3),
        "seconds": None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": computed_in,
        "post_activation": post_activation,
        "note": POST_ACTIVATION_NOTE if post_activation else PRE_ACTIVATION_NOTE,
        "grad_norm": "L2 norm of one example's gradient of its own cross-entropy; path gradients at the first "
                     "block's input (stem output); block gradients at each block's input, mean over the batch",
        "batchnorm": "eval mode; " + ("running statistics from training" if analysed.trained else
                                       "statistics of the analysed batch (fresh net, nothing learnt)"),
        "nets": [dict(run=e.label, model=e.net.model_name, residual=e.net.residual, trained=e.trained, source=e.source,
                      # its run's status, its epoch and iterations (an unfinished run studied with --force)
                      run_record=run_record(e.source, e.checkpoint) if e.trained else None)
                 for e in nets],
    }


@guards.one_writer("paths")
def run_paths(
    checkpoints: Sequence[str | Path] = (),
    model: str | None = None,
    *,
    init: bool = False,
    data: str | None = None,
    data_dir: str | Path | None = None,
    samples: int = 1000,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    tf32: bool = True,
    window: float = WINDOW_FRACTION,
    out: str | Path | None = "results/paths",
    progress: PathsProgress | None = None,
    overwrite: bool = True,
    force: bool = False,
    resume: bool = True,
    say: Callable[[str], None] | None = None,
) -> PathsResult:
    """The path study (library entry point of `resx paths`).

    Nets: the checkpoints given (run folders or checkpoint.pt files), or a fresh `model`. The path analysis runs on
    the first residual net given (with `init`, on a fresh seeded copy of it); a plain net there is an error when
    no residual net is given. Every net given gets block gradients (plain ones too: e.g. `resnet56 plain56`), and so
    do, freshly initialised with `seed`, the analysed model, every other residual net given, and their plain twins.
    Data: `data`, else the first checkpoint's dataset, else cifar10; the batch is `batch_size` un-augmented
    training images drawn with `seed` (default batch: 500 on CUDA, 128 on the CPU).
    Writes the CSVs and paths_info.json into `out` (None: write nothing). An earlier paths study there is replaced
    (its files removed first) with `overwrite`, refused without it (the CLI's default); an unfinished one of the
    same settings is continued unless `resume` is False (resx.studies.resume). Runs that are not finished, or
    `data` other than a run's own, are refused unless `force`. `say`: one-line messages.
    """
    from resx.data import load_dataset
    from resx.engine import resolve_device

    started = time.perf_counter()
    check_paths_options(checkpoints, model, samples, batch_size)
    seed = 0 if seed is None else seed
    dev = resolve_device(device)
    batch_size = batch_size or (500 if dev.type == "cuda" else 128)

    taken: set[str] = set()  # the nets' labels
    loaded = load_trained_nets(checkpoints, data, force, taken)
    name, own_options, data, data_dir = analysed_model(loaded, model, data, data_dir)
    store = Resumable(out, "paths", dict(
        nets=[{"run": e.label, "source": str(Path(e.source).resolve()), "record": run_record(e.source, e.checkpoint)}
              for e in loaded],
        model=name, init=init, data=data, samples=samples, batch_size=batch_size, seed=seed,
        precision=computed_precision(dev, tf32), device=dev.type), units="parts (the path gradients, each net's block "
        "gradients)", overwrite=overwrite, resume=resume)
    store.check()
    dataset = load_dataset(data, data_dir)
    for entry in loaded:
        guards.check_data_fits(entry.label, entry.checkpoint.get("model_name", ""),
                               entry.checkpoint.get("model_options"), dataset, what="analyse")
    pairs = fresh_pairs(name, own_options, loaded)
    check_batchnorm_batch(pairs, min(batch_size, len(dataset.train_images)))
    generator = torch.Generator().manual_seed(seed)  # the batch, then the path draws
    images, labels = analysis_batch(dataset, batch_size, generator, dev)

    with precision(dev, tf32):  # BN calibration, path and block gradients: TF32 or strict fp32, never bf16
        fresh = build_fresh_nets(pairs, dataset.model_options, seed, images, batch_size, taken, dev)
        for entry in loaded:
            entry.net.to(dev)
        analysed = fresh[0] if model or init else next(entry for entry in loaded if analysable(entry.net))
        check_residual(analysed.net)
        nets = [*loaded, *fresh]
        # every check passed: an earlier study replaced with `overwrite` goes
        store.start([PATH_UNIT, *(block_unit(e.label) for e in nets)])
        with store.interruptible():
            if say and store.resume_line():
                say(store.resume_line())
            gradients, path_seconds = kept_path_gradients(store)
            if gradients is None:
                gradients, path_seconds = timed_path_gradients(analysed.net, images, labels, samples, generator,
                                                               batch_size, dev, progress)
                keep(store, out, "path_gradients.csv", gradients[list(GRADIENT_COLUMNS)], PATH_UNIT,
                     {"seconds": path_seconds})
            blocks = kept_block_gradients(store, nets)
            for i, entry in enumerate(nets):
                if not store.is_done(block_unit(entry.label)):
                    norms = block_gradients([entry], images, labels, batch_size, None)
                    blocks = in_order(pd.concat([blocks, norms], ignore_index=True) if len(blocks) else norms, nets)
                    keep(store, out, "block_gradients.csv", blocks, block_unit(entry.label))
                if progress:
                    progress("block gradients", i + 1, len(nets))

    n = len(analysed.net.blocks)
    distribution, total = path_distribution(n), total_gradient(gradients)
    ratios = first_last_ratios(blocks)
    info = paths_info(model=name, analysed=analysed, nets=nets, data=data, seed=seed, samples=samples,
                      batch_images=len(images), window=window, total=total, distribution=distribution, ratios=ratios,
                      path_seconds=path_seconds, device=dev, tf32=tf32)
    result = PathsResult(name, n, distribution, gradients, total, blocks, info, None, ratios)
    info["seconds"] = round(time.perf_counter() - started, 3)
    if out is not None:
        with store.interruptible():
            write_paths_results(result, out)
            store.finish()
    return result


PATH_UNIT = "path gradients"


def block_unit(label: str) -> str:
    return f"block gradients: {label}"


def keep(store: Resumable, out: str | Path | None, name: str, frame: pd.DataFrame, unit: str,
         kept: dict | None = None) -> None:
    """A finished part: its CSV written, then the part named done."""
    from resx.atomic import write_csv_atomic

    if out is not None:
        write_csv_atomic(Path(out) / name, frame)
        store.mark(unit, kept)


def kept_path_gradients(store: Resumable) -> tuple[pd.DataFrame | None, float]:
    """The path gradients an interrupted attempt finished, and their seconds ((None, 0) when not done)."""
    if not store.is_done(PATH_UNIT):
        return None, 0.0
    gradients = store.read("path_gradients.csv", GRADIENT_COLUMNS, text=())
    store.confirm([u for u in store.done if u != PATH_UNIT or len(gradients)])
    if not len(gradients):
        return None, 0.0
    return gradients, float((store.kept.get(PATH_UNIT) or {}).get("seconds", 0.0))


def kept_block_gradients(store: Resumable, nets: Sequence[StudiedNet]) -> pd.DataFrame:
    """The block gradients of the nets an interrupted attempt finished."""
    rows = store.read("block_gradients.csv", BLOCK_COLUMNS)
    units = rows["run"].map(block_unit) if len(rows) else pd.Series([], dtype=object)
    store.confirm([u for u in store.done if not u.startswith("block gradients: ") or u in set(units)])
    rows = rows[units.map(store.is_done).astype(bool)] if len(rows) else rows
    return in_order(rows[list(BLOCK_COLUMNS)].reset_index(drop=True), nets)


def in_order(blocks: pd.DataFrame, nets: Sequence[StudiedNet]) -> pd.DataFrame:
    """Block gradients in the nets' order (those kept from an interrupted attempt come first when read back)."""
    rank = {e.label: i for i, e in enumerate(nets)}
    order = blocks["run"].map(rank).to_numpy() if len(blocks) else []
    return blocks.iloc[sorted(range(len(blocks)), key=lambda i: order[i])].reset_index(drop=True)


def write_paths_results(result: PathsResult, out: str | Path) -> Path:
    """The four CSVs and paths_info.json into `out`, each written atomically, then the figures from them."""
    from resx.atomic import write_csv_atomic, write_json_atomic

    out = Path(out)
    write_csv_atomic(out / "path_distribution.csv", result.distribution[list(DISTRIBUTION_COLUMNS)])
    write_csv_atomic(out / "path_gradients.csv", result.gradients[list(GRADIENT_COLUMNS)])
    write_csv_atomic(out / "path_total_gradient.csv", result.total[list(TOTAL_COLUMNS)])
    write_csv_atomic(out / "block_gradients.csv", result.block_gradients[list(BLOCK_COLUMNS)])
    write_json_atomic(out / INFO_NAME, result.info)
    result.out = out
    from resx.studies.paths.draw import plot_paths  # Veit et al. 2016 Fig. 6 and the block gradient norms, from the CSVs

    result.figures = list(plot_paths(out))
    return out
