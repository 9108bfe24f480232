"""The CPU engine: channels_last and bf16 on the CPU, the per-iteration training curve, CPU grids in worker
processes, zero-initialised residual branches, and the cpu-cifar reproduce profile."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from resx.cli import app
from resx.config import resolve_config
from resx.data import load_dataset
from resx.engine import train
from resx.engine.run_folder import CURVE_COLUMNS
from resx.engine.step import TrainStep
from resx.models import create_model

runner = CliRunner()
TINY = "synthetic:size=8,train=256,test=64"


def tiny(**changes):
    values = dict(model="resnet8", data=TINY, epochs=2, batch_size=32, device="cpu", seed=0)
    values.update(changes)
    return resolve_config(None, values)


# --- channels_last and bf16 ----------------------------------------------------------------------------------------
def _one_step(channels_last: bool, precision: str) -> tuple[float, list[torch.Tensor]]:
    torch.manual_seed(0)
    data = load_dataset(TINY, None)
    net = create_model("resnet8", **data.model_options)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    step = TrainStep(net.train(), data, batch_size=32, momentum=0.9, weight_decay=1e-4, lr=0.1, precision=precision,
                     augment=True, device=torch.device("cpu"), seed=0)
    step.channels_last = channels_last
    step.start_epoch()
    for _ in range(2):
        step()
    return float(step.state.loss_sum), [p.detach().clone().contiguous() for p in net.parameters()]


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("bf16", 3e-2)])
def test_channels_last_step_matches_the_default_layout(precision, tolerance):
    loss_cl, params_cl = _one_step(True, precision)
    loss, params = _one_step(False, precision)
    assert abs(loss_cl - loss) <= tolerance * abs(loss)
    for a, b in zip(params_cl, params):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)


def test_bf16_keeps_weights_and_optimizer_in_fp32():
    run = train(tiny(epochs=1, precision="bf16"), "run")
    assert all(p.dtype == torch.float32 for p in run.net.parameters())
    assert all(b.dtype == torch.float32 for b in run.step.state.momentum_buffers)
    assert run.net.blocks[0].branch[1].running_mean.dtype == torch.float32


# --- iterations.csv: the training curve of He et al. Fig. 6 against iterations ----------------------------------
def test_iteration_curve_columns_rows_and_window():
    train(tiny(epochs=2, curve_every=3, curve_window=4), "run")  # 8 batches per epoch, 16 in all
    curve = pd.read_csv("run/iterations.csv")
    assert list(curve.columns) == CURVE_COLUMNS
    assert curve["iteration"].tolist() == [3, 6, 9, 12, 15, 16]  # every 3rd, and the last
    assert curve["window"].tolist() == [3, 4, 4, 4, 4, 4]
    assert curve["epoch"].tolist() == [1, 1, 2, 2, 2, 2]
    assert curve["train_error"].between(0, 1).all() and (curve["train_loss"] > 0).all()


def test_iteration_curve_agrees_with_the_epoch_rows():
    """With a window of one epoch, the curve at each epoch's end is metrics.csv's train_error and train_loss."""
    train(tiny(epochs=2, curve_every=1, curve_window=8), "run")
    curve = pd.read_csv("run/iterations.csv").set_index("iteration")
    metrics = pd.read_csv("run/metrics.csv")
    assert len(curve) == 16
    for row in metrics.itertuples():
        assert curve.loc[row.iteration, "train_error"] == pytest.approx(row.train_error, abs=1e-6)
        assert curve.loc[row.iteration, "train_loss"] == pytest.approx(row.train_loss, rel=1e-4)
        assert curve.loc[row.iteration, "lr"] == row.lr_end


def test_grid_merges_the_iteration_curves():
    result = runner.invoke(app, ["compare-plain", "--depths", "8", "--seeds", "1", "--data", TINY, "--epochs", "1",
                                 "--batch-size", "32", "--device", "cpu", "--concurrency", "1", "--out", "grid"])
    assert result.exit_code == 0, result.output
    merged = pd.read_csv("grid/iteration_curves.csv")
    assert set(merged["model"]) == {"plain8", "resnet8"}
    assert {"residual", "depth", "seed", "iteration", "train_error", "finished"} <= set(merged.columns)


# --- CPU grids in worker processes ------------------------------------------------------------------------------
def test_grid_in_worker_processes_equals_the_grid_in_one_process():
    base = ["compare-plain", "--depths", "8", "--seeds", "1", "--data", TINY, "--epochs", "2", "--batch-size", "32",
            "--device", "cpu"]
    assert runner.invoke(app, [*base, "--concurrency", "2", "--out", "pool"]).exit_code == 0
    assert runner.invoke(app, [*base, "--concurrency", "1", "--out", "serial"]).exit_code == 0
    cols = ["model", "epoch", "train_loss", "train_error", "test_error"]
    pool = pd.read_csv("pool/curves.csv").sort_values(cols[:2]).reset_index(drop=True)[cols]
    serial = pd.read_csv("serial/curves.csv").sort_values(cols[:2]).reset_index(drop=True)[cols]
    pd.testing.assert_frame_equal(pool, serial)
    info = json.loads(Path("pool/grid_info.json").read_text())
    assert info["concurrency"] == 2 and info["threads_per_run"] >= 1


def test_a_failing_run_in_a_worker_is_one_error_line():
    result = runner.invoke(app, ["compare-plain", "--depths", "8", "--seeds", "1", "--data", TINY, "--epochs", "2",
                                 "--batch-size", "32", "--device", "cpu", "--concurrency", "2", "--lr", "1e9",
                                 "--out", "bad"])
    assert result.exit_code == 1
    assert "NaN or infinite" in result.output and "Traceback" not in result.output


# --- zero-initialised residual branches -----------------------------------------------------------------------
def test_zero_init_residual_starts_every_block_as_its_shortcut():
    torch.manual_seed(0)
    net = create_model("resnet8", zero_init_residual=True, input_size=8).eval()
    x = torch.randn(4, 16, 8, 8)
    block = net.blocks[0]
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))  # relu(0 + x): the branch adds nothing
    mlp = create_model("mlp_res", depth=6, zero_init_residual=True, in_channels=1, input_size=4).eval()
    h = torch.randn(3, 128)
    with torch.no_grad():
        torch.testing.assert_close(mlp.blocks[1](h), torch.relu(h))


def test_zero_init_residual_is_refused_for_a_plain_net_and_dropped_for_plain_twins():
    result = runner.invoke(app, ["train", "plain8", "--data", TINY, "--epochs", "1", "--device", "cpu", "--out", "p"])
    assert result.exit_code == 0
    from resx.errors import ResxError

    with pytest.raises(ResxError, match="zero_init_residual needs residual blocks"):
        create_model("plain8", zero_init_residual=True)
    from resx.studies.degradation.grid import plan_grid

    runs = plan_grid(tiny(zero_init_residual=True), depths=[8])
    assert {r.model: r.config.zero_init_residual for r in runs} == {"plain8": None, "resnet8": True}


# --- reproduce PROFILE=cpu-cifar --------------------------------------------------------------------------------
def test_cpu_cifar_profile_runs_end_to_end_on_a_stand_in_dataset():
    result = runner.invoke(app, ["reproduce", "--profile", "cpu-cifar", "--data", TINY, "--out", "results"])
    assert result.exit_code == 0, result.output
    for f in ("degradation/summary.csv", "degradation/iteration_curves.csv", "lesion/lesion_single.csv",
              "lesion/lesion_delete_k.csv", "lesion/lesion_swap.csv", "paths/path_gradients.csv",
              "paths/block_gradients.csv", "REPORT.md", "reproduce.json"):
        assert Path("results", f).exists(), f
    lesioned = set(pd.read_csv("results/lesion/lesion_single.csv")["run"])
    assert len(lesioned) == 2  # the grid's ResNet-56 and plain-56, nothing trained twice
    assert not Path("results/runs").exists()
    info = json.loads(Path("results/reproduce.json").read_text())
    assert info["profile"] == "cpu-cifar"
    summary = pd.read_csv("results/degradation/summary.csv")
    assert set(summary["model"]) == {"plain20", "plain56", "resnet20", "resnet56"}
    config = json.loads(json.dumps(__import__("yaml").safe_load(
        Path("results/degradation/resnet56-seed0/config.yaml").read_text())))
    assert config["warmup_lr"] == 0.01 and config["epochs"] == 20


def test_reproduce_and_demo_take_a_seed():
    result = runner.invoke(app, ["reproduce", "--profile", "tiny", "--seed", "3", "--out", "results"])
    assert result.exit_code == 0, result.output
    assert Path("results/degradation/resnet8-seed3/metrics.csv").exists()
    from resx.studies import demo

    seen = {}
    original = demo.compare_plain
    demo.compare_plain = lambda options, **kw: seen.setdefault("seed", options.train.seed)
    try:
        demo.run_demo("d", data=TINY, seed=5, say=lambda _m: None)
    finally:
        demo.compare_plain = original
    assert seen["seed"] == 5
