"""`run_variants`: the whole variants study as one library call (what `resx variants` runs): plan the runs
(plan.py), train what is not done with compare-plain's grid machinery (resumable, shards, one run per core on a CPU,
concurrent runs on one GPU; a run whose loss becomes NaN or infinite is a result, "failed", not an error), measure
every variant's forward and backward gain at initialisation (gains.py), merge the tables (tables.py), write
variants_info.json (with one `history` entry per invocation) and draw the figures.

Options come from dataclass defaults < the experiment file's `train:` and `variants:` sections < the command line.
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
from resx.studies.grids import device_of, runs_precision, write_grid_info
from resx.studies.variants.declare import DEFAULT_BLOCKS, DEFAULT_SHORTCUTS, GAIN_COLUMNS, GAINS_NAME, INFO_NAME
from resx.studies.variants.plan import Variant, VariantRun, distinct_runs, parse_variants, plan_variants


# The options each history entry keeps: what decided which runs an invocation covered.
HISTORY_SETTINGS = ("base", "shortcuts", "blocks", "cardinalities", "budget_of", "seeds", "shard", "concurrency")


@dataclass
class VariantsOptions:
    base: str | None = None  # None: the train config's model (resnet110 in the paper)
    shortcuts: str = DEFAULT_SHORTCUTS
    blocks: str = DEFAULT_BLOCKS
    seeds: int = 1
    out: str = "results/variants"
    shard: str | None = None  # "I/N" or auto
    concurrency: int | None = None
    gains_batch: int = 128  # training images for the gains at initialisation (0: skip them)
    cardinalities: str = ""  # "1,2,4,8": ResNeXts of budget_of's parameter count with C groups (Xie et al. 2017)
    budget_of: str | None = None  # default: the base net
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def resolve(cls, config_file: str | Path | None, study: dict[str, Any], train: dict[str, Any]) -> "VariantsOptions":
        values: dict[str, Any] = {}
        if config_file is not None:
            section = dict(read_experiment(config_file).get("variants", {}))
            check_keys(section, tuple(f.name for f in fields(cls) if f.name != "train"), f"{config_file} (variants)")
            values.update(section)
        values.update({k: v for k, v in study.items() if v is not None})
        if values.get("cardinalities"):  # a study of cardinality: the other tables only when asked for
            values.setdefault("shortcuts", "")
            values.setdefault("blocks", "")
            if not values.get("base") and values.get("budget_of"):
                values["base"] = values["budget_of"]
        base = values.get("base")
        train = {**train, **({"model": base} if base else {})}
        options = cls(**values, train=resolve_config(config_file, train))
        options.base = options.train.model
        options.validate()
        return options

    def validate(self) -> None:
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ResxError(f"seeds must be a positive integer, got {self.seeds!r}")
        if not isinstance(self.gains_batch, int) or self.gains_batch < 0:
            raise ResxError(f"gains_batch must be 0 (skip the gains) or a positive number of images, got {self.gains_batch!r}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ResxError(f"concurrency must be at least 1, got {self.concurrency}")
        grids.parse_shard(self.shard)

    def variants(self) -> list[Variant]:
        return parse_variants(self.shortcuts, self.blocks, self.cardinalities)

    def describe(self) -> str:
        t = self.train
        length = f"{t.epochs} epochs" if t.epochs else f"{t.iterations or 64000} iterations"
        groups = f"; cardinalities {self.cardinalities} at {self.budget_of or self.base}'s budget" if self.cardinalities else ""
        return (f"{self.base}: shortcuts {self.shortcuts or 'none'}; blocks {self.blocks or 'none'}{groups}; {self.seeds} "
                f"seed(s), {t.data}, {length}, batch {t.batch_size}, lr {t.lr}"
                + (f", shard {self.shard}" if self.shard else "") + f" -> {self.out}")


def options_from_profile(settings: Any, train: TrainConfig, overrides: dict[str, Any], out: Path,
                         where: str) -> list[tuple[Path, VariantsOptions]]:
    """A reproduce profile's `variants:` section (VariantsSettings) as the grids it asks for: its own into
    OUT/variants, each of `also:` into OUT/variants-<name> (see VariantsSettings for which train keys win)."""
    from resx.config import replace, train_config_from

    def one(entry: dict[str, Any], folder: Path, own_train_wins: bool) -> tuple[Path, VariantsOptions]:
        changes = train_config_from(dict(entry.get("train") or {}), f"{where} (variants: train)")
        config = replace(train, model=entry.get("base") or train.model, **changes)
        if not own_train_wins:  # the command line's overrides stay on top of the main grid's own changes
            config = replace(config, **{k: v for k, v in overrides.items() if v is not None and k in changes})
        options = VariantsOptions(base=config.model, shortcuts=entry.get("shortcuts", DEFAULT_SHORTCUTS),
                                  blocks=entry.get("blocks", DEFAULT_BLOCKS), seeds=entry.get("seeds", 1),
                                  out=str(folder), concurrency=entry.get("concurrency"),
                                  gains_batch=entry.get("gains_batch", 128), train=config,
                                  cardinalities=entry.get("cardinalities") or "", budget_of=entry.get("budget_of"))
        options.validate()
        return folder, options

    allowed = ("name", "base", "shortcuts", "blocks", "cardinalities", "budget_of", "seeds", "concurrency",
               "gains_batch", "train")
    main = {k: getattr(settings, k) for k in allowed if hasattr(settings, k)}
    grids_ = [one(main, out / "variants", own_train_wins=False)]
    for i, entry in enumerate(settings.also or []):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ResxError(f"{where} (variants: also): entry {i + 1} must be a mapping with a name, e.g. "
                            "{name: mlp, base: mlp_res, train: {data: fashion-mnist}}")
        check_keys(entry, allowed, f"{where} (variants: also: {entry['name']})")
        grids_.append(one(entry, out / f"variants-{entry['name']}", own_train_wins=True))
    return grids_


@dataclass
class VariantsResult:
    out: Path
    summary: pd.DataFrame
    gains: pd.DataFrame
    info: dict[str, Any]
    files: list[Path]


def fingerprint(options: VariantsOptions) -> dict[str, Any]:
    """What decides the folder's content: the base net, the dataset and the recipe; variants and seeds may grow."""
    from resx.data import normalise_data_spec

    recipe = {k: v for k, v in options.train.to_dict().items()
              if k not in grids.IGNORED_FOR_REUSE and k not in ("seed", "shortcut", "block")}
    recipe["data"] = normalise_data_spec(options.train.data)
    return {"base": options.base, "recipe": recipe, "gains_batch": options.gains_batch,
            "budget_of": options.budget_of or options.base}


def run_variants(options: VariantsOptions, *, progress: Callable | None = None,
                 on_status: Callable[[str], None] | None = None) -> VariantsResult:
    from resx.output_guard import guard_folder, merge_lock
    from resx.provenance import now, provenance
    say = on_status or (lambda _msg: None)
    started, clock = now(), time.perf_counter()
    out = Path(options.out)
    planned = plan_variants(options.train, options.variants(), seeds=options.seeds, out=out, budget_of=options.budget_of)
    runs = distinct_runs(planned)
    shard = grids.parse_shard(options.shard)
    mine = grids.shard(runs, *shard) if shard else runs
    say(f"variants: {options.describe()}; {len(runs)} runs ({len(planned)} variant x seed pairs)")
    with guard_folder(out, "variants study", fingerprint(options), shared=True):
        info = grids.run_grid(mine, concurrency=options.concurrency, progress=progress, on_status=say,
                             divergence_is_a_result=True)
        with merge_lock(out, "variants study"):
            from resx.studies.variants import tables

            gains = _gains(options, planned, out, say)
            _, summary = tables.collect(out, planned)
            info.update(started=started, ended=now(), seconds=round(time.perf_counter() - clock, 2),
                        grid_runs=len(runs), options={k: v for k, v in asdict(options).items() if k != "train"},
                        train=options.train.to_dict(),
                        iteration="one SGD step on one batch of train.batch_size images",
                        provenance=provenance(device_of(options.train.device), runs_precision(mine, options.train.precision),
                                              threads=info.get("threads_per_run") or options.train.threads))
            info = write_grid_info(out / INFO_NAME, info, HISTORY_SETTINGS)
            files = [out / n for n in ("variants_summary.csv", "variants_curves.csv", GAINS_NAME, INFO_NAME)]
            from resx.studies.variants.draw import plot_variants

            files += plot_variants(out)
    return VariantsResult(out, summary, gains, info, files)


def _gains(options: VariantsOptions, planned: list[VariantRun], out: Path, say: Callable[[str], None]) -> pd.DataFrame:
    """variants_gains.csv: every variant's gains at initialisation (kept as they are when already measured for the
    same variants: they depend only on the nets' first seed and the data)."""
    from resx.atomic import write_csv_atomic

    path = out / GAINS_NAME
    wanted = list(dict.fromkeys(p.variant for p in planned))
    if options.gains_batch == 0:
        return pd.DataFrame(columns=list(GAIN_COLUMNS))
    try:
        old = pd.read_csv(path)
        have = {(r.kind, r.variant) for r in old[["kind", "variant"]].drop_duplicates().itertuples()}
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        old, have = None, set()
    if old is not None and all((v.kind, v.name) in have for v in wanted):
        return old
    import torch

    from resx.data import load_dataset
    from resx.engine import resolve_device
    from resx.studies.common import analysis_batch
    from resx.studies.variants.gains import measure_gains

    say(f"gains at initialisation of {len(wanted)} variant(s) on {options.gains_batch} training images")
    device = resolve_device(options.train.device or "auto")
    data = load_dataset(options.train.data, options.train.data_dir)
    generator = torch.Generator().manual_seed(options.train.seed)
    images, labels = analysis_batch(data, options.gains_batch, generator, device)
    first = {p.variant: p.run.config for p in reversed(planned)}  # each variant's first seed
    rows = [row for v in wanted for row in measure_gains(v, first[v], data, images, labels, device)]
    gains = pd.DataFrame(rows, columns=list(GAIN_COLUMNS))
    write_csv_atomic(path, gains)
    return gains
