"""The degradation grid (He et al. 2015, §4.2 and Fig. 6): which runs it holds, which of them one process trains,
and training them.

`plan_grid` lists the runs (plain and residual twin for every depth, every seed, plus residual-only depths such
as ResNet-110, which the paper shows without its plain twin); the machinery every grid of runs shares (shards,
`run_grid`: training them through the engine, several at once, skipping finished runs and resuming interrupted
ones) is resx/studies/grids.py. tables.py merges the run folders into the grid's CSVs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resx.config import TrainConfig, replace, train_config_from
from resx.errors import ResxError
from resx.studies.degradation.declare import FAMILIES
from resx.studies.grids import GridRun


def check_depth(family: str, depth: int) -> None:
    if family == "mlp":
        if depth < 4 or depth % 2:
            raise ResxError(f"depth {depth} is not valid for the mlp family; allowed: even depths >= 4 (2 * blocks + 2)")
    elif depth < 8 or (depth - 2) % 6:
        raise ResxError(f"depth {depth} is not 6n+2 for the {family} family; allowed: 8, 14, 20, 32, 44, 56, 110, ...")


def plan_grid(
    base: TrainConfig,
    *,
    depths: list[int],
    residual_depths: list[int] = (),
    seeds: int = 1,
    family: str = "cifar",
    out: str | Path = "results/degradation",
    per_model: dict[str, dict[str, Any]] | None = None,
) -> list[GridRun]:
    """Every run of the grid, in a fixed order (so shards agree). Seeds are base.seed, base.seed + 1, ..."""
    if family not in FAMILIES:
        raise ResxError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    if seeds < 1:
        raise ResxError(f"seeds must be at least 1, got {seeds}")
    depths = list(dict.fromkeys(depths))  # --depths 8,8 is one depth
    residual_depths = list(dict.fromkeys(residual_depths))
    if not depths and not residual_depths:
        raise ResxError("the grid is empty: give at least one depth (--depths 20,56)")
    for d in [*depths, *residual_depths]:
        check_depth(family, d)
    per_model = {name: train_config_from(dict(changes or {}), f"per_model {name}")
                 for name, changes in (per_model or {}).items()}
    plain_name, residual_name = FAMILIES[family]
    runs: list[GridRun] = []
    entries = [(d, False) for d in depths] + [(d, True) for d in depths] + [
        (d, True) for d in residual_depths if d not in depths
    ]
    out = Path(out)
    for depth, residual in sorted(entries, key=lambda e: (e[0], e[1])):
        name = (residual_name if residual else plain_name).format(d=depth)
        label = f"{name}-{depth}" if family == "mlp" else name
        for i in range(seeds):
            seed = base.seed + i
            changes: dict[str, Any] = dict(model=name, seed=seed)
            if family == "mlp":
                changes["depth"] = depth
            if not residual:  # a plain net has no shortcut to choose
                changes["shortcut"] = None
            if not residual:
                changes["zero_init_residual"] = None  # a plain twin has no residual branch to start at zero
            if residual and family in ("cifar", "preact") and depth >= 110 and base.warmup_lr is None:
                # He et al. 2015 §4.2: for ResNet-110, lr 0.1 "is slightly too large to start converging", so
                # 0.01 until the training error is below 80%, then back to 0.1. (A per_model entry overrides it.)
                changes["warmup_lr"] = 0.01
            overrides = per_model.get(label, per_model.get(name, {}))
            config = replace(base, **{**changes, **overrides})
            runs.append(GridRun(name, family, residual, depth, seed, config, out / f"{label}-seed{seed}"))
    names = sorted({r.model for r in runs} | {r.run_dir.name.rsplit("-seed", 1)[0] for r in runs})
    unknown = [k for k in per_model if k not in names]
    if unknown:  # a typo would silently drop the change (e.g. a warm-up)
        raise ResxError(f"per_model names {unknown[0]!r}, which is no model of this grid; its models: {', '.join(names)}")
    return runs

