"""The `resx` command line through Typer's CliRunner (and one subprocess, for what importing costs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from resx.cli import app
from resx.models import list_models

from conftest import TINY_DATA

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "models"):
        assert command in result.output


def test_no_arguments_shows_help():
    result = invoke()
    assert "Usage" in result.output and "train" in result.output


def test_train_help_lists_the_options():
    result = invoke("train", "--help")
    assert result.exit_code == 0
    for option in ("--data", "--epochs", "--lr", "--batch-size", "--out", "--resume", "--overwrite", "--config",
                   "--device", "--seed"):
        assert option in result.output


def test_models_lists_every_model():
    result = invoke("models")
    assert result.exit_code == 0, result.output
    for name in list_models():
        assert name in result.output
    assert "0.27M" in result.output and "19.42M" in result.output  # resnet20 and resnet1202, He et al. Table 6


def test_train_writes_the_run_folder():
    result = invoke("train", "resnet8", "--data", TINY_DATA, "--epochs", "1", "--batch-size", "32", "--out", "run")
    assert result.exit_code == 0, result.output
    assert {"config.yaml", "metrics.csv", "checkpoint.pt", "run_info.json"} <= {p.name for p in Path("run").iterdir()}
    metrics = pd.read_csv("run/metrics.csv")
    assert metrics["epoch"].tolist() == [1] and metrics["iteration"].tolist() == [8]
    config = yaml.safe_load(Path("run/config.yaml").read_text())
    assert (config["model"], config["data"], config["epochs"], config["batch_size"]) == ("resnet8", TINY_DATA, 1, 32)
    assert "test err" in result.output and "results in run" in result.output


def test_train_default_run_folder():
    result = invoke("train", "resnet8", "--data", TINY_DATA, "--epochs", "1", "--batch-size", "64", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert (Path("runs") / "resnet8-seed2" / "metrics.csv").exists()


def test_train_with_yaml_config_and_override(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"model: plain8\ndata: '{TINY_DATA}'\nepochs: 2\nbatch_size: 64\nlr: 0.05\n")
    result = invoke("train", "plain8", "--config", str(config), "--lr", "0.02", "--out", "run")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load(Path("run/config.yaml").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["lr"]) == (2, 64, 0.02)
    assert len(pd.read_csv("run/metrics.csv")) == 2


def test_train_resume_and_overwrite():
    args = ["train", "resnet8", "--data", TINY_DATA, "--batch-size", "64", "--out", "run"]
    assert invoke(*args, "--epochs", "1").exit_code == 0
    # a longer run continues from the checkpoint of the shorter one
    result = invoke(*args, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    assert pd.read_csv("run/metrics.csv")["epoch"].tolist() == [1, 2]
    result = invoke(*args, "--epochs", "1", "--overwrite")
    assert result.exit_code == 0, result.output
    assert pd.read_csv("run/metrics.csv")["epoch"].tolist() == [1]
    result = invoke(*args, "--epochs", "1", "--overwrite", "--resume")
    assert result.exit_code != 0 and "exclude each other" in result.output


def test_train_mlp_options():
    result = invoke("train", "mlp_res", "--data", "synthetic:size=8,train=64,test=16,channels=1", "--depth", "6",
                    "--width", "16", "--epochs", "1", "--batch-size", "32", "--out", "run")
    assert result.exit_code == 0, result.output
    info = json.loads(Path("run/run_info.json").read_text())
    assert info["blocks"] == 2


def test_help_does_not_import_torch():
    """`resx --help` must start fast: torch is imported only inside the commands that compute."""
    code = ("import sys; from typer.testing import CliRunner; from resx.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'pandas', 'numpy') if m in sys.modules); "
            "assert not heavy, heavy")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_plot_and_report_commands_do_not_import_torch(tmp_path):
    """`resx plot` and `resx report` work from the CSVs alone: every study's figures and report section load
    without torch."""
    from test_plots import write_example_results

    results = write_example_results(tmp_path / "results")
    code = ("import sys; from typer.testing import CliRunner; from resx.cli import app; "
            f"r = CliRunner().invoke(app, ['plot', {str(results)!r}, '--format', 'png']); assert r.exit_code == 0, r.output; "
            f"r = CliRunner().invoke(app, ['report', {str(results)!r}]); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout


def test_python_dash_m_resx():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "resx", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "train" in result.stdout


def test_engine_options_are_accepted_and_validated(tmp_path):
    """Issue #4: --no-graph and --precision are accepted (the CPU path is eager fp32 whatever they say) and checked."""
    from resx.cli import app as cli_app

    base = ["train", "resnet8", "--data", "synthetic:size=8,train=128,test=32", "--epochs", "1", "--batch-size", "32"]
    ok = CliRunner().invoke(cli_app, [*base, "--no-graph", "--precision", "fp32", "--out", "eager"])
    assert ok.exit_code == 0, ok.output
    info = json.loads((tmp_path / "eager" / "run_info.json").read_text())
    assert info["precision"] == "fp32" and info["cuda_graph"] is False
    bf16 = CliRunner().invoke(cli_app, [*base, "--precision", "bf16", "--out", "bf16"])
    assert bf16.exit_code == 0, bf16.output  # bf16 autocast also runs on the CPU
    bad = CliRunner().invoke(cli_app, [*base, "--precision", "fp8", "--out", "bad"])
    assert bad.exit_code != 0 and "unknown precision 'fp8'; allowed: auto, fp32, bf16" in bad.output


def test_without_a_terminal_training_prints_one_line_per_epoch():
    """Under nohup or SLURM (stdout is no terminal) a run says each epoch as it ends; --log-every and --quiet thin it."""
    base = ["train", "resnet8", "--data", "synthetic:size=8,train=128,test=32", "--epochs", "3", "--batch-size", "32"]
    result = invoke(*base, "--out", "every")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("every: epoch")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all(" train " in line and " test " in line and " lr " in line and "img/s" in line and " eta " in line
               for line in lines)
    thinned = invoke(*base, "--out", "thin", "--log-every", "2")
    assert [line.split()[2] for line in thinned.output.splitlines() if line.startswith("thin: epoch")] == ["2/3", "3/3"]
    quiet = invoke(*base, "--out", "quiet", "--quiet")
    assert quiet.exit_code == 0 and "quiet: epoch" not in quiet.output
    bad = invoke(*base, "--out", "bad", "--log-every", "0")
    assert bad.exit_code == 1 and "--log-every must be at least 1, got 0" in bad.output
