"""Issue #4: `resx bench` runs on the CPU with a tiny model and writes bench.csv with the agreed columns."""

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from resx.cli import app

runner = CliRunner()


def test_bench_on_the_cpu_writes_the_csv():
    result = runner.invoke(app, ["bench", "--models", "resnet8", "--data", "synthetic:size=16,train=256,test=64",
                                 "--seconds", "0.2", "--workers", "0", "--concurrency", "2", "--batch-size", "32",
                                 "--device", "cpu", "--out", "bench"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv("bench/bench.csv")
    assert {"model", "method", "batch_size", "images_per_second", "peak_memory_mb"} <= set(frame.columns)
    assert frame["method"].tolist() == ["common-recipe", "resx-eager-fp32", "resx", "resx-concurrent"]
    assert (frame["images_per_second"] > 0).all()
    assert Path("bench/bench.png").exists()


def test_bench_rejects_unknown_names():
    result = runner.invoke(app, ["bench", "--models", "resnet9", "--data", "synthetic", "--out", "b"])
    assert result.exit_code != 0 and "unknown model" in result.output
    result = runner.invoke(app, ["bench", "--models", "resnet8", "--methods", "fast", "--data", "synthetic", "--out", "b"])
    assert result.exit_code != 0 and "unknown bench method" in result.output
