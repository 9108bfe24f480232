"""`make reproduce` / `resx reproduce`: the whole study in one resumable command.

Stages (each recorded in OUT/stages.json with its wall time, summed over the attempts of a stage that was stopped
and resumed; a rerun skips the finished ones, and inside a stage finished runs are skipped and interrupted ones
resume from their checkpoints), in order:
  degradation  compare-plain grid, plain and residual 20/32/44/56 plus ResNet-110 (He et al. 2015 Fig. 6)
  deep-nets    a deep residual net (pre-activation ResNet-110, as Veit's) with and without stochastic depth
  lesion       Veit et al. 2016 §4 on both deep nets and on the grid's plain net
  paths        Veit et al. 2016 §5 on the trained deep net, with block gradients of the grid's plain/residual twins
  landscape    Li et al. 2018's loss surfaces of the grid's trained plain/residual twins
  signal       activation and gradient norms per layer, and block Jacobians, of the same twins
  report       every figure redrawn from the CSVs, and REPORT.md beside the papers' numbers
Every stage but deep-nets and report is a registered study's (resx.studies.registry: each declares its stage, its order
and its section of the profile). The profile is an experiment file (experiments/reproduce-*.yaml) with sections
train, compare_plain, reproduce and one per study (lesion, paths, landscape, signal).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from resx.atomic import write_json_atomic
from resx.config import check_keys, packaged_experiments, read_experiment, replace, resolve_config
from resx.errors import ResxError
from resx.studies.registry import StageContext, registered

PROFILES_DIR = packaged_experiments()  # reproduce-NAME.yaml: shipped inside the package
# reproduce's own stages, between the studies' (resx.studies.registry: degradation 10, lesion 30, paths 40, ...)
DEEP_NETS_ORDER = 20
REPORT_ORDER = 1000


@dataclass
class ReproduceSettings:
    """The `reproduce:` section of a profile."""

    # Veit et al. 2016 lesioned and unraveled a pre-activation ResNet-110 (Veit et al. 2016, §4); with nothing after the
    # addition its paths split exactly (resx/studies/paths/path_gradients.py).
    deep_model: str = "preresnet110"
    # true: the deep net is the grid's own run of deep_model (a CPU profile cannot afford a separate one)
    deep_from_grid: bool = False
    stochastic_depth: float | None = 0.5  # p_L of the stochastic-depth twin (Huang et al. 2016); null: none
    deep_train: dict[str, Any] = field(default_factory=dict)  # training changes for the deep nets
    plain_model: str = "plain56"  # the grid's plain net that the lesion study also deletes layers from
    twin_models: list[str] = field(default_factory=lambda: ["resnet56", "plain56"])  # block gradients, trained
    requires_gpu: bool = True
    notes: str = ""  # the profile's choices and why, shown in REPORT.md (e.g. a warm-up the paper does not use)
    # the studies this profile runs (their stages, then the report); empty: every registered study with a stage,
    # and the deep nets the lesion and path studies analyse. A profile of studies that train their own small nets
    # (e.g. approximate, depth) names just those.
    studies: list[str] = field(default_factory=list)


def _section(cls, data: dict[str, Any], where: str):
    """A profile's section as the dataclass `cls` (unknown keys refused with the allowed ones named)."""
    check_keys(data, tuple(f.name for f in fields(cls)), where)
    return cls(**data)


def deep_run_folders(settings: ReproduceSettings, out: Path, seed: int) -> dict[str, Path]:
    """{label: run folder} of the deep nets that the lesion and path studies analyse."""
    grid = out / "degradation"
    folders = {settings.deep_model: (grid / f"{settings.deep_model}-seed{seed}" if settings.deep_from_grid
                                     else out / "runs" / f"{settings.deep_model}-seed{seed}")}
    if settings.stochastic_depth is not None:
        folders[f"{settings.deep_model}-stochastic-depth"] = (
            out / "runs" / f"{settings.deep_model}-sd{settings.stochastic_depth:g}-seed{seed}")
    return folders


def train_deep_nets(ctx: StageContext) -> None:
    """The deep residual net (unless the grid trained it) and its stochastic-depth twin (Huang et al. 2016)."""
    from resx.data import load_dataset
    from resx.engine import TrainingRun, resolve_device, train_many
    from resx.engine.run_folder import run_folder_state

    settings: ReproduceSettings = ctx.reproduce
    base = replace(ctx.train, model=settings.deep_model, **settings.deep_train)
    configs = [base]
    if settings.stochastic_depth is not None:
        configs.append(replace(base, stochastic_depth=settings.stochastic_depth))
    planned = list(zip(configs, ctx.deep_runs.values()))[1 if settings.deep_from_grid else 0:]  # the grid trained it
    todo = [(c, d) for c, d in planned if run_folder_state(d) != "finished"]
    if not todo:
        return
    data_on_device = load_dataset(ctx.train.data, ctx.train.data_dir).to(resolve_device(ctx.device))
    trainers = [TrainingRun(c, d, resume="auto", data=data_on_device) for c, d in todo]
    train_many(trainers, progress=ctx.progress)


NO_DATASET = "none (its studies make their own data)"


def uses_dataset(settings: ReproduceSettings) -> bool:
    """Whether the profile's stages train or evaluate on its dataset: every profile that trains nets does; one that
    names only studies of their own generated data (approximate, depth) does not."""
    from resx.studies.registry import get_study

    chosen = list(settings.studies or [])
    return not chosen or any(get_study(name).uses_dataset for name in chosen)


def planned_stages(ctx: StageContext, sections: dict[str, Any], path: Path,
                   report: Callable[[], None]) -> list[tuple[str, int, Callable[[], None]]]:
    """[(name, order, run)]: every registered study's stage with its section of the profile, reproduce's deep-nets
    and report stages, in order. The studies' settings are all read before anything runs, so that a typo in a
    profile's last section fails at once, not after hours of training."""
    import dataclasses

    chosen = list(ctx.reproduce.studies or [])
    staged = [s.name for s in registered() if s.stage is not None]
    unknown = [name for name in chosen if name not in staged]
    if unknown:
        raise ResxError(f"{path} (reproduce): studies: unknown study {unknown[0]!r}; allowed: {', '.join(staged)}")
    planned: list[tuple[str, int, Callable[[], None]]] = [("report", REPORT_ORDER, report)]
    if not chosen:
        planned.append(("deep-nets", DEEP_NETS_ORDER, lambda: train_deep_nets(ctx)))
    for study in registered():
        if study.stage is None or (chosen and study.name not in chosen):
            continue
        if not chosen and not study.in_every_profile and study.name not in sections:
            continue
        own = dataclasses.replace(ctx)
        if study.settings is not None:
            own.settings = _section(study.settings, dict(sections.get(study.name, {})), f"{path} ({study.name})")
        planned.append((study.name, study.stage_order, lambda fn=study.stage, c=own: fn(c)))
    return sorted(planned, key=lambda item: item[1])


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


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_stages(out: Path) -> dict[str, Any]:
    return _load_json(out / "stages.json")


def run_stage(stages: dict[str, Any], name: str, fn: Callable[[], Any], stages_file: Path,
              say: Callable[[str], None] = print, clock: Callable[[], float] = time.perf_counter,
              commit: str | None = None) -> None:
    """Run one stage unless stages.json says it finished (the report is redrawn every time: a stage run now, e.g.
    a study added since, must be in it), keeping in `stages` and the file its status and its wall time.

    A stage that is stopped (Ctrl-C, SIGTERM, an error) and resumed later is timed over all its attempts: `seconds`
    is their sum, so that it compares with a time target however often the run was stopped; `attempts` counts them
    and `last_attempt_seconds` is the one that finished it. An attempt killed outright (SIGKILL, power loss) cannot
    record its time: it is counted in `killed_attempts`, and `seconds` is then a lower bound (the run folders'
    own clocks, e.g. metrics.csv's elapsed_seconds, still hold their share). `git_commit` is resx's commit in the
    attempt that finished the stage; `commits` lists every commit its attempts ran at, when there were several."""
    entry = stages.get(name, {})
    status = entry.get("status")
    if status == "finished" and name != "report":
        say(f"stage {name}: finished earlier, skipped")
        return
    resumed = status in ("running", "stopped")  # "running" on arrival: the last attempt was killed outright
    earlier = float(entry.get("earlier_seconds", 0.0)) if resumed else 0.0
    attempts = int(entry.get("attempts", 1)) + 1 if resumed else 1
    killed = int(entry.get("killed_attempts", 0)) + (status == "running") if resumed else 0
    say(f"stage {name} ...")
    start = clock()
    commits = list(dict.fromkeys([*(entry.get("commits") or [entry.get("git_commit")] if resumed else []), commit]))
    commits = [c for c in commits if c]
    progress = {"attempts": attempts, "earlier_seconds": round(earlier, 1), "killed_attempts": killed,
                "git_commit": commit, **({"commits": commits} if len(commits) > 1 else {})}
    stages[name] = {"status": "running", **progress}
    write_json_atomic(stages_file, stages)
    try:
        fn()
    except BaseException:
        stages[name] = {"status": "stopped", **progress, "earlier_seconds": round(earlier + clock() - start, 1)}
        write_json_atomic(stages_file, stages)
        raise
    this = clock() - start
    stages[name] = {"status": "finished", "seconds": round(earlier + this, 1), "attempts": attempts,
                    "last_attempt_seconds": round(this, 1), "killed_attempts": killed, "git_commit": commit,
                    **({"commits": commits} if len(commits) > 1 else {})}
    write_json_atomic(stages_file, stages)
    over = f" over {attempts} attempts" if attempts > 1 else ""
    lost = f" (at least: {killed} attempt(s) killed before they could record their time)" if killed else ""
    say(f"stage {name}: done in {earlier + this:.0f} s{over}{lost}")


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

    path = profile_path(profile)
    sections = read_experiment(path)
    settings = _section(ReproduceSettings, dict(sections.get("reproduce", {})), f"{path} (reproduce)")
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
    from resx.data import normalise_data_spec
    from resx.output_guard import guard_folder

    # What decides this folder's content: the profile's sections and what the command line changed in them. A
    # rerun with these continues; with others (another --data, --epochs, --seed or profile) it is refused.
    fingerprint = {"profile": str(profile), "sections": sections, "data": normalise_data_spec(train.data),
                   "epochs": epochs, "seed": train.seed}
    with guard_folder(out, "reproduce run", fingerprint, can_overwrite=False):
        _reproduce_into(out, profile, path, sections, settings, train, dev, overrides, epochs, seed, progress, say)
    return out / "REPORT.md"


def _reproduce_into(out: Path, profile: str, path: Path, sections: dict[str, Any], settings: ReproduceSettings,
                    train: Any, dev: Any, overrides: dict[str, Any], epochs: int | None, seed: int | None,
                    progress: Callable | None, say: Callable[[str], None]) -> None:
    """Every stage of the profile into `out`, held by this process (see `reproduce`)."""
    stages = _load_stages(out)
    shown = (Path("experiments") / path.name if path.resolve().parent == PROFILES_DIR.resolve()
             else path)  # a packaged profile by its name in the repository (experiments/ links to it)
    from resx.provenance import environment, provenance

    from resx.engine.device import precision_choice

    block = provenance(dev, precision_choice(train.precision, dev)[0])  # what `auto` resolves to here
    data = train.data if uses_dataset(settings) else NO_DATASET
    invocation = {"time": block["time"], "git_commit": block["git_commit"], "resx_version": block["resx_version"],
                  "profile": profile, "data": data, "epochs_override": epochs, "seed_override": seed,
                  "host": block["host"], "device_name": block["device_name"]}
    earlier = _load_json(out / "reproduce.json")
    history = earlier.get("history")
    if not isinstance(history, list):  # written before reproduce.json kept a history: its top level was one
        history = [{k: earlier.get(k) for k in ("time", "git_commit", "resx_version", "profile", "data",
                                                "epochs_override", "host", "device_name")}] if earlier else []
    write_json_atomic(out / "reproduce.json", {"profile": profile, "file": str(shown), "data": data,
                                                "epochs_override": epochs, "seed_override": seed,
                                                "notes": settings.notes or None, **environment(dev),
                                                "provenance": block,
                                                "history": [*history, invocation]})  # one entry per invocation

    def stage(name: str, fn: Callable[[], Any]) -> None:
        run_stage(stages, name, fn, out / "stages.json", say, commit=block["git_commit"])

    context = StageContext(profile=path, train=train, device=str(dev), out=out, reproduce=settings,
                           deep_runs=deep_run_folders(settings, out, train.seed), overrides=overrides,
                           progress=progress, say=say)

    def report() -> None:
        from resx.plots import plot_results
        from resx.report import write_report

        plot_results(out, formats=("png",))
        write_report(out, meta={"profile": profile, "dataset": data, "device": str(dev), "stages": {
            k: v for k, v in stages.items() if isinstance(v, dict) and "seconds" in v}})

    for name, order, fn in planned_stages(context, sections, path, report):
        stage(name, fn)
