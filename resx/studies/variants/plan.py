"""The runs of a variants study: the base net once per shortcut variant and once per block variant, each for every
seed, in a fixed order (so that shards agree). The identity shortcut and the original block are the same net: one
run folder serves both rows of the summary. Every name is checked by the zoo's one parser (through TrainConfig's
validation), so a bad variant is refused in one line before anything trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resx.config import TrainConfig, replace
from resx.errors import ResxError
from resx.studies.grids import GridRun
from resx.studies.variants.declare import KINDS, ORIGINAL


OPTION = {"shortcut": "--shortcuts", "block": "--blocks", "cardinality": "--cardinalities"}  # for messages


@dataclass(frozen=True)
class Variant:
    kind: str  # shortcut | block
    name: str  # the zoo's --shortcut or --block value

    @property
    def is_original(self) -> bool:
        """The base net itself (identity shortcut, original block); a cardinality net never is (it is a ResNeXt)."""
        return self.kind != "cardinality" and ORIGINAL[self.kind] == self.name

    @property
    def folder_tag(self) -> str:
        """The part of a run folder's name that says which net it is: the unmodified net is `original` in both
        tables (one folder), the others their kind and name (shortcut-scale-0.5, block-full-preact, cardinality-4)."""
        return "original" if self.is_original else f"{self.kind}-{self.name}"


@dataclass(frozen=True)
class VariantRun:
    variant: Variant
    run: GridRun


def parse_variants(shortcuts: str | None, blocks: str | None, cardinalities: str | None = None) -> list[Variant]:
    """'identity,scale-0.5', 'original,full-preact' and '1,2,4' -> the variants in the order given, shortcuts first,
    then blocks, then cardinalities; duplicates dropped."""
    found: list[Variant] = []
    for kind, text in zip(KINDS, (shortcuts, blocks, cardinalities)):
        for name in (p.strip() for p in (text or "").split(",")):
            if kind == "cardinality" and name and not (name.isdigit() and int(name) >= 1):
                raise ResxError(f"--cardinalities {name}: a cardinality is a whole number of groups >= 1, e.g. 1,2,4,8")
            name = str(int(name)) if kind == "cardinality" and name else name
            if name and Variant(kind, name) not in found:
                found.append(Variant(kind, name))
    if not found:
        raise ResxError("no variants to run: give --shortcuts, --blocks and/or --cardinalities "
                        "(e.g. --shortcuts identity,scale-0.5)")
    return found


def variant_changes(variant: Variant, base: TrainConfig, budget_of: str | None = None) -> dict[str, Any]:
    """The config keys that make `variant` of the base net: the unmodified net keeps the base's own shortcut and
    block (the paper's "original": identity shortcuts, option A where the shape changes on CIFAR); a cardinality
    is the ResNeXt with that many groups whose parameter count is nearest `budget_of`'s (default: the base's)."""
    if variant.is_original:
        return {}
    if variant.kind == "cardinality":
        from resx.models.budget import resnext_for_budget

        match = resnext_for_budget(budget_of or base.model, int(variant.name))
        return {"model": match.name, "shortcut": None, "block": None, "depth": None, "width": None}
    return {variant.kind: variant.name}


def plan_variants(base: TrainConfig, variants: list[Variant], *, seeds: int, out: str | Path,
                  budget_of: str | None = None) -> list[VariantRun]:
    """Every (variant, seed) run; runs of the same net share a GridRun (and its folder)."""
    from resx.models import get_model_spec

    if seeds < 1:
        raise ResxError(f"seeds must be at least 1, got {seeds}")
    spec = get_model_spec(base.model)
    if not spec.residual:
        raise ResxError(f"--base {base.model} is a plain net: its blocks have no shortcut to vary; give a residual "
                        "net (resnet110, resnet20, mlp_res, ...)")
    depth = spec.depth or base.depth or 0
    out = Path(out)
    planned: list[VariantRun] = []
    for variant in variants:
        try:
            changes = variant_changes(variant, base, budget_of)
            for i in range(seeds):
                seed = base.seed + i
                config = replace(base, **changes, seed=seed)
                if variant.kind == "cardinality":  # its own net: named by it (resnext56_4x8d_w64-seed0)
                    label, own = f"{config.model}-seed{seed}", get_model_spec(config.model)
                    run = GridRun(config.model, own.family, True, own.depth or 0, seed, config, out / label)
                else:
                    label = f"{base.model}-{variant.folder_tag}-seed{seed}"
                    run = GridRun(base.model, spec.family, True, depth, seed, config, out / label)
                planned.append(VariantRun(variant, run))
        except ResxError as e:
            raise ResxError(f"{OPTION[variant.kind]} {variant.name}: {e}") from None
    return planned


def distinct_runs(planned: list[VariantRun]) -> list[GridRun]:
    """The run folders to train, each once, in the planned order."""
    seen: dict[Path, GridRun] = {}
    for p in planned:
        seen.setdefault(p.run.run_dir, p.run)
    return list(seen.values())
