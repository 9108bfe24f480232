"""The study plug-in: a study declared in one module shows up in discovery, `resx plot`, REPORT.md and reproduce."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from resx.errors import ResxError
from resx.plots import plot_results
from resx.plots.discover import find_studies, study_kinds
from resx.studies.registry import BUILT_IN, OutputFile, Study, get_study, looked_for, registered, registered_for_now
from resx.report import write_report


def toy_plot(folder, formats=("png", "pdf"), out=None) -> list[Path]:
    target = Path(out or folder)
    target.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(Path(folder) / "toy_scores.csv")
    written = []
    for fmt in formats:
        path = target / f"toy.{fmt}"
        path.write_text(f"{len(frame)} rows")
        written.append(path)
    return written


def toy_section(folder, results_dir, report_dir, several) -> list[str]:
    frame = pd.read_csv(Path(folder) / "toy_scores.csv")
    return ["## Toy study", "", f"The toy score is {frame['score'].sum():g}.", ""]


TOY = Study(name="toy", title="Toy study", outputs=(OutputFile("toy_*.csv", ("run", "score")),),
            plot=toy_plot, report=toy_section)


def test_every_built_in_study_is_registered_in_order_and_declares_its_csvs():
    names = [s.name for s in registered()]
    assert names[: len(BUILT_IN)] == list(BUILT_IN)
    for name in BUILT_IN:
        study = get_study(name)
        assert study.csv_outputs, name
        assert all(o.columns for o in study.csv_outputs if "*" not in o.name and o.name != "iteration_curves.csv"), name
        assert callable(study.plot) and callable(study.report)
        assert study.command is not None
    assert get_study("degradation").command_name == "compare-plain"
    for name in ("degradation", "lesion", "paths", "landscape", "signal"):
        assert get_study(name).stage is not None, name
    assert get_study("bench").stage is None  # a benchmark is no part of a reproduction


def test_unknown_study_is_a_one_line_error():
    with pytest.raises(ResxError, match="unknown study 'nope'; registered: degradation"):
        get_study("nope")


def test_a_study_registered_for_now_shows_up_in_discover_plot_and_report(tmp_path):
    folder = tmp_path / "toy-results"
    folder.mkdir()
    pd.DataFrame({"run": ["a", "b"], "score": [1.5, 2.0]}).to_csv(folder / "toy_scores.csv", index=False)
    with registered_for_now(TOY):
        assert "toy" in study_kinds({"toy_scores.csv"})
        assert find_studies(tmp_path)["toy"] == [folder]
        assert "toy_*.csv" in looked_for()
        written = plot_results(tmp_path, formats=("png",))
        assert written == [folder / "toy.png"]
        report = write_report(tmp_path).read_text()
        assert "## Toy study" in report and "The toy score is 3.5." in report
    assert "toy" not in [s.name for s in registered()]
    assert "toy" not in find_studies(tmp_path)


def test_a_folder_with_no_study_names_what_was_looked_for(tmp_path):
    (tmp_path / "notes.csv").write_text("a\n1\n")
    with pytest.raises(ResxError, match="looked for curves.csv, lesion_single.csv, .*bench.csv"):
        plot_results(tmp_path)


def test_a_common_file_name_alone_makes_no_study(tmp_path):
    """An unrelated summary.csv is not a degradation grid (only curves.csv marks one)."""
    (tmp_path / "summary.csv").write_text("a,b\n1,2\n")
    assert study_kinds({"summary.csv", "bench_rounds.csv", "iteration_curves.csv"}) == []
    with pytest.raises(ResxError, match="no resx CSVs found"):
        plot_results(tmp_path)


def test_a_study_stage_runs_in_reproduce_in_its_order(tmp_path):
    """reproduce runs every registered study's stage with its own section of the profile."""
    from dataclasses import dataclass

    from resx.reproduce import planned_stages

    @dataclass
    class ToySettings:
        weight: float = 1.0

    seen = []
    toy = Study(name="toy", title="Toy", outputs=(OutputFile("toy_*.csv", ("run", "score")),), plot=toy_plot,
                settings=ToySettings, stage=lambda ctx: seen.append(ctx.settings.weight), stage_order=35)

    from resx.config import TrainConfig
    from resx.studies.registry import StageContext
    from resx.reproduce import ReproduceSettings

    ctx = StageContext(profile=Path("profile.yaml"), train=TrainConfig(), device="cpu", out=tmp_path,
                       reproduce=ReproduceSettings(), deep_runs={})
    with registered_for_now(toy):
        plan = planned_stages(ctx, {"toy": {"weight": 2.5}}, Path("profile.yaml"), report=lambda: None)
        names = [name for name, _, _ in plan]
        assert names.index("lesion") < names.index("toy") < names.index("paths")
        assert names[0] == "degradation" and names[1] == "deep-nets" and names[-1] == "report"
        dict((n, fn) for n, _, fn in plan)["toy"]()
        assert seen == [2.5]
        with pytest.raises(ResxError, match=r"profile.yaml \(toy\): unknown key 'wieght'"):
            planned_stages(ctx, {"toy": {"wieght": 2.5}}, Path("profile.yaml"), report=lambda: None)


# --- a study added as a folder ---------------------------------------------------------------------------------------
TOY_FOLDER = {
    "__init__.py": '"""A toy study, added as a folder."""\n',
    "declare.py": '''
from dataclasses import dataclass

from resx.studies.registry import OutputFile, figure_files

SCORES = "folder_toy_scores.csv"
OUTPUTS = (OutputFile(SCORES, ("run", "score"), "one score per run"), *figure_files("folder_toy"))


@dataclass
class FolderToySettings:
    weight: float = 1.0
''',
    "draw.py": '''
from pathlib import Path

import pandas as pd

from resx.studies.folder_toy.declare import SCORES


def read_scores(folder):
    return pd.read_csv(Path(folder) / SCORES)


def plot_folder_toy(folder, formats=("png", "pdf"), out=None):
    target = Path(out or folder)
    target.mkdir(parents=True, exist_ok=True)
    rows = len(read_scores(folder))
    written = []
    for fmt in formats:
        (target / f"folder_toy.{fmt}").write_text(f"{rows} rows")
        written.append(target / f"folder_toy.{fmt}")
    return written
''',
    "compute.py": '''
from pathlib import Path

import pandas as pd

from resx.studies.folder_toy.declare import SCORES
from resx.studies.folder_toy.draw import plot_folder_toy


def run_folder_toy(out, weight=1.0):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"run": ["a", "b"], "score": [weight, 2 * weight]}).to_csv(out / SCORES, index=False)
    return plot_folder_toy(out, formats=("png",))
''',
    "report.py": '''
from resx.studies.folder_toy.draw import read_scores


def folder_toy_section(folder, results_dir, report_dir, several):
    return ["## Folder toy", "", f"The folder toy's total score is {read_scores(folder)['score'].sum():g}.", ""]
''',
    "command.py": '''
from pathlib import Path


def folder_toy_command():
    import typer

    def command(out: Path = typer.Option(Path("toy-out")), weight: float = 1.0) -> None:
        """Score two runs (a toy)."""
        from resx.studies.folder_toy.compute import run_folder_toy

        run_folder_toy(out, weight)
        print(f"toy results in {out}")

    return command
''',
    "study.py": '''
from resx.studies.folder_toy.declare import OUTPUTS, FolderToySettings
from resx.studies.registry import Study, lazy, register


def folder_toy_stage(ctx):
    from resx.studies.folder_toy.compute import run_folder_toy

    run_folder_toy(ctx.study_out("folder-toy"), ctx.settings.weight)


STUDY = register(Study(
    name="folder-toy",
    title="Folder toy",
    outputs=OUTPUTS,
    plot=lazy("resx.studies.folder_toy.draw", "plot_folder_toy"),
    report=lazy("resx.studies.folder_toy.report", "folder_toy_section"),
    command=lazy("resx.studies.folder_toy.command", "folder_toy_command"),
    settings=FolderToySettings,
    stage=folder_toy_stage,
    stage_order=35,
))
''',
}


@pytest.fixture
def toy_study_folder(tmp_path, monkeypatch):
    """A study written as a folder `folder_toy/` beside the built-in ones (resx.studies' search path is extended
    to a temporary folder, so that nothing is written into the package) and named in BUILT_IN: the two steps
    README's "Adding a study" asks for."""
    import sys

    import resx.studies
    from resx.studies import registry

    root = tmp_path / "more-studies"
    (root / "folder_toy").mkdir(parents=True)
    for name, text in TOY_FOLDER.items():
        (root / "folder_toy" / name).write_text(text.lstrip())
    monkeypatch.setattr(resx.studies, "__path__", [*resx.studies.__path__, str(root)])
    monkeypatch.setattr(registry, "BUILT_IN", (*registry.BUILT_IN, "folder_toy"))
    monkeypatch.setattr(registry, "_loaded", False)
    yield root
    registry.unregister("folder-toy")
    for module in [m for m in sys.modules if m.startswith("resx.studies.folder_toy")]:
        del sys.modules[module]


def test_a_study_added_as_a_folder_shows_up_everywhere(toy_study_folder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from resx.cli import add_study_commands, app
    from resx.reproduce import ReproduceSettings, planned_stages
    from resx.config import TrainConfig
    from resx.studies.registry import StageContext

    assert "folder-toy" in [s.name for s in registered()]
    # the CLI: its command, run end to end
    add_study_commands()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["folder-toy", "--out", "results/folder-toy", "--weight", "1.5"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results/folder-toy/folder_toy_scores.csv").is_file()
    # discovery, plot and report
    assert find_studies(tmp_path / "results")["folder-toy"] == [tmp_path / "results/folder-toy"]
    assert plot_results(tmp_path / "results", formats=("png",)) == [tmp_path / "results/folder-toy/folder_toy.png"]
    assert "The folder toy's total score is 4.5." in write_report(tmp_path / "results").read_text()
    # reproduce: its stage, in its order, with its own section of the profile
    ctx = StageContext(profile=Path("p.yaml"), train=TrainConfig(), device="cpu", out=tmp_path / "repro",
                       reproduce=ReproduceSettings(), deep_runs={})
    plan = planned_stages(ctx, {"folder-toy": {"weight": 2.0}}, Path("p.yaml"), report=lambda: None)
    names = [name for name, _, _ in plan]
    assert names.index("lesion") < names.index("folder-toy") < names.index("paths")
    dict((n, fn) for n, _, fn in plan)["folder-toy"]()
    assert "6" in write_report(tmp_path / "repro").read_text().split("total score is ")[1][:3]
