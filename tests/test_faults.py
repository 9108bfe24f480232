"""Faults outside the user's control end in one line and a true status: a folder that cannot be written mid-run,
a test loss that is not finite."""

from __future__ import annotations

import errno
import json
from pathlib import Path

from typer.testing import CliRunner

import resx.atomic as atomic
from resx.cli import app
from resx.engine import read_checkpoint

TRAIN = ["train", "resnet8", "--data", "synthetic:size=8,train=128,test=32", "--epochs", "2", "--batch-size", "32",
         "--out", "run"]


def last_line(output: str) -> str:
    return " ".join(output.split()).split("error: ")[-1]


def test_a_folder_that_cannot_be_written_mid_run_fails_in_one_line(monkeypatch):
    real = atomic._write_atomic

    def disk_full_in_epoch_two(path, write):
        if path.name == "metrics.csv" and Path("run/checkpoint.pt").exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(atomic, "_write_atomic", disk_full_in_epoch_two)
    result = CliRunner().invoke(app, TRAIN)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot write run/metrics.csv: No space left on device (errno 28)" in last_line(result.output)
    info = json.loads(Path("run/run_info.json").read_text())
    assert info["status"] == "failed" and info["history"][-1]["status"] == "failed"
    assert read_checkpoint("run")["epoch"] == 1  # the last good checkpoint is kept
    assert not list(Path("run").glob(".*.tmp"))  # no half-written temporary file left behind


def test_a_test_loss_that_is_not_finite_ends_the_run_as_diverged(monkeypatch):
    from resx.engine.evaluate import Evaluator

    monkeypatch.setattr(Evaluator, "__call__", lambda self: (float("inf"), 0.9))
    result = CliRunner().invoke(app, TRAIN)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "test loss became NaN or infinite at epoch 1" in last_line(result.output)
    info = json.loads(Path("run/run_info.json").read_text())
    assert info["status"] == "diverged" and info["diverged_at"]["epoch"] == 1


def test_a_bad_dataset_is_refused_before_any_folder_or_worker(tmp_path):
    result = CliRunner().invoke(app, ["compare-plain", "--depths", "8", "--seeds", "1", "--data",
                                      f"imagefolder:{tmp_path / 'absent'}", "--epochs", "1", "--out", "grid"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().startswith("error: imagefolder path")  # no banner above the error
    assert not Path("grid").exists()


def test_resuming_a_finished_run_says_so_instead_of_a_speed():
    args = ["train", "resnet8", "--data", "synthetic:size=8,train=64,test=16", "--epochs", "1", "--batch-size", "32",
            "--out", "done"]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0 and "already finished (1 epoch, 2 iterations); nothing to train" in " ".join(again.output.split())
    assert "img/s" not in again.output
