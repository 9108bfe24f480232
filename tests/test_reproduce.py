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
    assert again.output.count("skipped") >= 6  # every stage but the report, which is redrawn
    assert Path("results/lesion/lesion_single.csv").stat().st_mtime_ns == stamp


def test_gpu_profiles_are_refused_on_the_cpu():
    with pytest.raises(ResxError, match="needs a CUDA GPU.*make demo"):
        reproduce("paper", device="cpu")
    result = runner.invoke(app, ["reproduce", "--profile", "quick", "--device", "cpu"])
    assert result.exit_code != 0 and "make demo" in result.output and "Traceback" not in result.output


def test_unknown_profile():
    result = runner.invoke(app, ["reproduce", "--profile", "huge"])
    assert result.exit_code != 0 and "unknown profile" in result.output
