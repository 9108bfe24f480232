"""`compare_plain`: the whole degradation study as one library call (what `resx compare-plain` runs): plan the
grid (grid.py), train what is not finished, merge the tables (tables.py), write grid_info.json, draw the figures.

Options come from dataclass defaults < the experiment file's `train:` and `compare_plain:` sections < the
command line, like every other resx command.

grid_info.json (grid_info-shardIofN.json for one shard of a sharded grid) describes the latest invocation at its
top level (runs, trained, skipped, timings, options, train config, provenance) and keeps every invocation in
`history`, oldest first: its start and end, the runs in the grid and those trained, its seconds, its settings
(depths, seeds, shard ...) and its provenance block. A file written before `history` existed becomes its first
entry.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from resx.config import TrainConfig, check_keys, read_experiment, resolve_config
from resx.errors import ResxError
from resx.studies import grids
from resx.studies.degradation import grid, tables
from resx.studies.degradation.declare import CURVES, INFO_NAME, SUMMARY, shard_info_name
from resx.studies.degradation.verdict import verdict
from resx.studies.grids import device_of, runs_precision

# The options each history entry keeps: what decides which runs an invocation covered.
HISTORY_SETTINGS = ("depths", "residual_depths", "seeds", "family", "shard", "concurrency")


@dataclass
class CompareOptions:
    depths: list[int] = field(default_factory=lambda: [20, 32, 44, 56])
    residual_depths: list[int] = field(default_factory=list)
    seeds: int = 3
    family: str = "cifar"
    out: str = "results/degradation"
    shard: str | None = None  # "I/N"
    concurrency: int | None = None  # None: 4 on CUDA, 1 on CPU
    # Per-model training changes, e.g. {"resnet110": {"warmup_lr": 0.01}} (He et al. 2015 §4.2).
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def resolve(
        cls, config_file: str | Path | None, study: dict[str, Any], train: dict[str, Any]
    ) -> "CompareOptions":
        values: dict[str, Any] = {}
        if config_file is not None:
            section = dict(read_experiment(config_file).get("compare_plain", {}))
            allowed = tuple(f.name for f in fields(cls) if f.name != "train")
            check_keys(section, allowed, f"{config_file} (compare_plain)")
            values.update(section)
        values.update({k: v for k, v in study.items() if v is not None})
        train_config = resolve_config(config_file, train)
        options = cls(**values, train=train_config)
        options.validate()
        return options

    def validate(self) -> None:
        if not isinstance(self.depths, list) or not all(isinstance(d, int) for d in self.depths):
            raise ResxError(f"depths must be a list of integers, got {self.depths!r}")
        if not isinstance(self.residual_depths, list) or not all(isinstance(d, int) for d in self.residual_depths):
            raise ResxError(f"residual_depths must be a list of integers, got {self.residual_depths!r}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ResxError(f"seeds must be a positive integer, got {self.seeds!r}")
        grids.parse_shard(self.shard)
        if self.concurrency is not None and self.concurrency < 1:
            raise ResxError(f"concurrency must be at least 1, got {self.concurrency}")

    def describe(self) -> str:
        t = self.train
        length = f"{t.epochs} epochs" if t.epochs else f"{t.iterations or 64000} iterations"
        extra = f", residual only {self.residual_depths}" if self.residual_depths else ""
        shard = f", shard {self.shard}" if self.shard else ""
        return (f"{self.family} family, depths {self.depths}{extra}, {self.seeds} seed(s), {t.data}, {length}, "
                f"batch {t.batch_size}, lr {t.lr}{shard} -> {self.out}")


@dataclass
class CompareResult:
    out: Path
    summary: pd.DataFrame
    curves: pd.DataFrame
    verdict: list[str]
    info: dict[str, Any]
    files: list[Path]
    batch_size: int


def compare_plain(
    options: CompareOptions,
    *,
    progress: Callable | None = None,
    on_status: Callable[[str], None] | None = None,
    announce: bool = False,
) -> CompareResult:
    from resx.output_guard import guard_folder, merge_lock
    from resx.provenance import now, provenance

    started, clock = now(), time.perf_counter()
    runs = grid.plan_grid(
        options.train, depths=options.depths, residual_depths=options.residual_depths, seeds=options.seeds,
        family=options.family, out=options.out, per_model=options.per_model,
    )
    shard = grids.parse_shard(options.shard)
    mine = grids.shard(runs, *shard) if shard else runs
    out = Path(options.out)
    _check_data(options, mine)
    if on_status is not None and announce:
        on_status(f"compare-plain: {options.describe()}")  # after every check: no banner above an error
    # Shards of one grid write this folder together (shared: each run folder has its own lock); a grid of another
    # family, dataset or recipe is refused, so that two grids never merge into one summary.csv and one figure.
    with guard_folder(out, "degradation grid", grid_fingerprint(options), shared=True):
        info = grids.run_grid(mine, concurrency=options.concurrency, progress=progress, on_status=on_status)
        info["grid_runs"] = len(runs)
        info["options"] = {k: v for k, v in asdict(options).items() if k != "train"}
        info["train"] = options.train.to_dict()
        # Every shard merges what exists when it ends, one shard at a time, so that the last to merge (which sees
        # every finished run) writes last and leaves the complete tables.
        with merge_lock(out, "degradation grid"):
            curves, summary = tables.collect(out, runs)
            files = [out / CURVES, out / SUMMARY]
            info["started"], info["ended"] = started, now()
            info["seconds"] = round(time.perf_counter() - clock, 2)
            info["provenance"] = provenance(device_of(options.train.device),
                                            runs_precision(mine, options.train.precision),
                                            threads=info.get("threads_per_run") or options.train.threads)
            info_name = shard_info_name(*shard) if shard else INFO_NAME
            # the record first: a figure that fails to draw must not cost the grid its grid_info.json entry
            info = write_grid_info(out / info_name, info)
            files += plot_degradation_safely(out)
    return CompareResult(out, summary, curves, verdict(summary), info, files, options.train.batch_size)


def _check_data(options: CompareOptions, runs: list[grids.GridRun]) -> None:
    """The dataset, loaded once before any folder is made or any worker process starts: a bad --data is one line,
    not a worker's traceback and an empty folder (and the decoded copy it caches makes the workers' loads quick)."""
    from resx.data import load_dataset
    from resx.engine.run_folder import run_folder_state

    if any(run_folder_state(run.run_dir) != "finished" for run in runs):
        load_dataset(options.train.data, options.train.data_dir)


def grid_fingerprint(options: CompareOptions) -> dict[str, Any]:
    """What decides a grid folder's content: the family, the dataset and the recipe every run shares. Depths, seeds
    and shards may grow or change between invocations (a grid extended with more seeds is the same grid); where
    and how fast the runs train (grids.IGNORED_FOR_REUSE) does not count."""
    from resx.data import normalise_data_spec

    recipe = {k: v for k, v in options.train.to_dict().items()
              if k not in grids.IGNORED_FOR_REUSE and k not in ("model", "seed", "depth", "warmup_lr")}
    recipe["data"] = normalise_data_spec(options.train.data)
    return {"family": options.family, "recipe": recipe, "per_model": options.per_model}


def write_grid_info(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """grid_info.json (or a shard's): this invocation at the top level, every invocation in `history`, each with
    the grid settings that decided its runs (HISTORY_SETTINGS); see resx.studies.grids.write_grid_info."""
    return grids.write_grid_info(path, info, HISTORY_SETTINGS)


def plot_degradation_safely(out: Path) -> list[Path]:
    """The figures (He et al. Fig. 6 and error vs depth), drawn from the CSVs just written."""
    from resx.studies.degradation.draw import plot_degradation

    return list(plot_degradation(out))
