"""The study registry: what every study declares so that the rest of resx can find, draw, report and reproduce it.

A study is one folder, resx/studies/<name>/, whose modules are its layers, each importing only those below it:

    declare.py   its files (names, CSV columns), its section of a reproduce profile, its constants (no torch,
                 no pandas: everything may import it)
    draw.py      its figures and CSV readers, from the CSVs alone (pandas and matplotlib, never torch)
    compute      what it measures (torch): one or more modules named by their job
    report.py    its section of REPORT.md, from the CSVs (through draw.py's readers)
    command.py   its `resx <command>` (typer and rich, imported when the CLI builds the command)
    study.py     `STUDY = register(Study(...))`: the declaration above wired into the registry, and its reproduce
                 stage. It imports the layers below inside functions only, so that loading the registry imports
                 no torch, pandas or matplotlib (`resx --help`, `resx plot` and `resx report` start fast).

A `Study` names the files the study writes (a folder holding any of its marking CSVs holds that study: this is how
`resx plot` and `resx report` find it), its plot function, its REPORT.md section, its command, its section of a
reproduce profile and its stage. `resx.plots.discover`, `resx.report.write_report`, `resx.reproduce.reproduce` and
the CLI all iterate over `registered()`. Adding a study means adding its folder and its name to BUILT_IN; a
notebook or a test can also register one for a while with `registered_for_now`.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resx.errors import ResxError

# the studies that ship with resx, in the order their figures, report sections and stages come
BUILT_IN = ("degradation", "lesion", "paths", "landscape", "signal", "bench", "variants", "approximate", "depth")


@dataclass(frozen=True)
class OutputFile:
    """A file a study writes. `name` may be a glob pattern (lesion_*.csv); `columns` are a CSV's columns."""

    name: str
    columns: tuple[str, ...] = ()
    about: str = ""
    # whether a folder holding this file holds the study (its main CSVs; not a file as common as summary.csv, so
    # that an unrelated summary.csv next to a study's files is not taken for a degradation grid)
    marks_study: bool = True

    @property
    def is_csv(self) -> bool:
        return self.name.endswith(".csv")

    def matches(self, file_name: str) -> bool:
        return fnmatch.fnmatchcase(file_name, self.name)


# What `resx plot --format` may write (resx.plots.style.check_formats): a study's figures come in any of them.
FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_files(*stems: str) -> tuple[OutputFile, ...]:
    """The files of figures `stems` (names or patterns such as lesion_*) in every format `resx plot` draws."""
    return tuple(OutputFile(f"{stem}.{fmt}") for stem in stems for fmt in FIGURE_FORMATS)


@dataclass
class StageContext:
    """What a reproduce stage gets: the profile's resolved training config, where to write, and the runs that the
    earlier stages trained. `settings` is the study's own section of the profile, parsed into `Study.settings`."""

    profile: Path
    train: Any  # resx.config.TrainConfig (the profile's `train:` section with the command line's overrides)
    device: str
    out: Path  # the reproduce folder; a study writes into out/<its name>
    reproduce: Any  # resx.reproduce.ReproduceSettings
    deep_runs: dict[str, Path]  # {label: run folder} of the deep nets (Veit et al.'s ResNet-110 or the grid's)
    settings: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: Callable | None = None
    say: Callable[[str], None] = print

    def grid_run(self, model: str) -> Path:
        """The run folder of `model` in the degradation grid (first seed)."""
        return self.out / "degradation" / f"{model}-seed{self.train.seed}"

    def study_out(self, name: str) -> Path:
        return self.out / name


@dataclass(frozen=True)
class Study:
    name: str  # also its folder in a reproduce run and its section in a profile
    title: str  # the report's heading, citing the paper ("Lesion study (Veit et al. 2016, §4)")
    outputs: tuple[OutputFile, ...]
    plot: Callable[..., list[Path]]
    report: Callable[..., list[str]] | None = None
    command: Callable[[], Callable[..., Any]] | None = None  # () -> the Typer command function
    command_name: str | None = None  # default: `name`
    settings: type | None = None
    stage: Callable[[StageContext], None] | None = None
    stage_order: int = 50  # degradation 10, deep-nets (reproduce's own) 20, the analyses after, report last
    # whether a profile runs this study's stage without naming it: the studies of the trained nets do; a study of
    # its own small nets (approximate, depth) runs only in a profile that has its section or names it in
    # `reproduce: studies:`, so that the CIFAR profiles do not grow with every new study
    in_every_profile: bool = True
    # whether it trains or evaluates on the profile's dataset (approximate and depth make their own data): a profile
    # of such studies only records no dataset
    uses_dataset: bool = True

    @property
    def csv_outputs(self) -> tuple[OutputFile, ...]:
        return tuple(o for o in self.outputs if o.is_csv)

    def found_in(self, file_names: set[str]) -> bool:
        """Whether a folder holding `file_names` holds this study (any of the CSVs that mark it)."""
        return any(o.matches(n) for o in self.csv_outputs if o.marks_study for n in file_names)

    def files_in(self, folder: Path) -> list[Path]:
        """Every file of this study in `folder` (CSVs, info files, figures), e.g. to replace an earlier study."""
        return sorted({p for o in self.outputs for p in folder.glob(o.name) if p.is_file()})

    def output(self, name: str) -> OutputFile:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(f"{self.name} writes no {name}")


def lazy(module: str, name: str) -> Callable[..., Any]:
    """`module.name`, imported on the first call: study.py names its draw, report and command functions this way,
    so that loading the registry imports no torch, pandas or matplotlib."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported when first called."
    return call


_registry: dict[str, Study] = {}
_loaded = False


def register(study: Study) -> Study:
    """Add (or replace) a study; returns it, so a module can end with `STUDY = register(Study(...))`."""
    if not study.name or not study.name.replace("-", "").isalnum():
        raise ValueError(f"a study's name must be a word (letters, digits, '-'), not {study.name!r}")
    _registry[study.name] = study
    return study


def unregister(name: str) -> None:
    _registry.pop(name, None)


@contextmanager
def registered_for_now(study: Study) -> Iterator[Study]:
    """Register `study` inside a `with` block only (a test's or a notebook's own study)."""
    _load_built_in()
    previous = _registry.get(study.name)
    register(study)
    try:
        yield study
    finally:
        if previous is None:
            unregister(study.name)
        else:
            register(previous)


def _load_built_in() -> None:
    global _loaded
    if not _loaded:
        for name in BUILT_IN:  # each module registers itself; a failed import is raised, and retried next time
            importlib.import_module(f"resx.studies.{name}.study")
        _loaded = True


def registered() -> list[Study]:
    """Every registered study: the built-in ones in BUILT_IN's order, then the others in registration order."""
    _load_built_in()
    order = {name: i for i, name in enumerate(BUILT_IN)}
    return sorted(_registry.values(), key=lambda s: order.get(s.name, len(order)))


def get_study(name: str) -> Study:
    _load_built_in()
    try:
        return _registry[name]
    except KeyError:
        raise ResxError(f"unknown study {name!r}; registered: {', '.join(s.name for s in registered())}") from None


def looked_for() -> str:
    """The CSV names that make a folder a study's (for 'no resx CSVs found' messages)."""
    return ", ".join(dict.fromkeys(o.name for s in registered() for o in s.csv_outputs if o.marks_study))
