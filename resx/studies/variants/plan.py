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


@dataclass(frozen=True)
class Variant:
    kind: str  # shortcut | block
    name: str  # the zoo's --shortcut or --block value

    @property
    def is_original(self) -> bool:
        return ORIGINAL[self.kind] == self.name

    @property
    def folder_tag(self) -> str:
        """The part of a run folder's name that says which net it is: the unmodified net is `original` in both
        tables (one folder), the others their kind and name (shortcut-scale-0.5, block-full-preact)."""
        return "original" if self.is_original else f"{self.kind}-{self.name}"


@dataclass(frozen=True)
class VariantRun:
    variant: Variant
    run: GridRun


def parse_variants(shortcuts: str | None, blocks: str | None) -> list[Variant]:
    """'identity,scale-0.5' and 'original,full-preact' -> the variants in the order given, shortcuts first;
    duplicates dropped."""
    found: list[Variant] = []
    for kind, text in zip(KINDS, (shortcuts, blocks)):
        for name in (p.strip() for p in (text or "").split(",")):
            if name and Variant(kind, name) not in found:
                found.append(Variant(kind, name))
    if not found:
        raise ResxError("no variants to run: give --shortcuts and/or --blocks (e.g. --shortcuts identity,scale-0.5)")
    return found


def variant_changes(variant: Variant, base: TrainConfig) -> dict[str, Any]:
    """The config keys that make `variant` of the base net: the unmodified net keeps the base's own shortcut and
    block (the paper's "original": identity shortcuts, option A where the shape changes on CIFAR)."""
    if variant.is_original:
        return {}
    return {variant.kind: variant.name}


def plan_variants(base: TrainConfig, variants: list[Variant], *, seeds: int, out: str | Path) -> list[VariantRun]:
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
            changes = variant_changes(variant, base)
            for i in range(seeds):
                seed = base.seed + i
                config = replace(base, **changes, seed=seed)
                label = f"{base.model}-{variant.folder_tag}-seed{seed}"
                run = GridRun(base.model, spec.family, True, depth, seed, config, out / label)
                planned.append(VariantRun(variant, run))
        except ResxError as e:
            raise ResxError(f"--{variant.kind}s {variant.name}: {e}") from None
    return planned


def distinct_runs(planned: list[VariantRun]) -> list[GridRun]:
    """The run folders to train, each once, in the planned order."""
    seen: dict[Path, GridRun] = {}
    for p in planned:
        seen.setdefault(p.run.run_dir, p.run)
    return list(seen.values())
