"""`resx bench` on the CPU with a tiny model: bench.csv with the agreed columns, rotating rounds, the synthetic
fallback, the common recipe's worker count and the arithmetic it reports."""

import json
from pathlib import Path

import pandas as pd
import pytest
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


def test_bench_repeats_in_rotating_rounds_and_reports_median_and_spread():
    result = runner.invoke(app, ["bench", "--models", "resnet8", "--data", "synthetic:size=8,train=256,test=64",
                                 "--methods", "resx-eager-fp32,resx", "--seconds", "0.1", "--rounds", "3",
                                 "--batch-size", "32", "--device", "cpu", "--out", "bench"])
    assert result.exit_code == 0, result.output
    rounds = pd.read_csv("bench/bench_rounds.csv")
    assert len(rounds) == 6 and set(rounds["round"]) == {1, 2, 3}
    first = rounds[rounds["position"] == 1].sort_values("round")["method"].tolist()
    assert first == ["resx-eager-fp32", "resx", "resx-eager-fp32"]  # the order rotates: no method always first
    frame = pd.read_csv("bench/bench.csv").set_index("method")
    for method, group in rounds.groupby("method"):
        assert frame.loc[method, "images_per_second"] == pytest.approx(group["images_per_second"].median(), rel=1e-3)
        assert frame.loc[method, "images_per_second_min"] <= frame.loc[method, "images_per_second"] \
            <= frame.loc[method, "images_per_second_max"]
    assert (frame["gflops"] > 0).all() and (frame["fraction_of_peak"] > 0).all()
    info = json.loads(Path("bench/bench_info.json").read_text())
    assert info["peak_gflops"]["fp32"] > 0 and info["peak_gflops"]["bf16"] > 0


def test_bench_info_carries_the_provenance_block_and_the_report_says_so():
    """bench_info.json keeps its top-level environment fields and adds the provenance block; the report section
    says, right after its heading, which precisions, device and resx computed it."""
    from resx.studies.bench.report import bench_section

    result = runner.invoke(app, ["bench", "--models", "resnet8", "--data", "synthetic:size=8,train=256,test=64",
                                 "--methods", "resx-eager-fp32", "--seconds", "0.1", "--rounds", "1",
                                 "--batch-size", "32", "--device", "cpu", "--out", "bench"])
    assert result.exit_code == 0, result.output
    info = json.loads(Path("bench/bench_info.json").read_text())
    block = info["provenance"]
    assert block["precision"] == "fp32" and block["device"] == "cpu" and block["threads"] >= 1
    assert {"resx_version", "git_commit", "torch", "host", "time", "device_name"} <= set(block)
    assert {"torch", "device", "device_name", "threads", "data", "workers_trials"} <= set(info)  # kept at top level
    lines = bench_section(Path("bench"), Path("."), Path("."), several=False)
    assert lines[0].startswith("#") and lines[2].startswith("Computed in **fp32** on CPU")


def test_bench_without_a_dataset_falls_back_to_synthetic_images_and_says_so():
    """No --data and no CIFAR-10 on the machine (offline): CIFAR-shaped synthetic images, said plainly."""
    from resx.studies.bench.declare import SYNTHETIC_FALLBACK

    result = runner.invoke(app, ["bench", "--models", "resnet8", "--methods", "resx", "--seconds", "0.1",
                                 "--rounds", "1", "--batch-size", "32", "--device", "cpu", "--out", "bench"])
    assert result.exit_code == 0, result.output
    assert "cifar10 not found" in result.output and "synthetic" in result.output
    assert json.loads(Path("bench/bench_info.json").read_text())["data"] == SYNTHETIC_FALLBACK


def test_common_recipe_tries_worker_counts_and_reports_the_fastest():
    result = runner.invoke(app, ["bench", "--models", "resnet8", "--data", "synthetic:size=8,train=256,test=64",
                                 "--methods", "common-recipe", "--seconds", "0.1", "--rounds", "1",
                                 "--batch-size", "32", "--device", "cpu", "--out", "bench"])
    assert result.exit_code == 0, result.output
    trials = json.loads(Path("bench/bench_info.json").read_text())["workers_trials"]["resnet8"]
    assert set(trials) == {"0", "1", "2"}
    chosen = int(pd.read_csv("bench/bench.csv")["workers"].iloc[0])
    assert trials[str(chosen)] == max(trials.values())


def test_forward_macs_match_he_et_al():
    """He et al. 2015 count 40.8M multiply-accumulates for ResNet-20 on a 32x32 image (conv and fc layers)."""
    from resx.studies.bench.flops import forward_macs
    from resx.data import load_dataset

    data = load_dataset("synthetic:size=32,train=128,test=32", None)
    assert forward_macs("resnet20", data) == pytest.approx(40.8e6, rel=0.02)
