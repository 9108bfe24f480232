"""`make reproduce` end to end on the tiny synthetic profile (CPU), rerun skips, GPU profiles refused."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resx.cli import app
from resx.errors import ResxError
from resx.reproduce import reproduce

runner = CliRunner()

EXPECTED = [
    "degradation/curves.csv", "degradation/summary.csv", "degradation/degradation_curves.png", "degradation/error_vs_depth.png",
    "lesion/lesion_single.csv", "lesion/lesion_delete_k.csv", "lesion/lesion_swap.csv", "lesion/lesion_single.png",
    "lesion/lesion_delete_k.png", "lesion/lesion_swap.png",
    "paths/path_distribution.csv", "paths/path_gradients.csv", "paths/path_total_gradient.csv", "paths/block_gradients.csv",
    "paths/paths.png", "paths/block_gradients.png",
    "landscape/landscape.csv", "landscape/landscape_info.json", "landscape/landscape_2d_contour.png",
    "signal/signal_layers.csv", "signal/block_jacobians.csv", "signal/linear/signal_layers.csv",
    "REPORT.md", "stages.json",
]


def test_tiny_profile_end_to_end_and_rerun():
    result = runner.invoke(app, ["reproduce", "--profile", "tiny", "--out", "results"])
    assert result.exit_code == 0, result.output
    missing = [f for f in EXPECTED if not Path("results", f).exists()]
    assert not missing, missing
    stages = json.loads(Path("results/stages.json").read_text())
    assert all(stages[s]["status"] == "finished" for s in ("degradation", "deep-nets", "lesion", "paths", "landscape",
                                                              "signal", "report"))
    report = Path("results/REPORT.md").read_text()
    assert "Veit" in report and "He et al" in report and "Li et al" in report and "Jacobian" in report
    stamp = Path("results/lesion/lesion_single.csv").stat().st_mtime_ns
    again = runner.invoke(app, ["reproduce", "--profile", "tiny", "--out", "results"])
    assert again.exit_code == 0, again.output
    # every record names the commit it ran at: one commit here, and the report says so
    from resx.provenance import git_commit
    from resx.report import record_commits

    recorded = json.loads(Path("results/reproduce.json").read_text())
    assert len(recorded["history"]) == 2 and recorded["provenance"]["git_commit"] == git_commit()
    if git_commit() is not None:
        commits = record_commits(Path("results"))
        assert list(commits) == [git_commit()]
        named = {p.name for p in commits[git_commit()]}
        assert {"reproduce.json", "stages.json", "run_info.json", "lesion_info.json", "paths_info.json",
                "landscape_info.json", "signal_info.json", "grid_info.json"} <= named, named
        assert f"names one resx commit: `{git_commit()}`" in Path("results/REPORT.md").read_text()
    assert again.output.count("skipped") >= 6  # every stage but the report, which is redrawn
    assert Path("results/lesion/lesion_single.csv").stat().st_mtime_ns == stamp
    # other settings into the same folder: refused, nothing rewritten (not reproduce.json, not REPORT.md)
    before = {p: p.read_bytes() for p in (Path("results/reproduce.json"), Path("results/REPORT.md"))}
    other = runner.invoke(app, ["reproduce", "--profile", "tiny", "--out", "results", "--seed", "5"])
    assert other.exit_code == 1 and "Traceback" not in other.output
    assert "results holds a reproduce run made with other settings (seed: 0 -> 5" in " ".join(other.output.split())
    assert {p: p.read_bytes() for p in before} == before


def test_gpu_profiles_are_refused_on_the_cpu():
    with pytest.raises(ResxError, match="needs a CUDA GPU.*make demo"):
        reproduce("paper", device="cpu")
    result = runner.invoke(app, ["reproduce", "--profile", "quick", "--device", "cpu"])
    assert result.exit_code != 0 and "make demo" in result.output and "Traceback" not in result.output


def test_unknown_profile():
    result = runner.invoke(app, ["reproduce", "--profile", "huge"])
    assert result.exit_code != 0 and "unknown profile" in result.output


def test_a_stage_is_timed_over_all_its_attempts(tmp_path):
    """A stage stopped and resumed reports the sum of its attempts, and says when an attempt was killed untimed."""
    from resx.reproduce import run_stage

    ticks = iter([0.0, 30.0, 100.0, 110.0, 200.0, 205.0])  # start/end of three attempts
    clock = lambda: next(ticks)  # noqa: E731
    stages_file = tmp_path / "stages.json"
    stages: dict = {}

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(stages, "degradation", interrupted, stages_file, say=lambda _: None, clock=clock)
    assert json.loads(stages_file.read_text())["degradation"] == {
        "status": "stopped", "attempts": 1, "earlier_seconds": 30.0, "killed_attempts": 0, "git_commit": None}
    said: list[str] = []
    run_stage(stages, "degradation", lambda: None, stages_file, say=said.append, clock=clock)
    assert stages["degradation"] == {"status": "finished", "seconds": 40.0, "attempts": 2,
                                     "last_attempt_seconds": 10.0, "killed_attempts": 0, "git_commit": None}
    assert "done in 40 s over 2 attempts" in said[-1]
    run_stage(stages, "degradation", lambda: None, stages_file, say=said.append, clock=clock)
    assert "finished earlier, skipped" in said[-1]

    # a stage found "running" was killed outright: its time is lost, and the total says it is a lower bound
    stages = {"lesion": {"status": "running"}}
    run_stage(stages, "lesion", lambda: None, stages_file, say=said.append, clock=clock)
    assert stages["lesion"]["seconds"] == 5.0 and stages["lesion"]["killed_attempts"] == 1
    assert stages["lesion"]["attempts"] == 2 and "at least" in said[-1]

    from resx.report import write_report

    write_report(tmp_path)
    assert "Total: at least 5" in (tmp_path / "REPORT.md").read_text()

    # a stage stopped and not yet resumed is in the table with its time so far, and the total is a lower bound
    stages_file.write_text(json.dumps({"degradation": {"status": "stopped", "attempts": 1, "earlier_seconds": 30.0},
                                       "lesion": {"status": "finished", "seconds": 5.0}}))
    write_report(tmp_path)
    text = (tmp_path / "REPORT.md").read_text()
    assert "| degradation | 30.0 s |" in text and "Total: at least 35" in text and "not finished: degradation" in text


def test_stages_record_the_commits_of_their_attempts(tmp_path):
    from resx.reproduce import run_stage

    stages: dict = {}
    with pytest.raises(KeyboardInterrupt):
        run_stage(stages, "lesion", lambda: (_ for _ in ()).throw(KeyboardInterrupt()), tmp_path / "stages.json",
                  say=lambda _: None, commit="a" * 40)
    run_stage(stages, "lesion", lambda: None, tmp_path / "stages.json", say=lambda _: None, commit="b" * 40)
    assert stages["lesion"]["git_commit"] == "b" * 40 and stages["lesion"]["commits"] == ["a" * 40, "b" * 40]

    from resx.report import write_report

    text = write_report(tmp_path).read_text()
    assert "name 2 resx commits" in text


def test_notes_written_by_hand_are_quoted_as_notes(tmp_path):
    from resx.report import write_report

    (tmp_path / "NOTES.md").write_text("The second seed was added after the first run.\nSee issue notes.\n")
    text = write_report(tmp_path).read_text()
    assert "## Notes (written by hand, not generated by resx)" in text
    assert "> The second seed was added after the first run.\n> See issue notes." in text


def test_a_profile_may_name_the_studies_it_runs(tmp_path):
    from resx.config import TrainConfig
    from resx.reproduce import ReproduceSettings, planned_stages
    from resx.studies.registry import StageContext

    ctx = StageContext(profile=Path("p.yaml"), train=TrainConfig(), device="cpu", out=tmp_path,
                       reproduce=ReproduceSettings(studies=["signal"]), deep_runs={})
    names = [name for name, _, _ in planned_stages(ctx, {}, Path("p.yaml"), report=lambda: None)]
    assert names == ["signal", "report"]
    ctx.reproduce = ReproduceSettings(studies=["nope"])
    with pytest.raises(ResxError, match=r"p.yaml \(reproduce\): studies: unknown study 'nope'; allowed: degradation"):
        planned_stages(ctx, {}, Path("p.yaml"), report=lambda: None)


def test_experiment_files_ship_inside_the_package(tmp_path):
    """The profiles and experiment files are package data (the repository's experiments/ links to them), so an
    installed resx finds them from any folder, by name or by the README's experiments/ path."""
    from resx.config import find_experiment, packaged_experiments
    from resx.reproduce import PROFILES_DIR, profile_path

    assert PROFILES_DIR == packaged_experiments() and PROFILES_DIR.parent.name == "resx"
    assert (PROFILES_DIR / "reproduce-tiny.yaml").is_file()
    assert profile_path("tiny") == PROFILES_DIR / "reproduce-tiny.yaml"
    for asked in ("degradation-paper", "degradation-paper.yaml", "experiments/degradation-paper.yaml"):
        assert find_experiment(asked) == PROFILES_DIR / "degradation-paper.yaml"  # the cwd is tmp_path
    mine = tmp_path / "experiments" / "degradation-paper.yaml"
    mine.parent.mkdir()
    mine.write_text("train: {epochs: 1}\n")
    assert find_experiment("experiments/degradation-paper.yaml") == Path("experiments/degradation-paper.yaml")
    with pytest.raises(ResxError, match="config file nope.yaml not found; packaged experiment files: degradation-mlp"):
        find_experiment("nope.yaml")
    repo_link = Path(__file__).resolve().parents[1] / "experiments"
    if repo_link.exists():  # in the repository: one source, experiments/ is a link to the packaged folder
        assert repo_link.resolve() == PROFILES_DIR.resolve()


def test_a_study_of_its_own_small_nets_runs_only_where_a_profile_asks_for_it(tmp_path):
    from dataclasses import dataclass

    from resx.config import TrainConfig
    from resx.reproduce import ReproduceSettings, planned_stages
    from resx.studies.registry import OutputFile, StageContext, Study, registered_for_now

    @dataclass
    class OwnSettings:
        n: int = 1

    own = Study(name="own-nets", title="Own", outputs=(OutputFile("own_*.csv", ("a",)),), plot=lambda *a, **k: [],
                settings=OwnSettings, stage=lambda ctx: None, stage_order=60, in_every_profile=False)
    ctx = StageContext(profile=Path("p.yaml"), train=TrainConfig(), device="cpu", out=tmp_path,
                       reproduce=ReproduceSettings(), deep_runs={})
    with registered_for_now(own):
        def names(sections):
            return [n for n, _, _ in planned_stages(ctx, sections, Path("p.yaml"), report=lambda: None)]

        assert "own-nets" not in names({}) and "lesion" in names({})
        assert "own-nets" in names({"own-nets": {"n": 2}})
        ctx.reproduce = ReproduceSettings(studies=["own-nets"])
        assert names({}) == ["own-nets", "report"]


@pytest.mark.parametrize("profile", ["tiny", "cpu", "cpu-cifar", "quick", "paper"])
def test_the_trained_net_profiles_run_the_studies_of_trained_nets_only(profile, tmp_path):
    """A study of its own nets (approximate, depth, variants) never slips into the profiles of trained nets
    unless the profile has its section (the paper profile runs the variants at the paper's scale)."""
    from resx.config import read_experiment, resolve_config
    from resx.reproduce import ReproduceSettings, planned_stages, profile_path
    from resx.studies.registry import StageContext

    path = profile_path(profile)
    sections = read_experiment(path)
    ctx = StageContext(profile=path, train=resolve_config(path, {}), device="cpu", out=tmp_path,
                       reproduce=ReproduceSettings(**sections.get("reproduce", {})), deep_runs={})
    names = [n for n, _, _ in planned_stages(ctx, sections, path, report=lambda: None)]
    own = ["variants"] if profile == "paper" else []  # the paper profile has its own variants section
    assert names == ["degradation", "deep-nets", "lesion", "paths", "landscape", "signal", *own, "report"]


@pytest.mark.parametrize("profile, uses", [("cpu-approximation", False), ("cpu-depth", False), ("cpu", True),
                                           ("cpu-variants", True), ("tiny", True)])
def test_a_profile_of_studies_that_make_their_own_data_records_no_dataset(profile, uses):
    from resx.config import read_experiment
    from resx.reproduce import ReproduceSettings, profile_path, uses_dataset

    settings = ReproduceSettings(**read_experiment(profile_path(profile)).get("reproduce", {}))
    assert uses_dataset(settings) is uses
