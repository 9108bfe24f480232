"""Issue #5: `resx compare-plain` on tiny synthetic data (two depths, one epoch), shards, reruns, bad input;
and issue #9: a grid killed between runs resumes to the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from resx.cli import app
from resx.config import TrainConfig
from resx.errors import ResxError
from resx.studies import grids
from resx.studies.degradation import grid
from resx.studies.degradation.declare import CURVE_COLUMNS, SUMMARY_COLUMNS

from conftest import TINY_DATA

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
GRID = ["compare-plain", "--depths", "8,14", "--seeds", "1", "--data", TINY_DATA, "--epochs", "1", "--batch-size", "32"]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def test_grid_writes_tables_and_figures():
    result = invoke(*GRID, "--out", "deg")
    assert result.exit_code == 0, result.output
    curves = pd.read_csv("deg/curves.csv")
    summary = pd.read_csv("deg/summary.csv")
    assert set(CURVE_COLUMNS) <= set(curves.columns)
    assert set(SUMMARY_COLUMNS) <= set(summary.columns)
    assert sorted(summary["model"]) == ["plain14", "plain8", "resnet14", "resnet8"]
    # plain and residual twins have the same parameters (option A shortcuts)
    params = summary.set_index("model")["params"]
    assert params["plain8"] == params["resnet8"] and params["plain14"] == params["resnet14"]
    for figure in ("degradation_curves", "error_vs_depth"):
        for ext in ("png", "pdf"):
            assert Path(f"deg/{figure}.{ext}").stat().st_size > 1000
    assert "Degradation" in result.output  # the verdict is printed


def test_rerun_skips_finished_runs():
    assert invoke(*GRID, "--out", "deg").exit_code == 0
    stamps = {p: p.stat().st_mtime_ns for p in Path("deg").glob("*/checkpoint.pt")}
    result = invoke(*GRID, "--out", "deg")
    assert result.exit_code == 0
    assert "skip" in result.output
    assert {p: p.stat().st_mtime_ns for p in Path("deg").glob("*/checkpoint.pt")} == stamps
    # grid_info.json: the top level is the latest invocation, `history` holds both
    info = json.loads(Path("deg/grid_info.json").read_text())
    assert info["trained"] == 0 and info["runs"] == 4 and "provenance" in info
    first, second = info["history"]
    assert (first["trained"], second["trained"]) == (4, 0) and first["runs"] == second["runs"] == 4
    assert first["settings"]["depths"] == [8, 14] and first["settings"]["seeds"] == 1 and first["settings"]["shard"] is None
    for entry in (first, second):
        assert entry["started"] <= entry["ended"] and entry["seconds"] >= 0
        assert entry["provenance"]["precision"] in ("fp32", "bf16")  # as the runs resolved `auto`
        assert entry["provenance"]["device"] == "cpu" and entry["provenance"]["resx_version"]
    assert second["provenance"] == info["provenance"]


def test_changed_settings_are_not_mixed_with_old_runs():
    assert invoke(*GRID, "--out", "deg").exit_code == 0
    result = invoke(*GRID[:-4], "--epochs", "2", "--batch-size", "32", "--out", "deg")
    assert result.exit_code != 0 and "recipe.epochs: 1 -> 2" in result.output


def test_a_grid_of_another_family_or_dataset_is_refused_not_merged():
    """One folder holds one grid: an MLP grid into a folder holding a CIFAR-net grid is refused, nothing written."""
    assert invoke(*GRID, "--out", "deg").exit_code == 0
    before = sorted(p.name for p in Path("deg").iterdir())
    summary = Path("deg/summary.csv").read_bytes()
    result = invoke("compare-plain", "--family", "mlp", "--depths", "4", "--seeds", "1", "--data", TINY_DATA,
                    "--epochs", "1", "--batch-size", "32", "--out", "deg")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "deg holds a degradation grid made with other settings (family: \"cifar\" -> \"mlp\"" in result.output
    assert sorted(p.name for p in Path("deg").iterdir()) == before and Path("deg/summary.csv").read_bytes() == summary
    other_data = invoke(*GRID[:-6], "--data", "synthetic:size=8,train=128,test=64", "--epochs", "1",
                        "--batch-size", "32", "--out", "deg")
    assert other_data.exit_code == 1 and "recipe.data:" in other_data.output


def test_shards_together_equal_the_whole_grid():
    whole = grid.plan_grid(TrainConfig(data=TINY_DATA, epochs=1), depths=[8, 14], residual_depths=[20], seeds=2)
    parts = grids.shard(whole, 1, 3) + grids.shard(whole, 2, 3) + grids.shard(whole, 3, 3)
    assert sorted(r.label for r in parts) == sorted(r.label for r in whole)
    assert len({r.label for r in parts}) == len(whole)
    # and through the CLI: two shards into one folder give the same tables as the whole grid
    assert invoke(*GRID, "--out", "sharded", "--shard", "1/2").exit_code == 0
    assert invoke(*GRID, "--out", "sharded", "--shard", "2/2").exit_code == 0
    assert invoke(*GRID, "--out", "whole").exit_code == 0
    a = pd.read_csv("sharded/summary.csv").drop(columns=[])
    b = pd.read_csv("whole/summary.csv")
    pd.testing.assert_frame_equal(a, b)


def test_residual_only_depths_have_no_plain_twin():
    runs = grid.plan_grid(TrainConfig(data=TINY_DATA, epochs=1), depths=[8], residual_depths=[14], seeds=1)
    assert [r.model for r in runs] == ["plain8", "resnet8", "resnet14"]


def test_mlp_family():
    result = invoke("compare-plain", "--family", "mlp", "--depths", "4,6", "--seeds", "1", "--data", TINY_DATA,
                    "--epochs", "1", "--batch-size", "32", "--out", "mlp")
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_csv("mlp/summary.csv")["model"]) == ["mlp_plain-4", "mlp_plain-6", "mlp_res-4", "mlp_res-6"]


@pytest.mark.parametrize("args, match", [
    (["--depths", "8,15"], "not 6n\\+2"),
    (["--depths", "8", "--family", "vgg"], "unknown family"),
    (["--depths", ""], "grid is empty"),
    (["--depths", "8,x"], "integers"),
    (["--depths", "14..8"], "bad --depths range '14..8': the end is below the start"),
    (["--depths", "8", "--shard", "3/2"], "between 1 and N"),
    (["--depths", "8", "--shard", "one"], "I/N"),
    (["--depths", "8", "--seeds", "0"], "seeds"),
    (["--depths", "8", "--concurrency", "0"], "concurrency"),
    (["--depths", "8", "--family", "mlp", "--data", TINY_DATA, "--epochs", "1"], None),  # mlp: 8 is a valid depth
])
def test_bad_grid_options(args, match):
    result = invoke("compare-plain", "--data", TINY_DATA, "--epochs", "1", *args, "--out", "bad")
    if match is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code != 0
    lines = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and __import__("re").search(match, lines[0]), result.output


def test_integer_lists_take_numbers_ranges_and_comma_lists():
    from resx.cli_common import int_list
    from resx.errors import ResxError

    assert int_list("20, 32,44", "--depths") == [20, 32, 44] and int_list("8..10,8", "--depths") == [8, 9, 10, 8]
    assert int_list("", "--depths") == [] and int_list(None, "--depths") is None
    with pytest.raises(ResxError, match=r"bad --depths '8,x'; give integers"):
        int_list("8,x", "--depths")


KILL_DATA = "synthetic:size=8,train=1024,test=64"  # 32 steps of 32 per epoch
KILL_GRID = ["compare-plain", "--depths", "8", "--seeds", "1", "--data", KILL_DATA, "--epochs", "3", "--batch-size", "32"]


def start_grid(tmp_path: Path, out: str, pause: str) -> subprocess.Popen:
    """The grid in a real process (its own process group, workers included) whose run `pause` ("RUN:ITERATION")
    stops after that step and waits to be signalled (the RESX_PAUSE_AT test hook): the test decides where the
    signal lands, whatever the machine's speed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RESX_NO_DOWNLOAD": "1", "RESX_DATA": str(tmp_path / "data"),
           "OMP_NUM_THREADS": "1", "COLUMNS": "200", "RESX_PAUSE_AT": pause,
           "RESX_PAUSE_MARKER": str(tmp_path / "paused")}
    return subprocess.Popen([sys.executable, "-m", "resx", *KILL_GRID, "--out", out], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until_paused(process: subprocess.Popen, marker: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout  # guards against a hung process only
    while not marker.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "grid never reached its pause"
        time.sleep(0.05)


def test_grid_killed_mid_run_resumes(tmp_path):
    """SIGKILL to the grid and its workers (a machine that dies) while resnet8 is in its second epoch: rerunning
    the same command finishes the grid with the numbers of an uninterrupted one."""
    process = start_grid(tmp_path, "killed", "resnet8-seed0:40")
    try:
        wait_until_paused(process, tmp_path / "paused")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert len(pd.read_csv("killed/resnet8-seed0/metrics.csv")) == 1
    assert invoke(*KILL_GRID, "--out", "killed").exit_code == 0
    assert invoke(*KILL_GRID, "--out", "straight").exit_code == 0
    cols = ["model", "epoch", "train_loss", "train_error", "test_error"]
    pd.testing.assert_frame_equal(pd.read_csv("killed/curves.csv")[cols], pd.read_csv("straight/curves.csv")[cols])


def test_grid_stopped_by_sigterm_says_how_to_continue(tmp_path):
    """SIGTERM is how a SLURM job ends at its time limit: every running run checkpoints, the grid exits non-zero
    with one line saying to run the same command again, and doing so gives an uninterrupted grid's numbers."""
    process = start_grid(tmp_path, "stopped", "resnet8-seed0:40")
    try:
        wait_until_paused(process, tmp_path / "paused")
        process.send_signal(signal.SIGTERM)  # the parent only, as a scheduler does; it tells its workers
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "run the same command again" in lines[0], err
    assert "--resume" not in lines[0]  # compare-plain has no --resume: rerunning is how it continues
    assert process.returncode == 143  # the shell's code for SIGTERM, as for a single run
    info = json.loads(Path("stopped/resnet8-seed0/run_info.json").read_text())
    assert info["status"] == "interrupted" and info["iterations_done"] == 40
    assert invoke(*KILL_GRID, "--out", "stopped").exit_code == 0
    assert invoke(*KILL_GRID, "--out", "straight").exit_code == 0
    cols = ["model", "epoch", "train_loss", "train_error", "test_error"]
    pd.testing.assert_frame_equal(pd.read_csv("stopped/curves.csv")[cols], pd.read_csv("straight/curves.csv")[cols])


def test_workers_of_a_killed_grid_checkpoint_and_stop_by_themselves(tmp_path):
    """SIGKILL to the grid's parent only (an out-of-memory kill): its CPU workers notice, checkpoint their runs and
    stop, instead of training on unseen and holding their run folders' locks; rerunning finishes the grid."""
    process = start_grid(tmp_path, "orphaned", "resnet8-seed0:40")
    try:
        wait_until_paused(process, tmp_path / "paused")
        process.kill()  # the parent alone: its workers are orphaned
        process.wait()
        info_file = Path("orphaned/resnet8-seed0/run_info.json")
        deadline = time.monotonic() + 300  # guards against a worker that never stops only
        while json.loads(info_file.read_text()).get("status") != "interrupted":
            assert time.monotonic() < deadline, "the orphaned worker never stopped"
            time.sleep(0.1)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert json.loads(info_file.read_text())["iterations_done"] == 40
    assert invoke(*KILL_GRID, "--out", "orphaned").exit_code == 0  # no lock left held
    assert invoke(*KILL_GRID, "--out", "straight").exit_code == 0
    cols = ["model", "epoch", "train_loss", "train_error", "test_error"]
    pd.testing.assert_frame_equal(pd.read_csv("orphaned/curves.csv")[cols], pd.read_csv("straight/curves.csv")[cols])


def test_demo_falls_back_to_synthetic_data_and_says_so(monkeypatch):
    """`make demo` without Fashion-MNIST: the built-in synthetic task, said plainly."""
    import resx.data
    from resx.errors import ResxError
    from resx.studies import demo

    def missing(*args, **kwargs):
        raise ResxError("fashion-mnist not found")

    monkeypatch.setattr(resx.data, "load_dataset", missing)
    said = []
    assert demo.choose_data(None, None, said.append) == demo.SYNTHETIC
    assert any("SYNTHETIC" in line for line in said)
    assert demo.choose_data("mnist", None, said.append) == "mnist"  # an explicit --data is used as given


# --- what the summary calls "final" ----------------------------------------------------------------------------


def test_final_training_error_covers_the_last_epochs_worth_of_batches():
    """64,000 iterations end in a 40-batch epoch: pool it with the epoch before, weighted by batches."""
    from resx.studies.degradation.tables import final_train_error

    metrics = pd.DataFrame({"iteration": [390, 780, 820], "train_error": [0.5, 0.4, 0.1]})
    assert final_train_error(metrics, 390) == pytest.approx((40 * 0.1 + 350 * 0.4) / 390)
    whole = pd.DataFrame({"iteration": [390, 780], "train_error": [0.5, 0.4]})
    assert final_train_error(whole, 390) == pytest.approx(0.4)
    assert final_train_error(whole, None) == pytest.approx(0.4)


def test_unfinished_runs_stay_out_of_the_final_errors():
    from resx.studies.degradation.draw import summarize_curves

    rows = []
    for seed, finished, last in ((0, True, 0.2), (1, False, 0.9)):
        for epoch, err in ((1, 0.5), (2, last)):
            rows.append(dict(model="resnet20", residual=True, depth=20, seed=seed, epoch=epoch, iteration=epoch * 10,
                             train_error=err, test_error=err, finished=finished))
    summary = summarize_curves(pd.DataFrame(rows))
    assert summary["seeds"].tolist() == [1] and summary["final_train_error_mean"].tolist() == [0.2]


def test_verdict_compares_twins_at_the_deepest_depth_that_has_both():
    from resx.studies.degradation.verdict import verdict

    summary = pd.DataFrame([
        dict(model=m, residual=r, depth=d, final_train_error_mean=e, final_test_error_mean=e)
        for m, r, d, e in (("plain20", False, 20, 0.1), ("plain56", False, 56, 0.2), ("resnet20", True, 20, 0.1),
                           ("resnet56", True, 56, 0.05), ("resnet110", True, 110, 0.04))
    ])
    lines = verdict(summary)
    assert any(line.startswith("At depth 56: resnet56") for line in lines)


@pytest.mark.parametrize("deep_test_error, deep_train_error, seeds, headline", [
    # one run each: two runs of one recipe differ by about 0.7 points, so smaller differences are level
    (0.148, 0.1200, 1, "Residual nets improve with depth"),     # 0.9 points below
    (0.1577, 0.1256, 1, "Residual nets test level at both depths and train level too"),  # 0.08 and 0.3 points
    (0.1565, 0.1100, 1, "Residual nets test level at both depths; the deeper trains better"),  # 1.9 points below
    (0.1650, 0.1400, 1, "Residual nets do not improve with depth"),
    # with seeds, their own spread is the judge
    (0.1565, 0.1270, 3, "Residual nets test level at both depths and train level too"),
    (0.1500, 0.1200, 3, "Residual nets improve with depth"),
])
def test_whether_depth_helps_the_residual_nets(deep_test_error, deep_train_error, seeds, headline):
    """He et al. 2015 Fig. 6 right: ResNet-20 and ResNet-56 closer than their runs land apart are a draw, not a
    verdict, in REPORT.md and on the terminal alike."""
    from resx.studies.degradation.verdict import degradation_verdicts, verdict

    std = 0.0 if seeds == 1 else 0.002
    summary = pd.DataFrame([
        dict(model="resnet20", residual=True, depth=20, seeds=seeds, final_train_error_mean=0.1287,
             final_train_error_std=std, final_test_error_mean=0.1569, final_test_error_std=std),
        dict(model="resnet56", residual=True, depth=56, seeds=seeds, final_train_error_mean=deep_train_error,
             final_train_error_std=std, final_test_error_mean=deep_test_error, final_test_error_std=std),
    ])
    report_line = next(line for line in degradation_verdicts(summary) if "Residual nets" in line)
    terminal_line = next(line for line in verdict(summary) if "Residual nets" in line)
    assert report_line.startswith(f"- **{headline} (He et al.")
    assert terminal_line.replace("NOT", "not").startswith(f"{headline}:")
    level = "level" in headline
    assert ("says nothing" in report_line) == (level and seeds == 1) and ("spread covers" in report_line) == (
        level and seeds > 1)


def test_a_single_run_is_judged_by_the_run_to_run_spread_even_beside_seeds():
    """One side with seeds and the other a single run: the single run's spread is unknown, so the two-run margin holds."""
    from resx.studies.degradation.verdict import depth_helps

    summary = pd.DataFrame([
        dict(model="resnet20", residual=True, depth=20, seeds=3, final_test_error_mean=0.1569,
             final_test_error_std=0.001, final_train_error_mean=0.13, final_train_error_std=0.001),
        dict(model="resnet56", residual=True, depth=56, seeds=1, final_test_error_mean=0.1559,
             final_test_error_std=0.0, final_train_error_mean=0.12, final_train_error_std=0.0),
    ])
    assert depth_helps(summary) == "level"


def test_resnet110_in_the_grid_gets_the_papers_warmup():
    """He et al. 2015 §4.2: ResNet-110 starts at lr 0.01 until training error < 80%; shallower nets do not."""
    from resx.config import TrainConfig
    from resx.studies.degradation.grid import plan_grid

    runs = {r.config.model: r.config for r in plan_grid(TrainConfig(), depths=[20], residual_depths=[110])}
    assert runs["resnet110"].warmup_lr == 0.01
    assert runs["resnet20"].warmup_lr is None and runs["plain20"].warmup_lr is None
    own = plan_grid(TrainConfig(), depths=[20], residual_depths=[110], per_model={"resnet110": {"warmup_lr": 0.02}})
    assert {r.config.model: r.config.warmup_lr for r in own}["resnet110"] == 0.02


def test_grid_info_keeps_an_old_file_without_history_as_its_first_entry(tmp_path):
    """grid_info.json written before `history` existed: its top level becomes the first entry."""
    from resx.studies.degradation.compare import write_grid_info

    path = tmp_path / "grid_info.json"
    path.write_text(json.dumps({"runs": 4, "trained": 1, "skipped": 3, "wall_seconds": 483.0,
                                "options": {"depths": [20, 56], "seeds": 1, "shard": None}}))
    now = {"runs": 6, "trained": 2, "skipped": 4, "wall_seconds": 12.0, "seconds": 14.0, "started": "a", "ended": "b",
           "options": {"depths": [20, 56], "residual_depths": [110], "seeds": 1, "shard": None},
           "provenance": {"precision": "bf16", "device": "cuda"}}
    written = write_grid_info(path, now)
    assert json.loads(path.read_text()) == written
    assert written["runs"] == 6 and written["trained"] == 2  # the top level: the latest invocation
    old, latest = written["history"]
    assert (old["runs"], old["trained"], old["seconds"], old["settings"]["depths"]) == (4, 1, 483.0, [20, 56])
    assert old["started"] is None and old["provenance"] is None  # what the old file did not say
    assert (latest["runs"], latest["trained"], latest["seconds"]) == (6, 2, 14.0)
    assert latest["settings"]["residual_depths"] == [110] and latest["provenance"]["precision"] == "bf16"
    write_grid_info(path, {**now, "trained": 0})
    assert [e["trained"] for e in json.loads(path.read_text())["history"]] == [1, 2, 0]


def two_seed_curves(epochs: int = 10, steps: int = 100):
    """A 2-seed grid of plain and residual nets of depths 20 and 56, shaped like He et al. Fig. 6 on CIFAR-10:
    near chance at first, then residual nets at 13-18% test error, plain nets higher (plain-56 worst)."""
    import math

    final = {("plain", 20): 0.20, ("plain", 56): 0.27, ("resnet", 20): 0.16, ("resnet", 56): 0.14}
    curves, iterations = [], []
    for (kind, depth), end in final.items():
        for seed in (0, 1):
            for epoch in range(1, epochs + 1):
                error = end + 0.75 * math.exp(-1.2 * (epoch - 1)) + 0.01 * seed
                curves.append(dict(model=f"{kind}{depth}", family="cifar", residual=kind == "resnet", depth=depth,
                                   seed=seed, epoch=epoch, iteration=epoch * steps, train_error=error - 0.03,
                                   test_error=error, batch_size=128))
            for it in range(10, epochs * steps + 1, 10):
                error = end - 0.03 + 0.75 * math.exp(-1.2 * (it / steps - 1)) + 0.01 * seed
                iterations.append(dict(model=f"{kind}{depth}", residual=kind == "resnet", depth=depth, seed=seed,
                                       iteration=it, train_error=min(error, 0.9)))
    return pd.DataFrame(curves), pd.DataFrame(iterations)


def test_degradation_figure_draws_each_seed_thin_and_the_mean_bold(tmp_path):
    """He et al. Fig. 6 with 2 seeds: one thin line per seed and run, the mean bold, no unexplained band; the
    residual panel's y-range fits its later training (13-18% differences read); plain and residual nets of one
    depth in colours that cannot be confused."""
    from matplotlib.colors import to_rgb

    from resx.plots import style
    from resx.studies.degradation import draw

    curves, iterations = two_seed_curves()
    curves.to_csv(tmp_path / "curves.csv", index=False)
    iterations.to_csv(tmp_path / "iteration_curves.csv", index=False)
    with style.rc():
        fig = draw.curves_figure(curves, iterations)
        plain_ax, residual_ax = fig.axes[:2]
        for ax in (plain_ax, residual_ax):
            thin = [line for line in ax.get_lines() if line.get_linewidth() < 1.0]
            assert len(thin) == 2 * 2 * 2  # 2 models x 2 seeds x (training, test)
            bold = [line for line in ax.get_lines() if line.get_linewidth() == draw.MEAN_WIDTH]
            assert len(bold) == 2  # each model's mean test error
            assert not ax.collections  # no band
            labels = [t.get_text() for t in ax.get_legend().get_texts()]
            assert "thin: one seed" in labels and "bold: mean over seeds" in labels
        low, high = residual_ax.get_ylim()
        late = 100 * curves[curves["residual"] & (curves["epoch"] >= 5)]["test_error"].max()  # 17%
        assert low == 0 and late < high <= late + 5
        assert plain_ax.get_ylim()[1] < 50  # each panel fits its own data
        colours = {t.get_text(): to_rgb(h.get_color()) for ax in (plain_ax, residual_ax)
                   for h, t in zip(ax.get_legend().legend_handles, ax.get_legend().get_texts())}
    for depth in (20, 56):
        plain, residual = colours[f"plain-{depth}"], colours[f"ResNet-{depth}"]
        assert sum((a - b) ** 2 for a, b in zip(plain, residual)) ** 0.5 > 0.5
        assert plain[0] > plain[2] and residual[2] > residual[0]  # warm for plain, cool for residual
    assert sum((a - b) ** 2 for a, b in zip(colours["ResNet-20"], colours["ResNet-56"])) ** 0.5 > 0.2
    written = draw.plot_degradation(tmp_path, formats=("png",))
    assert [p.name for p in written] == ["degradation_curves.png", "error_vs_depth.png"]


def test_report_says_which_precision_the_grid_computed_in_and_where_that_comes_from(tmp_path):
    """REPORT.md's computed_with line: from grid_info.json's provenance block, else from the runs' run_info.json."""
    from resx.studies.degradation.report import degradation_section

    curves, _ = two_seed_curves(epochs=3)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    run = tmp_path / "resnet20-seed0"
    run.mkdir()
    (run / "run_info.json").write_text(json.dumps({"precision": "fp32", "device_name": "CPU (2 threads)"}))
    (tmp_path / "grid_info.json").write_text(json.dumps({"runs": 8, "trained": 8}))  # an old one: no provenance
    lines = degradation_section(tmp_path, tmp_path, tmp_path, False)
    assert lines[2] == ("Computed in **fp32** on CPU (2 threads) (from the `precision` in the one run's "
                        "run_info.json: grid_info.json records no invocation that trained them).")
    trained_here = {"precision": "bf16", "device_name": "NVIDIA H100", "resx_version": "0.1", "torch": "2.5"}
    redrawn_elsewhere = {"precision": "fp32", "device_name": "CPU (laptop)", "resx_version": "0.1", "torch": "2.5"}
    (tmp_path / "grid_info.json").write_text(json.dumps({"runs": 8, "trained": 0, "provenance": redrawn_elsewhere,
        "history": [{"trained": 8, "provenance": trained_here}, {"trained": 0, "provenance": redrawn_elsewhere}]}))
    lines = degradation_section(tmp_path, tmp_path, tmp_path, False)
    assert lines[2].startswith("Computed in **bf16** on NVIDIA H100") and "grid_info.json's provenance" in lines[2]


def test_shard_auto_reads_the_slurm_array(monkeypatch):
    """A SLURM job array's tasks (--array=1-2 here) each take their slice with --shard auto; together they give the
    whole grid's tables."""
    from resx.shards import parse_shard, slurm_shard

    assert slurm_shard({}) is None and parse_shard("auto", {}) is None  # outside an array job: the whole grid
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8",
                                "SLURM_ARRAY_TASK_MIN": "0"}) == (1, 8)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "8",
                                "SLURM_ARRAY_TASK_MIN": "1"}) == (8, 8)
    with pytest.raises(ResxError, match="not one of 4 consecutive tasks"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"})
    with pytest.raises(ResxError, match="not integers"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "x"})
    for task in ("1", "2"):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
        result = invoke(*GRID, "--out", "sharded", "--shard", "auto")
        assert result.exit_code == 0, result.output
        assert Path(f"sharded/grid_info-shard{task}of2.json").is_file()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert invoke(*GRID, "--out", "whole").exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv("sharded/summary.csv"), pd.read_csv("whole/summary.csv"))
