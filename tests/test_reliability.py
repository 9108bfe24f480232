"""Issue #9, training: what a user sees when something goes wrong, driven through the CLI as a user would.

Every mistake must end with a non-zero exit, exactly one line `error: ...` that names the problem, no traceback,
and the files of an existing run untouched. A run killed (SIGKILL) or interrupted (Ctrl-C) resumes with
--resume to the same numbers as a run never interrupted; a diverging run stops with a message and keeps its
last good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from resx.cli import app
from resx.config import resolve_config
from resx.engine import read_checkpoint, train

from conftest import TINY_DATA

REPO = Path(__file__).resolve().parents[1]
RESULT_COLUMNS = ["epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error"]
TRAIN = ["train", "resnet8", "--data", TINY_DATA, "--epochs", "1", "--batch-size", "32"]
runner = CliRunner()


# --- helpers ------------------------------------------------------------------------------------------------


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def error_line(output: str) -> str:
    """The one `error:` line of a failed command."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one 'error:' line, got:\n{output}"
    return lines[0]


def fail(*args: str, match: str) -> str:
    """Run `resx ARGS` in-process; check it fails the way a user error should; return the error line."""
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0, f"resx {' '.join(args)} succeeded:\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"  # not a crash
    assert "Traceback" not in result.output
    line = error_line(result.output)
    assert re.search(match, line), f"{match!r} not in: {line}"
    return line


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "RESX_NO_DOWNLOAD": "1", "RESX_DATA": str(tmp_path / "data"),
            "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One finished 1-epoch run of TRAIN, made once and copied into each test that needs it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    train(resolve_config(None, dict(model="resnet8", data=TINY_DATA, epochs=1, batch_size=32)), folder)
    return folder


@pytest.fixture
def good(finished_run, tmp_path) -> Path:
    """An existing run folder `good` in the test's working directory."""
    shutil.copytree(finished_run, tmp_path / "good")
    return Path("good")


# --- user mistakes: one line, non-zero exit, nothing existing touched ---------------------------------------


def write(path: str, text: str) -> str:
    Path(path).write_text(text)
    return path


MISTAKES = {
    # name: (arguments replacing or added to TRAIN, what the error line must say)
    "unknown model": (["train", "resnet-56", "--data", TINY_DATA, "--epochs", "1"], r"unknown model 'resnet-56'; known models: .*resnet56"),
    "unknown model, default data": (["train", "resnet-56", "--epochs", "1"], r"unknown model 'resnet-56'"),
    "unknown dataset": (["--data", "cifar11"], r"unknown dataset 'cifar11'; allowed: cifar10, .*imagefolder:PATH"),
    "imagefolder path missing": (["--data", "imagefolder:nowhere"], r"imagefolder path .*nowhere does not exist"),
    "imagefolder without train/test": (["--data", "imagefolder:empty"], r"imagefolder path .*empty has no train/ folder"),
    "cifar10 missing, no network": (["--data", "cifar10"], r"cifar10 not found in .*cifar-10-batches-py, and downloads are off"),
    "YAML config missing": (["--config", "missing.yaml"], r"config file missing.yaml not found"),
    "YAML malformed": (["--config", "malformed.yaml"], r"malformed.yaml is not valid YAML at line 4, column \d+: .*started at line 3\)"),
    "YAML unknown key": (["--config", "unknown.yaml"], r"unknown.yaml: unknown key 'learning_rate'; allowed: .*\blr\b"),
    "YAML wrong type": (["--config", "wrongtype.yaml"], r"wrongtype.yaml: batch_size must be an integer, got 'large'"),
    "YAML not a mapping": (["--config", "list.yaml"], r"list.yaml must hold a mapping"),
    "zero epochs": (["--epochs", "0"], r"epochs must be positive, got 0"),
    "negative epochs": (["--epochs", "-3"], r"epochs must be positive, got -3"),
    "zero batch size": (["--batch-size", "0"], r"batch-size must be positive, got 0"),
    "negative batch size": (["--batch-size", "-32"], r"batch-size must be positive, got -32"),
    "batch larger than the data": (["--batch-size", "512"], r"batch size 512 is larger than the training set \(256 images\)"),
    "zero lr": (["--lr", "0"], r"lr must be positive, got 0"),
    "negative lr": (["--lr", "-0.1"], r"lr must be positive, got -0.1"),
    "lr not a number": (["--lr", "nan"], r"lr must be a finite positive number, got nan"),
    "infinite lr": (["--lr", "inf"], r"lr must be a finite positive number, got inf"),
    "stochastic depth on a plain net": (["train", "plain8", "--data", TINY_DATA, "--stochastic-depth", "0.5"], r"plain"),
    "cuda without a GPU": (["--device", "cuda"], r"--device cuda asked for, but this machine has no usable CUDA GPU"),
}


def mistake_args(name: str) -> list[str]:
    write("malformed.yaml", "model: resnet8\nepochs: 2\nlr: [0.1, 0.01\nbatch_size: 32\n")
    write("unknown.yaml", "model: resnet8\nlearning_rate: 0.1\n")
    write("wrongtype.yaml", "batch_size: large\n")
    write("list.yaml", "- resnet8\n- resnet20\n")
    Path("empty").mkdir(exist_ok=True)
    if name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args, _ = MISTAKES[name]
    return args if args[0] == "train" else TRAIN + args


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistake_on_a_new_run(name):
    """A failed command leaves no run folder behind."""
    fail(*mistake_args(name), "--out", "new", match=MISTAKES[name][1])
    assert not Path("new").exists()


@pytest.mark.parametrize("name", list(MISTAKES))
@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_mistake_keeps_an_existing_run(name, flag, good):
    """--overwrite must not delete a run for a command that then fails; --resume must not change it."""
    before = file_hashes(good)
    args = mistake_args(name)
    result = runner.invoke(app, [*args, "--out", str(good), flag])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    line = error_line(result.output)
    if flag == "--overwrite":
        assert re.search(MISTAKES[name][1], line), line
    else:  # with --resume, a model or data other than the checkpoint's may be what is reported: also right
        assert re.search(MISTAKES[name][1], line) or re.search(r"checkpoint in good is for \w+=", line), line
    assert file_hashes(good) == before


def test_existing_run_without_resume_or_overwrite(good):
    before = file_hashes(good)
    fail(*TRAIN, "--out", str(good), match=r"run folder good already holds a run; pass --resume .* or --overwrite")
    assert file_hashes(good) == before


def test_resume_without_checkpoint():
    fail(*TRAIN, "--out", "never-trained", "--resume", match=r"--resume: no checkpoint in never-trained")
    Path("empty-run").mkdir()
    fail(*TRAIN, "--out", "empty-run", "--resume", match=r"--resume: no checkpoint in empty-run")


def test_resume_and_overwrite_together(good):
    before = file_hashes(good)
    fail(*TRAIN, "--out", str(good), "--resume", "--overwrite", match=r"--resume and --overwrite exclude each other")
    assert file_hashes(good) == before


def bad_checkpoints(good: Path) -> dict[str, bytes]:
    real = (good / "checkpoint.pt").read_bytes()
    foreign = Path("foreign.pt")
    torch.save({"a": 1}, foreign)
    return {
        "truncated": real[: len(real) // 2],
        "empty": b"",
        "random bytes": os.urandom(4096),
        "another program's torch file": foreign.read_bytes(),
    }


@pytest.mark.parametrize("kind, match", [
    ("truncated", r"is not a readable resx checkpoint \(truncated or another format"),
    ("empty", r"is not a readable resx checkpoint"),
    ("random bytes", r"is not a readable resx checkpoint"),
    ("another program's torch file", r"is not a resx checkpoint \(no 'resx-checkpoint' tag\)"),
])
def test_resume_from_a_bad_checkpoint(good, kind, match):
    (good / "checkpoint.pt").write_bytes(bad_checkpoints(good)[kind])
    before = file_hashes(good)
    fail(*TRAIN, "--out", str(good), "--resume", match=match)
    assert file_hashes(good) == before


@pytest.mark.parametrize("change, match", [
    (["train", "plain8"], r"checkpoint in good is for model='resnet8', not 'plain8'"),
    (["--data", "synthetic:size=8,train=256,test=64,seed=1"], r"checkpoint in good is for data="),
    (["--batch-size", "64"], r"checkpoint in good is for batch_size=32, not 64"),
    (["--shortcut", "B"], r"checkpoint in good is for shortcut=None, not 'B'"),
])
def test_resume_a_checkpoint_of_another_run(good, change, match):
    args = list(TRAIN)
    if change[0] == "train":
        args[1] = change[1]
    else:
        args += change
    before = file_hashes(good)
    fail(*args, "--out", str(good), "--resume", match=match)
    assert file_hashes(good) == before


def test_mistake_in_a_real_process(tmp_path):
    """The same, as the shell sees it: stderr has one error line and no traceback."""
    result = subprocess.run([sys.executable, "-m", "resx", "train", "resnet-56", "--epochs", "1"],
                            env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert error_line(result.stderr)


# --- divergence -------------------------------------------------------------------------------------------------


def test_divergence_in_the_first_epoch():
    result = runner.invoke(app, [*TRAIN, "--lr", "1e8", "--out", "run"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    line = error_line(result.output)
    assert "loss became NaN or infinite at epoch 1, iteration " in line and "no checkpoint was written" in line
    assert "--lr" in line
    assert not Path("run/checkpoint.pt").exists()
    info = json.loads(Path("run/run_info.json").read_text())
    assert info["status"] == "diverged" and info["diverged_at"]["epoch"] == 1


def test_divergence_keeps_the_last_good_checkpoint(good, monkeypatch):
    """A good 1-epoch run extended to 2 epochs whose loss blows up in epoch 2 (its lr made absurd from there on, as
    a loss spike would): epoch 2 diverges, epoch 1 is kept."""
    from resx.engine.run import TrainingRun

    real_lr_at = TrainingRun.lr_at
    monkeypatch.setattr(TrainingRun, "lr_at", lambda self, it: 1e8 if it >= 8 else real_lr_at(self, it))
    before = file_hashes(good)
    result = runner.invoke(app, [*TRAIN[:-4], "--epochs", "2", "--batch-size", "32", "--out", str(good), "--resume"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    line = error_line(result.output)
    assert "at epoch 2, iteration " in line and "checkpoint.pt of epoch 1 kept" in line
    iteration = int(line.split("iteration ")[1].split()[0])
    assert 8 <= iteration < 16  # epoch 2 holds iterations 8..15
    after = file_hashes(good)
    assert after["checkpoint.pt"] == before["checkpoint.pt"] and after["metrics.csv"] == before["metrics.csv"]
    ckpt = read_checkpoint(good)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model_state"].values() if v.is_floating_point())
    info = json.loads((good / "run_info.json").read_text())
    assert info["status"] == "diverged"
    assert info["diverged_at"] == {"epoch": 2, "iteration": iteration} and info["last_good_checkpoint_epoch"] == 1


# --- killed and interrupted runs ---------------------------------------------------------------------------------

LONG_DATA = "synthetic:size=8,train=1024,test=64"  # 32 steps of 32 per epoch: about a second an epoch here
LONG_EPOCHS = 4
LONG = ["train", "resnet8", "--data", LONG_DATA, "--epochs", str(LONG_EPOCHS), "--batch-size", "32"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(resolve_config(None, dict(model="resnet8", data=LONG_DATA, epochs=LONG_EPOCHS, batch_size=32)), folder)
    return pd.read_csv(folder / "metrics.csv")[RESULT_COLUMNS]


PAUSE_AT = 40  # epoch 2, 8 of its 32 steps done: one metrics row and the checkpoint of epoch 1 exist


def start_training(tmp_path: Path, out: str, pause_at: int = PAUSE_AT) -> subprocess.Popen:
    """`resx train LONG` in a real process that stops after step `pause_at` and waits there to be signalled
    (the RESX_PAUSE_AT test hook): the test, not the machine's speed, decides where the signal lands."""
    env = {**subprocess_env(tmp_path), "RESX_PAUSE_AT": str(pause_at), "RESX_PAUSE_MARKER": str(tmp_path / "paused")}
    return subprocess.Popen([sys.executable, "-m", "resx", *LONG, "--out", out], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_paused(process: subprocess.Popen, marker: Path, timeout: float = 600) -> None:
    """Wait for the marker the paused process writes (the timeout only guards against a hung process)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"training ended before its pause ({process.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("training never reached its pause")
        time.sleep(0.05)


def check_metrics_file(metrics: Path) -> pd.DataFrame:
    """No duplicate, missing or half-written rows."""
    frame = pd.read_csv(metrics)
    assert frame["epoch"].tolist() == list(range(1, len(frame) + 1))
    assert not frame[RESULT_COLUMNS].isna().any().any()
    return frame


def test_killed_run_resumes_to_the_same_numbers(tmp_path, uninterrupted):
    process = start_training(tmp_path, "R")
    try:
        wait_until_paused(process, tmp_path / "paused")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(check_metrics_file(Path("R/metrics.csv"))) == 1
    ckpt = read_checkpoint("R")
    assert (ckpt["epoch"], ckpt["iteration"]) == (1, 32)  # the steps of epoch 2 since then are lost, nothing else

    result = runner.invoke(app, [*LONG, "--out", "R", "--resume"])
    assert result.exit_code == 0, result.output
    resumed = check_metrics_file(Path("R/metrics.csv"))
    pd.testing.assert_frame_equal(resumed[RESULT_COLUMNS], uninterrupted)
    assert json.loads(Path("R/run_info.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_signal_saves_and_resumes_to_the_same_numbers(tmp_path, uninterrupted, sig, code, said):
    """Ctrl-C, and SIGTERM (what `timeout` and SLURM send at a job's time limit): the run stops after the current
    step, checkpoints there, records `interrupted`, exits non-zero and says in one line how to continue."""
    process = start_training(tmp_path, "R")
    try:
        wait_until_paused(process, tmp_path / "paused")
        process.send_signal(sig)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, f"{out}\n{err}"
    assert "Traceback" not in out + err
    line = error_line(err)
    assert said in line and "checkpoints saved in R" in line and "--resume" in line
    info = json.loads(Path("R/run_info.json").read_text())
    assert info["status"] == "interrupted" and info["iterations_done"] == PAUSE_AT
    ckpt = read_checkpoint("R")
    assert (ckpt["epoch"], ckpt["iteration"], ckpt["cursor"]) == (1, PAUSE_AT, PAUSE_AT - 32)  # saved where it stopped
    assert len(check_metrics_file(Path("R/metrics.csv"))) == 1

    result = runner.invoke(app, [*LONG, "--out", "R", "--resume"])
    assert result.exit_code == 0, result.output
    resumed = check_metrics_file(Path("R/metrics.csv"))
    pd.testing.assert_frame_equal(resumed[RESULT_COLUMNS], uninterrupted)
    assert json.loads(Path("R/run_info.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("pause_at", [64, LONG_EPOCHS * 32])
def test_signal_after_an_epochs_last_step_still_logs_that_epoch(tmp_path, uninterrupted, pause_at):
    """A signal that lands after an epoch's last step but before its evaluation: the checkpoint holds the whole
    epoch's steps and no row for it yet. Resuming evaluates and logs that epoch, the run's last one included, instead
    of counting the run as done with a row missing."""
    process = start_training(tmp_path, "R", pause_at=pause_at)
    try:
        wait_until_paused(process, tmp_path / "paused")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    ckpt = read_checkpoint("R")
    assert (ckpt["iteration"], ckpt["cursor"]) == (pause_at, 32)  # the epoch's steps all taken, its row not written
    result = runner.invoke(app, [*LONG, "--out", "R", "--resume"])
    assert result.exit_code == 0, result.output
    resumed = check_metrics_file(Path("R/metrics.csv"))
    pd.testing.assert_frame_equal(resumed[RESULT_COLUMNS], uninterrupted)
    assert json.loads(Path("R/run_info.json").read_text())["status"] == "finished"


# --- the rest of issue #9's list: results folders without CSVs, CUDA out of memory ------------------------------


def test_plot_on_a_folder_without_csvs(tmp_path):
    Path("empty").mkdir()
    fail("plot", "empty", match="no resx CSVs found under empty")
    fail("plot", "does-not-exist", match="no such folder")
    fail("report", "does-not-exist", match="no such folder")


def test_cuda_out_of_memory_is_one_line(monkeypatch):
    """No GPU here: make training raise the error CUDA raises, and check the user sees one line with a hint."""
    import resx.engine

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(resx.engine, "train", out_of_memory)
    line = fail(*TRAIN, "--out", "oom", match="CUDA out of memory")
    assert "--batch-size" in line


# --- output folders: checked before anything is computed, in every command ---------------------------------------

OUT_COMMANDS = {
    # command: (its arguments without --out, the function that would compute, patched to fail if reached)
    "train": (TRAIN, "resx.engine.train"),
    "compare-plain": (["compare-plain", "--depths", "8", "--seeds", "1", "--data", TINY_DATA, "--epochs", "1"],
                      "resx.studies.degradation.compare.compare_plain"),
    "demo": (["demo", "--data", TINY_DATA], "resx.studies.demo.run_demo"),
    "lesion": (["lesion", "good"], "resx.studies.lesion.compute.run_lesion"),
    "paths": (["paths", "good"], "resx.studies.paths.compute.run_paths"),
    "bench": (["bench", "--models", "resnet8", "--data", TINY_DATA, "--seconds", "0.1"], "resx.studies.bench.compute.run_bench"),
    "reproduce": (["reproduce", "--profile", "tiny", "--data", TINY_DATA], "resx.reproduce.reproduce"),
    "plot": (["plot", "results"], "resx.plots.plot_results"),
}


def never_computes(monkeypatch, target: str) -> None:
    import importlib

    module, name = target.rsplit(".", 1)

    def computed(*args, **kwargs):
        raise AssertionError(f"{target} ran before the output folder was checked")

    monkeypatch.setattr(importlib.import_module(module), name, computed)


@pytest.fixture
def taken() -> Path:
    """A regular file where a folder is wanted, and a results folder for plot."""
    Path("taken").write_text("not a folder\n")
    Path("results").mkdir()
    return Path("taken")


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
@pytest.mark.parametrize("out, match", [
    ("taken", r"--out taken is a file, not a folder"),
    ("taken/sub", r"--out taken/sub lies under taken, which is a file, not a folder"),
])
def test_output_folder_that_is_or_lies_under_a_file(command, out, match, good, taken, monkeypatch):
    args, target = OUT_COMMANDS[command]
    never_computes(monkeypatch, target)
    fail(*args, "--out", out, match=match)
    assert taken.read_text() == "not a folder\n"


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
@pytest.mark.parametrize("out", ["locked", "locked/new"])
def test_unwritable_output_folder(command, out, good, taken, monkeypatch):
    """The tests run as root, whom permissions do not stop: the OS's answer for a read-only folder is simulated
    (os.access says `locked` cannot be written), which is what the check asks."""
    Path("locked").mkdir()
    real_access = os.access

    def access(p, mode, **kw):
        if mode & os.W_OK and Path(p).resolve() == Path("locked").resolve():
            return False
        return real_access(p, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    args, target = OUT_COMMANDS[command]
    never_computes(monkeypatch, target)
    fail(*args, "--out", out, match=rf"--out {out} is not writable")
    assert not Path("locked/new").exists()


def test_report_out_must_be_a_writable_file(taken, monkeypatch):
    never_computes(monkeypatch, "resx.report.write_report")
    fail("report", "results", "--out", "taken/REPORT.md", match=r"taken is a file, not a folder")
    fail("report", "results", "--out", "results", match=r"--out results is a folder; give the file to write")


# --- one writer per run folder ----------------------------------------------------------------------------------


def test_a_run_folder_has_one_writer_at_a_time(tmp_path, uninterrupted):
    """While a run trains (here: paused by the test hook), a second `resx train` into its folder, with --resume,
    --overwrite or another seed, is refused in one line and changes nothing. Once the first is killed, its lock
    file stays, but a dead process holds no lock: --resume goes on, to the numbers of an uninterrupted run."""
    process = start_training(tmp_path, "R")
    try:
        wait_until_paused(process, tmp_path / "paused")
        before = file_hashes(Path("R"))
        # in use, by whom: said first, whatever else the second command would be refused for
        for extra in (["--resume"], ["--overwrite"], ["--overwrite", "--seed", "1"], ["--seed", "1"]):
            fail(*LONG, "--out", "R", *extra, match=r"run folder R is in use by another resx process \(pid \d+")
        assert file_hashes(Path("R")) == before
    finally:
        process.kill()
        process.wait(timeout=60)
    assert Path("R/.resx.lock").exists()
    result = runner.invoke(app, [*LONG, "--out", "R", "--resume"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(check_metrics_file(Path("R/metrics.csv"))[RESULT_COLUMNS], uninterrupted)


def test_a_new_run_folder_taken_by_another_process_is_refused():
    """Two runs started at once into one new folder: the one that locks it second is refused."""
    from resx.atomic import FolderLock

    with FolderLock("R"):  # another process's lock (a second open file description conflicts like one)
        fail(*TRAIN, "--out", "R", match=r"run folder R is in use by another resx process")
        assert {p.name for p in Path("R").iterdir()} == {".resx.lock"}
    result = runner.invoke(app, [*TRAIN, "--out", "R"])
    assert result.exit_code == 0, result.output


# --- --resume keeps the run's settings; a longer run is a recorded extension ----------------------------------------


@pytest.mark.parametrize("change, match", [
    (["--lr", "0.5"], r"checkpoint in good was trained with lr=0.1, not 0.5; a resumed run keeps its settings"),
    (["--momentum", "0.5"], r"momentum=0.9, not 0.5"),
    (["--weight-decay", "0.001"], r"weight_decay=0.0001, not 0.001"),
    (["--lr-milestones", "0.3"], r"lr_milestones=\[0.5, 0.75\], not \[0.3\]"),
    (["--warmup-lr", "0.01"], r"warmup_lr=None, not 0.01"),
    (["--seed", "3"], r"seed=0, not 3"),
    (["--no-augment"], r"augment=None, not False"),
])
def test_resume_refuses_other_settings(good, change, match):
    before = file_hashes(good)
    fail(*TRAIN, *change, "--out", str(good), "--resume", match=match)
    assert file_hashes(good) == before


@pytest.mark.parametrize("length, match", [
    (["--iterations", "4"], r"good has trained 8 iterations \(1 epochs of 8\); --iterations 4 is 4 iterations, fewer than done"),
])
def test_resume_refuses_a_length_shorter_than_done(good, length, match):
    before = file_hashes(good)
    args = [a for a in TRAIN if a not in ("--epochs", "1")]
    fail(*args, *length, "--out", str(good), "--resume", match=match)
    assert file_hashes(good) == before


def test_resume_with_more_epochs_is_a_recorded_extension(good):
    result = runner.invoke(app, [*TRAIN[:-4], "--epochs", "3", "--batch-size", "32", "--out", str(good), "--resume"])
    assert result.exit_code == 0, result.output
    assert len(check_metrics_file(good / "metrics.csv")) == 3
    import yaml

    assert yaml.safe_load((good / "config.yaml").read_text())["epochs"] == 3
    info = json.loads((good / "run_info.json").read_text())
    assert info["status"] == "finished" and info["iterations_done"] == 24
    assert info["length_changes"] == [{"at_iteration": 8, "from_iterations": 8, "to_iterations": 24, "epochs": 3,
                                       "iterations": None}]


def test_resume_accepts_the_same_dataset_spelled_differently(good):
    args = list(TRAIN)
    args[args.index("--data") + 1] = "synthetic:test=64,train=256,size=8,seed=0"
    result = runner.invoke(app, [*args, "--out", str(good), "--resume"])
    assert result.exit_code == 0, result.output


def test_imagefolder_is_stored_as_an_absolute_path(tmp_path):
    from test_data import write_imagefolder

    from resx.data import normalise_data_spec

    write_imagefolder(Path("pets"))
    args = ["train", "resnet8", "--data", "imagefolder:./pets", "--epochs", "1", "--batch-size", "2", "--out", "run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import yaml

    assert yaml.safe_load(Path("run/config.yaml").read_text())["data"] == f"imagefolder:{tmp_path / 'pets'}"
    assert normalise_data_spec("imagefolder:./pets") == normalise_data_spec("imagefolder:pets")
    resumed = runner.invoke(app, [*args[:3], "imagefolder:pets", *args[4:], "--resume"])
    assert resumed.exit_code == 0, resumed.output
    os.chdir(Path("run"))  # from another folder, lesion finds the data by the stored path
    lesion = runner.invoke(app, ["lesion", ".", "--draws", "1", "--studies", "single", "--out", "../lesion"])
    assert lesion.exit_code == 0, lesion.output


# --- mistakes that used to pass silently -----------------------------------------------------------------------


def test_yaml_exponent_floats_are_numbers():
    """PyYAML reads `1e-3` (no dot) as a string; researchers write it that way."""
    write("exp.yaml", "lr: 1e-3\nweight_decay: 5e-4\nlr_milestones: [5e-1, 0.75]\n")
    config = resolve_config("exp.yaml")
    assert (config.lr, config.weight_decay, config.lr_milestones) == (0.001, 0.0005, [0.5, 0.75])
    write("text.yaml", "lr: fast\n")
    fail(*TRAIN, "--config", "text.yaml", "--out", "new", match=r"lr must be a number, got 'fast'")


def test_shortcut_on_a_plain_net_is_refused():
    fail("train", "plain8", "--data", TINY_DATA, "--shortcut", "B", "--out", "new",
         match=r"--shortcut B is for residual nets; plain8 is a plain net")
    assert not Path("new").exists()


@pytest.mark.parametrize("option, value, match", [
    ("--momentum", "1", r"--momentum must be in \[0, 1\), got 1.0"),
    ("--momentum", "nan", r"--momentum must be a finite number in \[0, 1\), got nan"),
    ("--weight-decay", "-1", r"--weight-decay must be at least 0, got -1.0"),
    ("--weight-decay", "inf", r"--weight-decay must be a finite number at least 0, got inf"),
    ("--stochastic-depth", "nan", r"--stochastic-depth must be a finite number in \(0, 1\], got nan"),
    ("--warmup-lr", "-inf", r"--warmup-lr must be a finite positive number, got -inf"),
    ("--lr-milestones", "0.5,x", r"--lr-milestones takes numbers separated by commas"),
    ("--lr-milestones", "nan", r"--lr-milestones takes finite numbers"),
    ("--lr-milestones", "1.5", r"lr_milestones are fractions of training in \(0, 1\)"),
    ("--seed", "-1", r"--seed must be at least 0, got -1"),
    ("--save-every", "0", r"--save-every must be at least 1, got 0"),
])
def test_numeric_train_options_are_checked(option, value, match):
    fail(*TRAIN, option, value, "--out", "new", match=match)
    assert not Path("new").exists()


def test_save_every_on_the_command_line_and_on_resume():
    """`resx train --save-every N` keeps every N-th epoch's checkpoint; a resume may change N (it changes no result)."""
    result = runner.invoke(app, [*TRAIN[:4], "--epochs", "2", *TRAIN[6:], "--save-every", "2", "--out", "run"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in Path("run/checkpoints").iterdir()] == ["epoch-002.pt"]
    result = runner.invoke(app, [*TRAIN[:4], "--epochs", "3", *TRAIN[6:], "--save-every", "1", "--out", "run",
                                 "--resume"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in Path("run/checkpoints").iterdir()) == ["epoch-002.pt", "epoch-003.pt"]


@pytest.mark.parametrize("args, match", [
    (["bench", "--seconds", "nan"], r"--seconds must be a finite positive number, got nan"),
    (["bench", "--seconds", "inf"], r"--seconds must be a finite positive number, got inf"),
    (["bench", "--seconds", "0"], r"--seconds must be positive, got 0.0"),
    (["bench", "--models", ""], r"--models is empty"),
    (["bench", "--rounds", "0"], r"--rounds must be at least 1"),
    (["lesion", "good", "--draws", "0"], r"--draws must be at least 1, got 0"),
    (["lesion", "good", "--cache-mb", "-1"], r"--cache-mb must be at least 0"),
    (["paths", "good", "--samples", "0"], r"--samples must be at least 1"),
    (["compare-plain", "--depths", "8", "--seeds", "0"], r"--seeds must be at least 1"),
    (["compare-plain", "--depths", "8", "--lr", "nan"], r"--lr must be a finite positive number, got nan"),
])
def test_numeric_options_of_every_command_are_checked(args, match, good, monkeypatch):
    for target in ("resx.studies.bench.compute.run_bench", "resx.studies.lesion.compute.run_lesion", "resx.studies.paths.compute.run_paths",
                   "resx.studies.degradation.compare.compare_plain"):
        never_computes(monkeypatch, target)
    fail(*args, match=match)


def test_compare_plain_refuses_unknown_per_model_names_and_merges_duplicate_depths():
    write("grid.yaml", "compare_plain:\n  per_model:\n    resnet9: {warmup_lr: 0.01}\n")
    grid = ["compare-plain", "--seeds", "1", "--data", TINY_DATA, "--epochs", "1", "--batch-size", "32"]
    fail(*grid, "--depths", "8", "--config", "grid.yaml", "--out", "g",
         match=r"per_model names 'resnet9', which is no model of this grid; its models: plain8, resnet8")
    result = runner.invoke(app, [*grid, "--depths", "8,8", "--out", "g"])
    assert result.exit_code == 0, result.output
    assert "trained 2 run(s)" in result.output
    assert sorted(p.name for p in Path("g").iterdir() if p.is_dir()) == ["plain8-seed0", "resnet8-seed0"]


# --- lesion and paths: never mix studies, never lesion a run that is not what it says --------------------------

STUDY_ARGS = {"lesion": ["--draws", "1", "--studies", "single"], "paths": ["--samples", "2", "--batch-size", "32"]}


@pytest.mark.parametrize("study", ["lesion", "paths"])
def test_study_into_a_folder_holding_an_earlier_one(study, good):
    first = runner.invoke(app, [study, "good", *STUDY_ARGS[study], "--out", "S"])
    assert first.exit_code == 0, first.output
    before = file_hashes(Path("S"))
    fail(study, "good", *STUDY_ARGS[study], "--out", "S", match=rf"S already holds a {study} study \(.*\); pass --overwrite")
    assert file_hashes(Path("S")) == before
    if study == "lesion":  # a stale CSV of a study not rerun must not survive --overwrite
        Path("S/lesion_swap.csv").write_text("run,kendall_tau,test_error\nold,1.0,0.5\n")
    again = runner.invoke(app, [study, "good", *STUDY_ARGS[study], "--out", "S", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert not Path("S/lesion_swap.csv").exists()


@pytest.mark.parametrize("study", ["lesion", "paths"])
def test_study_of_an_unfinished_run_needs_force(study, good):
    info = json.loads((good / "run_info.json").read_text())
    (good / "run_info.json").write_text(json.dumps({**info, "status": "interrupted"}))
    fail(study, "good", *STUDY_ARGS[study], "--out", "S",
         match=r"run good is not finished \(run_info.json says 'interrupted'\).*--force")
    forced = runner.invoke(app, [study, "good", *STUDY_ARGS[study], "--out", "S", "--force"])
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize("study", ["lesion", "paths"])
def test_study_on_another_dataset_needs_force(study, good):
    other = "synthetic:size=8,train=256,test=64,seed=1"
    fail(study, "good", "--data", other, *STUDY_ARGS[study], "--out", "S",
         match=r"run good was trained on synthetic:size=8,train=256,test=64, not .*seed=1.*--force")
    same = runner.invoke(app, [study, "good", "--data", "synthetic:test=64,size=8,train=256", *STUDY_ARGS[study],
                               "--out", "S"])
    assert same.exit_code == 0, same.output
    forced = runner.invoke(app, [study, "good", "--data", other, *STUDY_ARGS[study], "--out", "S2", "--force"])
    assert forced.exit_code == 0, forced.output


# --- plot: a broken CSV is named, with its problem, in one line ---------------------------------------------------

GOOD_BENCH = "model,method,batch_size,images_per_second\nresnet8,resx,32,1000.0\nresnet8,common-recipe,32,400.0\n"


@pytest.mark.parametrize("text, match", [
    ("", r"results/bench.csv: empty file"),
    (GOOD_BENCH[:-8], r"results/bench.csv: cut in the middle of row 2 \(3 of 4 fields\)"),
    (GOOD_BENCH.replace("1000.0", "fast"), r"results/bench.csv: column 'images_per_second' holds 'fast' \(row 1\), expected a number"),
    (GOOD_BENCH.replace("1000.0", "nan").replace("400.0", ""), r"column 'images_per_second' has no value in any row"),
])
def test_plot_names_a_broken_csv(text, match):
    Path("results").mkdir()
    Path("results/bench.csv").write_text(text)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")  # no numpy RuntimeWarning either
        fail("plot", "results", "--format", "png", match=match)


def test_plot_says_which_csv_had_no_rows():
    Path("results").mkdir()
    Path("results/bench.csv").write_text(GOOD_BENCH.splitlines()[0] + "\n")
    result = runner.invoke(app, ["plot", "results", "--format", "png"])
    assert result.exit_code == 0, result.output
    assert "note: results/bench.csv: a header but no rows" in result.output


# --- the command line itself ---------------------------------------------------------------------------------------


def test_resx_alone_shows_help_and_version():
    from resx import __version__

    result = runner.invoke(app, [])
    assert result.exit_code == 0 and "Usage" in result.output and "train" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"resx {__version__}"


def test_reproduce_help_lists_every_profile():
    result = runner.invoke(app, ["reproduce", "--help"], env={"COLUMNS": "200"})
    profiles = sorted(p.stem.removeprefix("reproduce-") for p in (REPO / "experiments").glob("reproduce-*.yaml"))
    assert "cpu" in profiles
    assert " | ".join(profiles) in result.output


def test_reproduce_says_how_to_pick_a_cpu_profile():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = fail("reproduce", "--profile", "quick", "--data", TINY_DATA, "--out", "r", match=r"needs a CUDA GPU")
    assert "--profile cpu" in line


def test_train_takes_the_recipe_options():
    result = runner.invoke(app, [*TRAIN, "--momentum", "0.5", "--weight-decay", "5e-4", "--lr-milestones", "0.3,0.6",
                                 "--no-augment", "--out", "run"])
    assert result.exit_code == 0, result.output
    import yaml

    saved = yaml.safe_load(Path("run/config.yaml").read_text())
    assert (saved["momentum"], saved["weight_decay"], saved["lr_milestones"], saved["augment"]) == (0.5, 0.0005, [0.3, 0.6], False)


def test_help_shows_no_type_tags():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "<str>" not in result.output and "<int>" not in result.output
    assert "INTEGER" in result.output  # the type of an option that takes a value is still shown


def test_tables_fit_80_columns():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 80
    rows = [line for line in result.output.splitlines() if line.strip().startswith("resnet20 ")]
    assert rows and "0.27M" in rows[0]


def test_sigterm_outside_training_stops_a_command_in_one_line(monkeypatch):
    """SIGTERM while a command does something other than train (here: plotting) ends it with exit 143 and one
    line, not silently; the process's own SIGTERM handler is back afterwards."""
    import resx.plots

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before the next line
        raise AssertionError("SIGTERM did not stop the command")

    Path("results").mkdir()
    monkeypatch.setattr(resx.plots, "plot_results", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = runner.invoke(app, ["plot", "results"])
    assert result.exit_code == 143 and "Traceback" not in result.output
    assert "stopped by SIGTERM" in error_line(result.output)
    assert signal.getsignal(signal.SIGTERM) is before
