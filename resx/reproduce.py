"""`make reproduce` / `resx reproduce`: the whole study in one resumable command.

Stages (each recorded in OUT/stages.json with its wall time; a rerun skips the finished ones, and inside a stage
finished runs are skipped and interrupted ones resume from their checkpoints):
  degradation  compare-plain grid, plain and residual 20/32/44/56 plus ResNet-110 (He et al. 2015 Fig. 6)
  deep-nets    a deep residual net (pre-activation ResNet-110, as Veit's) with and without stochastic depth
  lesion       Veit et al. 2016 §4 on both deep nets and on the grid's plain net
  paths        Veit et al. 2016 §5 on the trained deep net, with block gradients of the grid's plain/residual twins
  report       every figure redrawn from the CSVs, and REPORT.md beside the papers' numbers
The profile is an experiment file (experiments/reproduce-*.yaml) with sections train, compare_plain, lesion,
paths and reproduce.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from resx.atomic import write_json_atomic
from resx.config import check_keys, read_experiment, replace, resolve_config
from resx.errors import ResxError

PROFILES_DIR = Path(__file__).resolve().parent.parent / "experiments"
STAGES = ("degradation", "deep-nets", "lesion", "paths", "report")


@dataclass
class ReproduceSettings:
    """The `reproduce:` section of a profile."""

    # Veit et al. 2016 lesioned and unraveled a pre-activation ResNet-110 (Veit et al. 2016, §4); with nothing after the
    # addition its paths split exactly (resx/studies/paths.py).
    deep_model: str = "preresnet110"
    # true: the deep net is the grid's own run of deep_model (a CPU profile cannot afford a separate one)
    deep_from_grid: bool = False
    stochastic_depth: float | None = 0.5  # p_L of the stochastic-depth twin (Huang et al. 2016); null: none
    deep_train: dict[str, Any] = field(default_factory=dict)  # training changes for the deep nets
    plain_model: str = "plain56"  # the grid's plain net that the lesion study also deletes layers from
    twin_models: list[str] = field(default_factory=lambda: ["resnet56", "plain56"])  # block gradients, trained
    requires_gpu: bool = True
    notes: str = ""  # the profile's choices and why, shown in REPORT.md (e.g. a warm-up the paper does not use)


@dataclass
class LesionSettings:
    max_k: int | None = 20
    draws: int = 50
    swaps: str = "1..10"


@dataclass
class PathsSettings:
    samples: int = 1000
    batch_size: int | None = None


def _section(cls, data: dict[str, Any], where: str):
    check_keys(data, tuple(f.name for f in fields(cls)), where)
    return cls(**data)


def profile_path(profile: str) -> Path:
    """A profile name (quick, paper, tiny, cpu) or a path to an experiment file."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ResxError(f"profile file {candidate} not found")
        return candidate
    path = PROFILES_DIR / f"reproduce-{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("reproduce-") for p in PROFILES_DIR.glob("reproduce-*.yaml"))
        raise ResxError(f"unknown profile {profile!r}; allowed: {', '.join(known) or 'none found'} or a path to a .yaml file")
    return path


def _load_stages(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / "stages.json").read_text())
    except (OSError, ValueError):
        return {}


def reproduce(
    profile: str = "quick",
    *,
    data: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    out: str | Path = "results",
    epochs: int | None = None,
    seed: int | None = None,
    allow_cpu: bool = False,
    progress: Callable | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Run every stage of the profile into `out`; returns the path of REPORT.md. `epochs` replaces the profile's
    training length (for every net it trains), e.g. a shorter run of the cpu-cifar profile on a slow machine; `seed`
    the first seed (grids count up from it)."""
    from resx.engine import resolve_device
    from resx.studies.compare import CompareOptions, compare_plain

    path = profile_path(profile)
    sections = read_experiment(path)
    settings = _section(ReproduceSettings, dict(sections.get("reproduce", {})), f"{path} (reproduce)")
    lesion_settings = _section(LesionSettings, dict(sections.get("lesion", {})), f"{path} (lesion)")
    paths_settings = _section(PathsSettings, dict(sections.get("paths", {})), f"{path} (paths)")
    overrides = dict(data=data, data_dir=data_dir, device=device if device != "auto" else None, epochs=epochs,
                     seed=seed)
    train = resolve_config(path, overrides)
    dev = resolve_device(train.device)
    if settings.requires_gpu and dev.type != "cuda" and not allow_cpu:
        raise ResxError(
            f"profile {profile!r} trains full CIFAR nets and needs a CUDA GPU (this machine has none); "
            "run `resx demo` (make demo) for the CPU demo, `--profile cpu` (make: PROFILE=cpu) for a small CPU "
            "version, or pass --allow-cpu to insist"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = _load_stages(out)
    shown = path.resolve().relative_to(PROFILES_DIR.parent) if path.resolve().is_relative_to(PROFILES_DIR.parent) else path
    from resx.provenance import environment

    write_json_atomic(out / "reproduce.json", {"profile": profile, "file": str(shown), "data": train.data,
                                                "epochs_override": epochs, "notes": settings.notes or None,
                                                **environment(dev)})

    def stage(name: str, fn: Callable[[], Any]) -> None:
        if stages.get(name, {}).get("status") == "finished":
            say(f"stage {name}: finished earlier, skipped")
            return
        say(f"stage {name} ...")
        start = time.perf_counter()
        stages[name] = {"status": "running"}
        write_json_atomic(out / "stages.json", stages)
        fn()
        stages[name] = {"status": "finished", "seconds": round(time.perf_counter() - start, 1)}
        write_json_atomic(out / "stages.json", stages)
        say(f"stage {name}: done in {stages[name]['seconds']:.0f} s")

    grid_out = out / "degradation"
    runs_out = out / "runs"

    def degradation() -> None:
        options = CompareOptions.resolve(path, {"out": str(grid_out)}, overrides)
        result = compare_plain(options, progress=progress, on_status=say)
        for line in result.verdict:
            say(line)

    def grid_run(model: str) -> Path:
        return grid_out / f"{model}-seed{train.seed}"

    deep_runs = {settings.deep_model: (grid_run(settings.deep_model) if settings.deep_from_grid
                                       else runs_out / f"{settings.deep_model}-seed{train.seed}")}
    if settings.stochastic_depth is not None:
        deep_runs[f"{settings.deep_model}-stochastic-depth"] = (
            runs_out / f"{settings.deep_model}-sd{settings.stochastic_depth:g}-seed{train.seed}")

    def deep_nets() -> None:
        from resx.data import load_dataset
        from resx.engine import TrainingRun, train_many
        from resx.engine.run import run_folder_state

        base = replace(train, model=settings.deep_model, **settings.deep_train)
        configs = [base]
        if settings.stochastic_depth is not None:
            configs.append(replace(base, stochastic_depth=settings.stochastic_depth))
        # a deep net taken from the grid was trained there
        planned = list(zip(configs, deep_runs.values()))[1 if settings.deep_from_grid else 0:]
        todo = [(c, d) for c, d in planned if run_folder_state(d) != "finished"]
        if not todo:
            return
        data_on_device = load_dataset(train.data, train.data_dir).to(dev)
        trainers = [TrainingRun(c, d, resume="auto", data=data_on_device).setup() for c, d in todo]
        train_many(trainers, progress=progress)

    def lesion() -> None:
        from resx.studies.lesion import run_lesion

        targets = list(dict.fromkeys([*deep_runs.values(), grid_run(settings.plain_model)]))
        run_lesion(targets, data=train.data, data_dir=train.data_dir, max_k=lesion_settings.max_k,
                   draws=lesion_settings.draws, swaps=lesion_settings.swaps, seed=train.seed, device=str(dev),
                   out=out / "lesion")

    def paths() -> None:
        from resx.studies.paths import run_paths

        targets = list(dict.fromkeys([deep_runs[settings.deep_model], *(grid_run(m) for m in settings.twin_models)]))
        run_paths([t for t in targets if t.exists()], data=train.data, data_dir=train.data_dir,
                  samples=paths_settings.samples, batch_size=paths_settings.batch_size, seed=train.seed,
                  device=str(dev), out=out / "paths")

    def report() -> None:
        from resx.plots import plot_results
        from resx.report import write_report

        plot_results(out, formats=("png",))
        write_report(out, meta={"profile": profile, "dataset": train.data, "device": str(dev), "stages": {
            k: v for k, v in stages.items() if isinstance(v, dict) and "seconds" in v}})

    for name, fn in zip(STAGES, (degradation, deep_nets, lesion, paths, report)):
        stage(name, fn)
    return out / "REPORT.md"
