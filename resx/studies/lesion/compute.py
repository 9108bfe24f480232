"""Lesion studies of trained nets (Veit, Wilber & Belongie 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", §4): delete or reorder blocks at test time and measure the test error.

    single    delete each block in turn (§4.1, Fig. 3): the block is replaced by its shortcut (identity, or the
              downsampling shortcut where the shape changes); for a plain net its layers become the identity
              (option A map where the shape changes). Residual nets barely notice; plain nets drop to chance.
    delete-k  delete k random non-downsampling blocks together, k = 1..max_k, `draws` times each (§4.2, Fig. 5a):
              the error grows smoothly with k, as an ensemble's does when members are removed.
    swap      swap 1..K random pairs of blocks of the same shape (§4.3, Fig. 5b): the error grows smoothly as
              Kendall's tau between the original and the new order falls.

Every lesion runs in eval mode (BatchNorm running statistics) over the whole test set.

Speed (the full suite for ResNet-110 is 55 + 1,000 + 500 evaluations of 10,000 images):
  * prefix caching: the intact net's activations (the stem output and the output of every block) are computed
    once for the whole test set; a lesion whose first changed position is p starts from the cached input of p,
    so deleting block 50 of 54 costs 4 blocks, not 54. A deleted block costs only its shortcut. When the cache
    does not fit its memory budget, only every s-th position is kept and the few intact blocks between the
    nearest kept position and p are recomputed; with no budget at all, every lesion starts from the images.
  * the test set lives on the device; bf16 autocast, channels-last and BatchNorm folded into the convolutions
    on CUDA (fp32, unfolded on the CPU so results match `Evaluator` exactly); large eval batches.
  * error counts accumulate on the device: one host sync per study, not per batch or per lesion.
    Budget for ResNet-110 on CIFAR-10 (counted with these draws, not timed on a GPU): the suite costs about
    33,000 block passes over the test set with the cache against 43,000 without, counting a block on 16x16 maps
    as half and on 8x8 maps as a quarter of one on 32x32 maps (single: 600 vs 1,700; delete-k and swap gain
    less, their first change is early). At roughly 1-2 ms per 32x32 block pass over 10,000 images in bf16 on an
    H100 (memory-bound), that is 35-65 s: near the 60 s target, to be confirmed on a GPU. CUDA graphs are not
    used (every lesion is a different graph).
  * draws come from a torch.Generator seeded by `seed` (one stream per study), so runs compared side by side
    get the same deleted sets and swaps when their nets have the same blocks.

Library entry point: `run_lesion(...)`; it writes lesion_single.csv, lesion_delete_k.csv, lesion_swap.csv and
lesion_info.json (atomically) and returns a `LesionResult`. No typer or rich here: progress is a callback.

Stopped part way (Ctrl-C, SIGTERM, a kill), a lesion study keeps every experiment it finished, one run's single,
delete-k or swap, written after each (resx.studies.resume); the same command continues with the others, to the CSVs
an uninterrupted study writes. The experiment under way starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resx.errors import ResxError
from resx.provenance import provenance
from resx.studies import guards
from resx.studies.common import TrainedRun, load_runs
from resx.studies.lesion.declare import DEFAULT_DRAWS, DEFAULT_SWAPS
from resx.studies.lesion.evaluator import LesionEvaluator
from resx.studies.lesion.plans import (LesionOptions, RunPlan, check_settings, deletion_plan, draw_deletions,
                                       draw_swaps, intact_plan, order_plan, plan_run)
from resx.studies.lesion.store import LesionRows, kept_rows, unit_name, write_lesion_outputs
from resx.studies.resume import Resumable

ProgressFn = Callable[[str, str, int, int], None]  # (run name, study, lesions done, lesions in the study)


# --- runs -------------------------------------------------------------------------------------------------------------
@dataclass
class LesionResult:
    out: Path
    single: Any  # pandas DataFrames with the CSV columns above
    delete_k: Any
    swap: Any
    info: dict
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self, ks: Sequence[int] = (1, 5, 10, 20), swap_counts: Sequence[int] = (1, 5, 10)) -> list[dict]:
        """One dict per run: baseline, single-block min/median/max (non-downsampling), the downsampling blocks'
        errors, delete-k mean at a few k, swap mean at a few counts, seconds per study (what the CLI table shows)."""
        rows = []
        for run in self.info["runs"]:
            name = run["run"]
            row: dict[str, Any] = {"run": name, "model": run["model"], "baseline": run.get("baseline_error")}
            s = self.single[self.single["run"] == name] if len(self.single) else self.single
            if len(s):
                kept = s[~s["downsampling"]]
                if len(kept):
                    row.update(single_min=kept["test_error"].min(), single_median=kept["test_error"].median(),
                               single_max=kept["test_error"].max())
                row["downsampling"] = {int(r.block): float(r.test_error) for r in s[s["downsampling"]].itertuples()}
            d = self.delete_k[self.delete_k["run"] == name] if len(self.delete_k) else self.delete_k
            if len(d):
                means = d.groupby("k")["test_error"].mean()
                row["delete_k"] = {int(k): float(means[k]) for k in ks if k in means.index}
            w = self.swap[self.swap["run"] == name] if len(self.swap) else self.swap
            if len(w):
                means = w.groupby("swaps")["test_error"].mean()
                row["swap"] = {int(c): float(means[c]) for c in swap_counts if c in means.index}
            row["seconds"] = run["seconds"]
            rows.append(row)
        return rows


def load_run_data(run: TrainedRun, data: str | None, data_dir: str | Path | None,
                  datasets: dict[tuple, Any]) -> tuple[str, str | None]:
    """The dataset `run` is lesioned on (`data`, else its own), loaded into `datasets` unless it is there already,
    and checked to fit the net; returns its key in `datasets`."""
    from resx.data import load_dataset

    spec = data or run.data_spec
    if not spec:
        raise ResxError(f"run {run.name}: its checkpoint names no dataset; give --data")
    root = data_dir if data_dir is not None else run.data_dir
    key = (spec, str(root) if root else None)
    if key not in datasets:
        datasets[key] = load_dataset(spec, root)
    guards.check_data_fits(run.name, run.model, getattr(run.net, "model_options", None), datasets[key],
                           what="lesion")
    return key


def study_info(settings: LesionOptions, device: torch.device, precision: str) -> dict[str, Any]:
    """lesion_info.json's settings; its `runs` are added as they are lesioned."""
    return {
        "study": "lesion (Veit et al. 2016, §4)",
        "provenance": provenance(device, precision),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": precision,
        "studies": list(settings.studies),
        "draws": settings.draws,
        "swaps": settings.swap_counts,
        "max_k": settings.max_k,
        "seed": settings.seed,
        "blocks": settings.blocks,
        "runs": [],
    }


def _study_generator(seed: int, offset: int) -> torch.Generator:
    """Each study draws from its own generator, so adding or dropping a study leaves the others' draws alone."""
    return torch.Generator().manual_seed(seed * 1000 + offset)


def lesion_single(run: TrainedRun, evaluator: LesionEvaluator, baseline: float, blocks: list[int] | None,
                  report: Callable | None) -> list[dict]:
    """Veit et al. 2016 §4.1, Fig. 3: each block deleted in turn (the paper numbers blocks from 1; we from 0)."""
    n = len(run.net.blocks)
    info_blocks = run.net.block_info()
    chosen = blocks if blocks is not None else list(range(n))
    errors, losses = evaluator.evaluate([deletion_plan(n, [b]) for b in chosen], report)
    return [dict(run=run.name, block=b, stage=info_blocks[b].stage, downsampling=info_blocks[b].downsampling,
                 test_error=err, baseline_error=baseline, test_loss=loss, model=run.model, residual=run.residual)
            for b, err, loss in zip(chosen, errors, losses)]


def lesion_delete_k(run: TrainedRun, evaluator: LesionEvaluator, baseline: float, plan: RunPlan,
                    settings: LesionOptions, report: Callable | None) -> list[dict]:
    """Veit et al. 2016 §4.2, Fig. 5a: k random non-downsampling blocks deleted together."""
    n = len(run.net.blocks)
    draws = draw_deletions(plan.deletable, range(1, plan.max_k + 1), settings.draws,
                           _study_generator(settings.seed, 1))
    errors, losses = evaluator.evaluate([deletion_plan(n, d) for _, _, d in draws], report)
    return [dict(run=run.name, k=k, draw=d, test_error=err, baseline_error=baseline, test_loss=loss,
                 deleted=" ".join(map(str, deleted)), model=run.model, residual=run.residual, blocks=n)
            for (k, d, deleted), err, loss in zip(draws, errors, losses)]


def lesion_swap(run: TrainedRun, evaluator: LesionEvaluator, baseline: float, plan: RunPlan,
                settings: LesionOptions, report: Callable | None) -> list[dict]:
    """Veit et al. 2016 §4.3, Fig. 5b: random same-shape pairs swapped; error against Kendall's tau."""
    n = len(run.net.blocks)
    draws = draw_swaps(n, plan.pairs, plan.swap_counts, settings.draws, _study_generator(settings.seed, 2))
    errors, losses = evaluator.evaluate([order_plan(o) for _, _, o, _ in draws], report)
    return [dict(run=run.name, swaps=count, draw=d, kendall_tau=tau, test_error=err, baseline_error=baseline,
                 test_loss=loss, order=" ".join(map(str, order)), model=run.model, residual=run.residual)
            for (count, d, order, tau), err, loss in zip(draws, errors, losses)]


def lesion_one_run(run: TrainedRun, plan: RunPlan, data: Any, settings: LesionOptions, rows: LesionRows, *,
                   device: torch.device, precision: str, progress: ProgressFn | None, store: Resumable,
                   save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every study of `plan` on one run that `store` does not hold done: its rows are added to `rows` and written
    (`save`, given the run's entry of lesion_info.json) after each; returns that entry."""
    units = {study: unit_name(run.name, study) for study in plan.studies}
    todo = [study for study in plan.studies if not store.is_done(units[study])]
    earlier = next((store.kept[units[s]] for s in reversed(plan.studies) if units[s] in store.kept), None)
    if not todo and earlier is not None:
        return earlier
    n = len(run.net.blocks)

    def report(study: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: progress(run.name, study, done, total)) if progress else None

    t0 = time.perf_counter()
    evaluator = LesionEvaluator(run.net, data.test_images, data.test_labels, data.mean, data.std, device=device,
                                precision=precision, batch_size=settings.batch_size, cache_bytes=settings.cache_bytes)
    (baseline,), (baseline_loss,) = evaluator.evaluate([intact_plan(n)])
    seconds = {"cache": time.perf_counter() - t0}
    seconds.update({s: v for s, v in ((earlier or {}).get("seconds") or {}).items() if s != "cache"})
    entry = run_entry(run, plan, data, evaluator, baseline, baseline_loss, seconds)
    lessons = {
        "single": (rows.single, lambda r: lesion_single(run, evaluator, baseline, settings.blocks, r)),
        "delete-k": (rows.delete_k, lambda r: lesion_delete_k(run, evaluator, baseline, plan, settings, r)),
        "swap": (rows.swap, lambda r: lesion_swap(run, evaluator, baseline, plan, settings, r)),
    }
    for study in todo:
        target, lesion = lessons[study]
        t0 = time.perf_counter()
        target += lesion(report(study))
        seconds[study] = time.perf_counter() - t0
        entry = run_entry(run, plan, data, evaluator, baseline, baseline_loss, seconds)
        save(entry)
        store.mark(units[study], entry)
    return entry


def run_entry(run: TrainedRun, plan: RunPlan, data: Any, evaluator: LesionEvaluator, baseline: float,
              baseline_loss: float, seconds: dict[str, float]) -> dict[str, Any]:
    """The run's entry of lesion_info.json."""
    n = len(run.net.blocks)
    info_blocks = run.net.block_info()
    return {
        "run": run.name,
        "checkpoint": str(run.checkpoint),
        "run_record": run.record,  # its run's status, its epoch and iterations (an unfinished run studied with --force)
        "model": run.model,
        "residual": run.residual,
        "stochastic_depth": run.config.get("stochastic_depth"),
        "data": data.name,
        "test_images": evaluator.num_images,
        "blocks": n,
        "downsampling_blocks": [b.index for b in info_blocks if b.downsampling],
        "studies": plan.studies,
        "skipped": plan.skipped,
        "notes": plan.notes,
        "max_k": plan.max_k,
        "swap_counts": plan.swap_counts if "swap" in plan.studies else [],
        "baseline_error": baseline,
        "baseline_loss": baseline_loss,
        "batch_size": evaluator.batch_size,
        "cached_positions": len(evaluator.cached_positions),
        "cache_mb": round(evaluator.cache_bytes / 2**20, 1),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "total_seconds": round(sum(seconds.values()), 3),
    }


@guards.one_writer("lesion")
def run_lesion(
    checkpoints: Sequence[str | Path],
    *,
    data: str | None = None,
    data_dir: str | Path | None = None,
    studies: str | Iterable[str] | None = None,
    blocks: str | Iterable[int] | None = None,
    max_k: int | None = None,
    draws: int = DEFAULT_DRAWS,
    swaps: str | int | Iterable[int] = DEFAULT_SWAPS,
    seed: int = 0,
    device: str = "auto",
    batch_size: int | None = None,
    cache_bytes: int | None = None,
    out: str | Path = Path("results/lesion"),
    progress: ProgressFn | None = None,
    overwrite: bool = True,
    force: bool = False,
    resume: bool = True,
    say: Callable[[str], None] | None = None,
) -> LesionResult:
    """Lesion each trained run (a run folder or checkpoint.pt) and write the CSVs and lesion_info.json into `out`.

    data:        dataset spec; default: each run's own training dataset (from its checkpoint's config)
    studies:     'single', 'delete-k', 'swap' (comma string or sequence). None: all three, with `swap` skipped
                 for nets that cannot be reordered (plain nets: no shortcuts; nets with no two blocks of one
                 shape); asking for `swap` explicitly on such a net is an error. The CSV of every asked-for
                 study is written, even when it has no rows.
    blocks:      restrict `single` to these 0-based block indices (default: every block)
    max_k:       delete-k for k = 1..max_k; default 20, or every deletable block when a net has fewer
    draws:       random draws per k and per swap count
    swaps:       swap counts: '1..10', '5', '1,2,5' or a sequence of ints
    seed:        seeds the torch.Generator of each study's draws
    cache_bytes: memory for the prefix cache (None: automatic, 0: off)
    progress:    called as progress(run name, study, done, total) after each lesion
    overwrite:   replace an earlier lesion study in `out` (its files are removed first, so nothing mixes); False
                 (the CLI's default): refuse it
    force:       lesion runs that are not finished, or on other data than their own (refused otherwise)
    resume:      continue an unfinished study of the same settings in `out` (the experiments it finished are kept;
                 see resx.studies.resume); False: start it over
    say:         one-line messages (what an unfinished study continues from)
    """
    from resx.engine.device import resolve_device, resolve_precision

    settings = check_settings(studies, blocks, max_k, draws, swaps, seed, batch_size, cache_bytes)
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev)
    out = Path(out)

    # Check every run and option before the first evaluation: a mistake should cost seconds, not a study.
    runs = load_runs(checkpoints)
    for run in runs:
        guards.check_run(run.name, run.checkpoint, run.data_spec, data, force=force, what="lesion")
    store = Resumable(out, "lesion", lesion_fingerprint(runs, settings, data, precision),
                      units="lesion experiments", overwrite=overwrite,
                      resume=resume)
    store.check()
    datasets: dict[tuple, Any] = {}  # (spec, folder): the loaded dataset, shared by the runs that use it
    plans: dict[str, RunPlan] = {}
    data_keys: dict[str, tuple] = {}
    for run in runs:
        plans[run.name] = plan_run(run, settings)
        data_keys[run.name] = load_run_data(run, data, data_dir, datasets)
    # every check passed: an earlier study replaced with `overwrite` goes, so that nothing mixes
    store.start([unit_name(run.name, study) for run in runs for study in plans[run.name].studies])
    with store.interruptible():
        rows = kept_rows(store, [run.name for run in runs])
        if say and store.resume_line():
            say(store.resume_line())
        info = study_info(settings, dev, precision)
        files: dict[str, Path] = {}
        for i, run in enumerate(runs):
            def save(entry: dict[str, Any], i: int = i) -> None:
                info["runs"][i:] = [entry]
                write_lesion_outputs(out, settings.studies, rows, info, files)

            info["runs"][i:] = [lesion_one_run(run, plans[run.name], datasets[data_keys[run.name]], settings, rows,
                                               device=dev, precision=precision, progress=progress, store=store,
                                               save=save)]
        write_lesion_outputs(out, settings.studies, rows, info, files)

        from resx.studies.lesion.draw import plot_lesion  # Veit et al. 2016 Fig. 3 and 5, from the CSVs just written

        for figure in plot_lesion(out):
            files[figure.name] = figure
        store.finish()
    return LesionResult(out, *rows.frames(), info, files)


def lesion_fingerprint(runs: Sequence[TrainedRun], settings: LesionOptions, data: str | None,
                       precision: str) -> dict[str, Any]:
    """What decides a lesion study's numbers: an unfinished study is continued only with these same."""
    return {"runs": [{"run": r.name, "checkpoint": str(Path(r.checkpoint).resolve()), "record": r.record}
                     for r in runs],
            "data": data, "studies": list(settings.studies), "blocks": settings.blocks, "max_k": settings.max_k,
            "draws": settings.draws, "swaps": settings.swap_counts, "seed": settings.seed,
            "batch_size": settings.batch_size, "cache_bytes": settings.cache_bytes, "precision": precision}
