"""The approximation study (resx/studies/approximate/; Lin & Jegelka 2018): the one-neuron ResNet and the narrow nets on
2-D points, the tasks, the far-field check on nets whose answer is known, the model and task specs, the CLI's files,
resuming, the reproduce stage, and torch-free figures and report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from resx.errors import ResxError
from resx.models import create_model, get_model_spec, list_models
from resx.models.onenet import hidden_units
from resx.studies.approximate import compute
from resx.studies.approximate.declare import (COLUMNS, CURVE_COLUMNS, FIGURES, POINT_COLUMNS, REGION_COLUMNS, TASKS,
                                              TITLE, ApproximateSettings)
from resx.studies.approximate.farfield import class1_probability, decision_grid, far_field
from resx.studies.approximate.report import narrow_verdict, theory_lines
from resx.studies.approximate.specs import resolve_models, resolve_task, split_specs
from resx.studies.approximate.tasks import class_of, task_data

REPO = Path(__file__).resolve().parents[1]
TINY = ["--steps", "30", "--train-points", "40", "--test-points", "20", "--grid", "5", "--device", "cpu"]


def cli(*args: str):
    from resx.cli import app

    return CliRunner().invoke(app, list(args))


# --- the models ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3, 5])
def test_onenet_res_has_2d_plus_1_parameters_and_one_hidden_unit_per_block(d):
    net = create_model("onenet_res", depth=4, input_dim=d, num_classes=2)
    assert len(net.blocks) == 4 and net.residual
    for block in net.blocks:
        assert sum(p.numel() for p in block.parameters()) == 2 * d + 1  # U: d, b: 1, V: d
        assert block.branch[0].weight.shape == (1, d) and block.branch[0].bias.shape == (1,)
        assert block.branch[2].weight.shape == (d, 1) and block.branch[2].bias is None
    assert hidden_units(net) == [1, 1, 1, 1]
    assert net.num_parameters() == 4 * (2 * d + 1) + (d * 2 + 2)  # the blocks and the read-out
    info = net.block_info()
    assert [(i.residual, i.in_channels, i.out_channels, i.downsampling) for i in info] == [(True, d, d, False)] * 4
    x = torch.randn(7, d)
    # each block is x + V relu(U x + b)
    block = net.blocks[0]
    u, b, v = block.branch[0].weight, block.branch[0].bias, block.branch[2].weight
    torch.testing.assert_close(block(x), x + torch.relu(x @ u.T + b) @ v.T)
    assert net(x).shape == (7, 2)
    assert get_model_spec("onenet_res").family == "onenet" and "onenet_res" in list_models()


def test_onenet_res_takes_image_data_options_flattened():
    net = create_model("onenet_res", depth=2, in_channels=1, input_size=4, num_classes=3)
    assert net.blocks[0].in_channels == 16 and net(torch.randn(2, 1, 4, 4)).shape == (2, 3)


def test_onenet_res_refuses_a_depth_below_one():
    with pytest.raises(ResxError, match="at least 1"):
        create_model("onenet_res", depth=0)


@pytest.mark.parametrize("name", ["mlp_plain", "mlp_res"])
@pytest.mark.parametrize("width", [2, 3])  # d and d + 1
def test_mlps_take_2d_points_at_width_d_and_d_plus_1(name, width):
    net = create_model(name, depth=6, width=width, input_dim=2, num_classes=2)
    assert all(b.in_channels == width for b in net.blocks) and len(net.blocks) == 2
    net.train()
    out = net(torch.randn(8, 2))
    assert out.shape == (8, 2)
    out.sum().backward()
    # images still work as before (the input size from the data options)
    image_net = create_model(name, depth=4, width=width, in_channels=1, input_size=8, num_classes=3)
    assert image_net.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_resx_models_lists_the_one_neuron_resnet():
    result = cli("models")
    assert result.exit_code == 0, result.output
    assert "onenet_res" in result.output


# --- the tasks ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_makes_both_classes_seeded_and_reproducible(name):
    task = resolve_task(name)
    x, y, xt, yt = task_data(task, seed=3, train_points=200, test_points=101)
    assert x.shape == (200, 2) and xt.shape == (101, 2) and x.dtype == np.float32
    assert (y == 1).sum() == 100 and (y == 0).sum() == 100 and set(np.unique(yt)) == {0, 1}
    again = task_data(task, seed=3, train_points=200, test_points=101)
    for a, b in zip((x, y, xt, yt), again):
        np.testing.assert_array_equal(a, b)
    other = task_data(task, seed=4, train_points=200, test_points=101)
    assert not np.array_equal(x, other[0])
    assert np.abs(x).max() <= task.data_box + 1e-6 or name == "spiral"
    if name != "spiral":  # the true class of each point, where the task defines one
        np.testing.assert_array_equal(class_of(task, x.astype(np.float64)), y)


def test_ball_is_lin_and_jegelkas_disc_and_ring_with_options():
    task = resolve_task("ball")
    assert task.options == {"radius": 1.0, "ring_inner": 2.0, "ring_outer": 3.0}
    x, y, _, _ = task_data(task, 0, 400, 2)
    r = np.hypot(x[:, 0], x[:, 1])
    assert r[y == 1].max() <= 1 + 1e-6 and r[y == 0].min() >= 2 - 1e-6 and r[y == 0].max() <= 3 + 1e-6
    wide = resolve_task("ball:radius=0.5,ring_inner=1.5:ring_outer=4")
    assert wide.spec == "ball:radius=0.5:ring_inner=1.5:ring_outer=4"
    x, y, _, _ = task_data(wide, 0, 400, 2)
    assert np.hypot(x[y == 1, 0], x[y == 1, 1]).max() <= 0.5 + 1e-6


@pytest.mark.parametrize("spec, message", [
    ("torus", "unknown task 'torus'; allowed: ball, rings, spiral, checkerboard"),
    ("ball:width=2", "task 'ball' has no option 'width'; allowed: radius, ring_inner, ring_outer"),
    ("ball:radius=2.5", "needs 0 < radius < ring_inner < ring_outer"),
    ("rings:rings=1", "rings >= 2"),
    ("checkerboard:cells=2.5", "whole number"),
])
def test_bad_tasks_are_refused_in_one_line(spec, message):
    with pytest.raises(ResxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_task(spec)


# --- the far-field check on nets whose answer is known ---------------------------------------------------------------
def test_a_net_whose_readout_is_negative_everywhere_puts_nothing_far_in_class_1():
    net = create_model("onenet_res", depth=3, num_classes=2)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([1.0, -1.0]))  # logit_1 - logit_0 = -2 everywhere
    for f in far_field(net):
        assert f.share == 0.0 and f.margin_max == pytest.approx(-2.0)


def test_a_linear_classifier_through_the_origin_puts_half_of_every_circle_in_class_1():
    torch.manual_seed(0)
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.bias.zero_()
    for f in far_field(net):
        assert abs(f.share - 0.5) <= 2 / 720
        assert f.margin_max > 0
    # a single logit (the logistic model) reads the same way
    single = nn.Linear(2, 1)
    with torch.no_grad():
        single.bias.zero_()
    assert all(abs(f.share - 0.5) <= 2 / 720 for f in far_field(single))


class Strip(nn.Module):
    """Class 1 on a strip of half-width 0.02 along a direction between the search's angles: unbounded but thin."""

    def __init__(self, angle: float = 0.7 + 1e-4):
        super().__init__()
        self.normal = nn.Parameter(torch.tensor([-math.sin(angle), math.cos(angle)]), requires_grad=False)

    def forward(self, z):
        across = z @ self.normal
        margin = 0.02 - torch.relu(across) - torch.relu(-across)
        return torch.stack([torch.zeros_like(margin), margin], dim=1)


def test_a_thin_unbounded_strip_is_found_by_the_margin_search_though_its_share_is_tiny():
    for f in far_field(Strip()):
        assert f.share <= 2 / 720
        assert f.margin_max > 0, f.radius  # class 1 reaches every circle


def test_decision_grid_and_probability():
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        net.bias.zero_()
    x, y, p = decision_grid(net, 2.0, 5)
    assert len(x) == len(y) == len(p) == 25 and x[:5].tolist() == [-2, -1, 0, 1, 2] and y[:5].tolist() == [-2] * 5
    torch.testing.assert_close(p, torch.sigmoid(x).to(p.dtype))
    assert class1_probability(net, torch.tensor([[0.0, 3.0]])).item() == pytest.approx(0.5)


# --- the model specs ------------------------------------------------------------------------------------------------
def test_model_specs_resolve_with_options_and_continuations():
    choices = resolve_models("onenet_res,mlp_plain:width=2,mlp_plain:width=3,mlp_res:width=3,stochastic_depth=0.8")
    assert [c.label for c in choices] == ["onenet_res", "mlp_plain:width=2", "mlp_plain:width=3",
                                          "mlp_res:stochastic_depth=0.8:width=3"]
    assert [c.width for c in choices] == [1, 2, 3, 3]
    assert choices[1].hidden_layers(5) == 11 and choices[0].hidden_layers(5) == 5
    assert len(choices[1].build(5).blocks) == 5 and len(choices[0].build(5).blocks) == 5
    assert split_specs("a, b:x=1", "model") == ["a", "b:x=1"]


@pytest.mark.parametrize("models, message", [
    ("resnet20", "unknown model 'resnet20' for approximate (it takes 2-D points); allowed: onenet_res, mlp_plain"),
    ("mlp_plain:depth=4", "model 'mlp_plain' has no option 'depth' (its depth comes from --depths); allowed: width"),
    ("onenet_res:width=2", "model 'onenet_res' has no option 'width'; allowed: none"),
    ("mlp_plain:width=0", "width must be positive"),
    ("width=2", "has no model before it"),
])
def test_bad_model_specs_are_refused_in_one_line_naming_the_allowed(models, message, tmp_path):
    with pytest.raises(ResxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_models(models)
    result = cli("approximate", "--models", models, "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # refused before anything is written
    assert len(result.output.strip().splitlines()) <= 3  # one line (wrapped at 80 columns at most)


# --- the CLI, its files and resuming ----------------------------------------------------------------------------------
def test_cli_writes_the_files_with_their_columns(tmp_path):
    out = tmp_path / "o"
    result = cli("approximate", "--task", "ball", "--models", "onenet_res,mlp_plain:width=2", "--depths", "1,2",
                 "--seeds", "2", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "approximation.csv")
    assert tuple(frame.columns[:len(COLUMNS)]) == COLUMNS
    assert {"far_class1_share_r5", "far_class1_share_r50", "far_class1_share_r500", "far_margin_max_r500",
            "label", "hidden_layers"} <= set(frame.columns)
    assert len(frame) == 8 and set(frame["seed"]) == {0, 1} and set(frame["depth"]) == {1, 2}
    assert (frame["far_class1_share"] == frame["far_class1_share_r500"]).all()
    assert frame["train_accuracy"].between(0, 1).all() and frame["far_class1_share"].between(0, 1).all()
    onenet = frame[frame["model"] == "onenet_res"]
    assert onenet["params"].tolist() == [5 * 1 + 6, 5 * 2 + 6] * 2 and (onenet["width"] == 1).all()
    regions = pd.read_csv(out / "approximation_regions.csv.gz")
    assert tuple(regions.columns[:len(REGION_COLUMNS)]) == REGION_COLUMNS
    assert len(regions) == 4 * 25 and set(regions["seed"]) == {0}  # the first seed only
    points = pd.read_csv(out / "approximation_points.csv")
    assert tuple(points.columns) == POINT_COLUMNS and len(points) == 60
    assert tuple(pd.read_csv(out / "approximation_curves.csv").columns[:len(CURVE_COLUMNS)]) == CURVE_COLUMNS
    info = json.loads((out / "approximation_info.json").read_text())
    assert info["provenance"]["precision"] == "fp32" and info["recipe"]["batch"].startswith("full batch")
    assert "largest radius (500)" in info["far_class1_share"] and info["seeds"] == [0, 1]
    for stem in FIGURES:
        assert (out / f"{stem}.png").is_file(), stem
    # the compressed grid: the same rows give the same bytes (no timestamp inside), and a damaged file is named
    from resx.atomic import write_csv_atomic

    before = (out / "approximation_regions.csv.gz").read_bytes()
    write_csv_atomic(tmp_path / "again.csv.gz", pd.read_csv(out / "approximation_regions.csv.gz"))
    assert (tmp_path / "again.csv.gz").read_bytes() == before
    (out / "approximation_regions.csv.gz").write_bytes(before[: len(before) // 2])
    result = cli("plot", str(out), "--format", "png")
    assert result.exit_code != 0 and "approximation_regions.csv.gz: not a readable gzip file" in result.output


def test_rerunning_skips_done_nets_and_refuses_other_settings(tmp_path, monkeypatch):
    out = tmp_path / "o"
    common = dict(seeds=1, steps=20, train_points=30, test_points=10, grid=3, device="cpu", out=out)
    compute.run_approximate("ball", "onenet_res", "1", **common)
    first = pd.read_csv(out / "approximation.csv")
    calls = []
    measure = compute.measure
    monkeypatch.setattr(compute, "measure", lambda *a, **k: calls.append(a[:3]) or measure(*a, **k))
    lines = []
    result = compute.run_approximate("ball", "onenet_res", "1,2", say=lines.append, **common)
    assert [(c.label, d, s) for c, d, s in calls] == [("onenet_res", 2, 0)]  # depth 1 was done
    assert any("1 of 2 nets already done" in line for line in lines)
    again = pd.read_csv(out / "approximation.csv")
    pd.testing.assert_frame_equal(again.iloc[:1], first)  # the done row untouched
    assert len(result.frame) == 2 and len(pd.read_csv(out / "approximation_regions.csv.gz")) == 2 * 9
    calls.clear()
    compute.run_approximate("ball", "onenet_res", "1,2", **common)
    assert calls == []
    with pytest.raises(ResxError, match=r"other settings \(steps 20 there, 25 now\).*--overwrite"):
        compute.run_approximate("ball", "onenet_res", "1", **{**common, "steps": 25})
    compute.run_approximate("ball", "onenet_res", "1", overwrite=True, **{**common, "steps": 25})
    assert pd.read_csv(out / "approximation.csv")["steps"].tolist() == [25]


def test_a_row_written_twice_is_replaced_not_duplicated(tmp_path):
    from resx.studies.approximate.store import ApproximateStore

    store = ApproximateStore(tmp_path, {"steps": 1}, overwrite=False)
    store.check()
    row = {c: 0 for c in COLUMNS} | {"label": "onenet_res", "depth": 1, "seed": 0}
    curve = pd.DataFrame([{"task": "ball", "label": "onenet_res", "depth": 1, "seed": 0, "step": 1, "loss": 0.5}])
    store.add(row, None, curve, {"settings": {"steps": 1}})
    store.add({**row, "params": 7}, None, curve, {"settings": {"steps": 1}})
    assert pd.read_csv(tmp_path / "approximation.csv")["params"].tolist() == [7]
    assert len(pd.read_csv(tmp_path / "approximation_curves.csv")) == 1


# --- the report's verdicts ------------------------------------------------------------------------------------------
def _rows(shares, accuracies, margins):
    return pd.DataFrame({"task": "ball", "model": "mlp_plain", "label": "mlp_plain:width=2", "width": 2,
                         "depth": range(1, len(shares) + 1), "seed": 0, "train_accuracy": accuracies,
                         "train_class1_share": shares, "majority_share": 0.5, "far_margin_max_r500": margins})


def test_the_narrow_verdict_follows_the_csv():
    constant = _rows([0.0, 1.0], [0.5, 0.5], [-1.0, 1.0])
    assert "shows the claim" in narrow_verdict(constant)[0] and "NOT" not in narrow_verdict(constant)[0]
    learnt = _rows([0.0, 0.6], [0.5, 0.9], [-1.0, 1.0])
    assert "does NOT show the claim" in narrow_verdict(learnt)[0] and "depth(s) 2" in narrow_verdict(learnt)[0]
    lines = theory_lines(learnt)
    assert any("in 1 of 1, as the theorem demands" in line for line in lines)


# --- reproduce, figures and report without torch --------------------------------------------------------------------
def test_reproduce_runs_the_study_from_a_profile(tmp_path):
    from resx.reproduce import reproduce

    profile = tmp_path / "reproduce-approx.yaml"
    profile.write_text(textwrap.dedent("""
        reproduce: {studies: [approximate], requires_gpu: false, notes: "a tiny approximate profile"}
        approximate: {models: "onenet_res,mlp_plain:width=2", depths: "1", seeds: 1, steps: 5, train_points: 20,
                      test_points: 10, grid: 5}
        """))
    report = reproduce(str(profile), out=tmp_path / "r", device="cpu", say=lambda _: None)
    text = report.read_text()
    assert TITLE in text and "mlp_plain:width=2" in text
    assert len(pd.read_csv(tmp_path / "r" / "approximate" / "approximation.csv")) == 2


def test_the_shipped_profile_names_the_study_and_valid_settings():
    from resx.config import read_experiment

    sections = read_experiment(REPO / "experiments" / "reproduce-cpu-approximation.yaml")
    assert sections["reproduce"]["studies"] == ["approximate"] and sections["reproduce"]["requires_gpu"] is False
    settings = ApproximateSettings(**sections["approximate"])
    assert settings.task == "ball" and settings.seeds == 5
    resolve_models(settings.models)


def test_figures_and_report_need_no_torch(tmp_path):
    out = tmp_path / "o"
    compute.run_approximate("rings", "onenet_res,mlp_plain:width=2", "1,2", 2, steps=10, train_points=30,
                            test_points=10, grid=5, device="cpu", out=out)
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from resx.studies.approximate.draw import plot_approximate
        from resx.studies.approximate.report import approximate_section
        written = plot_approximate({str(out)!r}, formats=("png", "svg"))
        assert len(written) == 8, written
        lines = approximate_section(Path({str(out)!r}), Path({str(tmp_path)!r}), Path({str(tmp_path)!r}), False)
        assert any("mlp_plain:width=2" in line for line in lines)
        heavy = sorted(m for m in ("torch", "typer", "rich") if m in sys.modules)
        assert not heavy, heavy
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
