"""`compare_plain`: the whole degradation study as one library call (what `resx compare-plain` runs).

Options come from dataclass defaults < the experiment file's `train:` and `compare_plain:` sections < the
command line, like every other resx command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from resx.config import TrainConfig, check_keys, read_experiment, resolve_config
from resx.errors import ResxError
from resx.studies import degradation


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
        degradation.parse_shard(self.shard)
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
) -> CompareResult:
    runs = degradation.plan_grid(
        options.train, depths=options.depths, residual_depths=options.residual_depths, seeds=options.seeds,
        family=options.family, out=options.out, per_model=options.per_model,
    )
    shard = degradation.parse_shard(options.shard)
    mine = degradation.shard(runs, *shard) if shard else runs
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    info = degradation.run_grid(mine, concurrency=options.concurrency, progress=progress, on_status=on_status)
    info["options"] = {k: v for k, v in asdict(options).items() if k != "train"}
    info["train"] = options.train.to_dict()
    # Every shard merges what exists when it ends, so the last one to finish leaves the complete tables.
    curves, summary = degradation.collect(out, runs)
    info_name = f"grid_info-shard{shard[0]}of{shard[1]}.json" if shard else "grid_info.json"
    from resx.atomic import write_json_atomic

    write_json_atomic(out / info_name, info)
    files = [out / "curves.csv", out / "summary.csv"]
    files += plot_degradation_safely(out)
    return CompareResult(out, summary, curves, degradation.verdict(summary), info, files, options.train.batch_size)


def plot_degradation_safely(out: Path) -> list[Path]:
    """The figures (He et al. Fig. 6 and error vs depth), drawn from the CSVs just written."""
    from resx.plots import plot_degradation

    return list(plot_degradation(out))
