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


def test_divergence_keeps_the_last_good_checkpoint(good):
    """Resume a good 1-epoch run with an absurd lr for a second epoch: epoch 2 diverges, epoch 1 is kept."""
    before = file_hashes(good)
    result = runner.invoke(app, [*TRAIN[:-4], "--epochs", "2", "--batch-size", "32", "--lr", "1e8", "--out", str(good),
                                 "--resume"])
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


def start_training(tmp_path: Path, out: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "resx", *LONG, "--out", out], env=subprocess_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(process: subprocess.Popen, metrics: Path, rows: int, timeout: float = 120) -> int:
    """Wait until metrics.csv holds at least `rows` rows; return how many it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"training ended early ({process.returncode}):\n{out}\n{err}")
        if metrics.exists():
            count = len(pd.read_csv(metrics))
            if count >= rows:
                return count
        time.sleep(0.05)
    process.kill()
    pytest.fail("training made no progress")


def check_metrics_file(metrics: Path) -> pd.DataFrame:
    """No duplicate, missing or half-written rows."""
    frame = pd.read_csv(metrics)
    assert frame["epoch"].tolist() == list(range(1, len(frame) + 1))
    assert not frame[RESULT_COLUMNS].isna().any().any()
    return frame


def test_killed_run_resumes_to_the_same_numbers(tmp_path, uninterrupted):
    process = start_training(tmp_path, "R")
    try:
        done = wait_for_rows(process, Path("R/metrics.csv"), 1)
        time.sleep(0.3)  # into the next epoch
        assert process.poll() is None, "finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    rows = len(check_metrics_file(Path("R/metrics.csv")))
    assert done <= rows < LONG_EPOCHS
    ckpt = read_checkpoint("R")
    assert ckpt["epoch"] >= rows - 1 >= 0  # at most the epoch in progress (and one being written) is lost

    result = runner.invoke(app, [*LONG, "--out", "R", "--resume"])
    assert result.exit_code == 0, result.output
    resumed = check_metrics_file(Path("R/metrics.csv"))
    pd.testing.assert_frame_equal(resumed[RESULT_COLUMNS], uninterrupted)
    assert json.loads(Path("R/run_info.json").read_text())["status"] == "finished"


def test_ctrl_c_saves_and_resumes_to_the_same_numbers(tmp_path, uninterrupted):
    process = start_training(tmp_path, "R")
    try:
        wait_for_rows(process, Path("R/metrics.csv"), 1)
        time.sleep(0.3)
        assert process.poll() is None, "finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, f"{out}\n{err}"
    assert "Traceback" not in out + err
    line = error_line(err)
    assert "interrupted" in line and "--resume" in line and "R" in line
    info = json.loads(Path("R/run_info.json").read_text())
    assert info["status"] == "interrupted"
    ckpt = read_checkpoint("R")
    # saved where it stopped: mid-epoch (cursor > 0) or, if Ctrl-C came during an evaluation, at the epoch's end
    assert ckpt["iteration"] == 32 * ckpt["epoch"] + ckpt["cursor"] > 32
    check_metrics_file(Path("R/metrics.csv"))

    result = runner.invoke(app, [*LONG, "--out", "R", "--resume"])
    assert result.exit_code == 0, result.output
    resumed = check_metrics_file(Path("R/metrics.csv"))
    pd.testing.assert_frame_equal(resumed[RESULT_COLUMNS], uninterrupted)


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
