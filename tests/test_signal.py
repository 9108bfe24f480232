"""The signal study (resx/studies/signal/): a^l on deep linear nets, the matrix-free Jacobian estimates against
explicit Jacobians, the files, the CLI on a tiny trained run, and torch-free figures and report."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from resx.models import ResidualBlock, create_model
from resx.models.blocks import PadShortcut, basic_branch, mlp_branch, preact_basic_branch
from resx.models.linear import expected_gain
from resx.studies.signal.compute import run_signal
from resx.studies.signal.declare import JACOBIAN_COLUMNS, LAYER_COLUMNS
from resx.studies.signal.jacobians import identity_distance, jacobian_spectrum, LinearisedMap
from resx.studies.signal.layers import layer_signals

TINY = "synthetic:size=8,train=256,test=64"


# --- a^l on deep linear nets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("a", [0.5, 1.0, 1.5])
def test_deep_linear_net_scales_signal_and_gradient_by_a_to_the_l(a):
    net = create_model("linear_plain", depth=50, scale=a).double()
    x = torch.randn(32, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(1))
    frame = layer_signals(net, x, y)
    blocks = frame[frame["kind"] == "block"].sort_values("block")
    forward = blocks["activation_rms"].iloc[-1] / blocks["input_rms"].iloc[0]
    backward = blocks["grad_input_rms"].iloc[0] / blocks["grad_output_rms"].iloc[-1]
    assert a**50 == pytest.approx(expected_gain(a, 50, residual=False), rel=1e-15)
    assert forward == pytest.approx(a**50, rel=1e-12)
    assert backward == pytest.approx(a**50, rel=1e-12)
    # a^50 for a = 0.5 and 1.5
    assert {0.5: 8.881784197001252e-16, 1.0: 1.0, 1.5: 6.376215e8}[a] == pytest.approx(forward, rel=1e-7)


def test_run_signal_compares_linear_nets_with_the_exact_factor():
    result = run_signal(model="linear_plain", depths=[50], scale=[0.5, 1.5], samples=16, jacobian_examples=2,
                        lanczos_steps=4, probes=4, out=None, say=lambda _: None)
    linear = result.linear.set_index("run")
    assert set(linear.index) == {"linear_plain50-a0.5-init", "linear_res50-a0.5-init", "linear_plain50-a1.5-init",
                                 "linear_res50-a1.5-init"}
    for run, row in linear.iterrows():
        exact = row["scale"] ** 50 if not row["residual"] else (1 + row["scale"] / 50) ** 50
        assert row["expected"] == pytest.approx(exact, rel=1e-14)
        for column in ("forward_gain", "gradient_gain", "sigma_max", "sigma_min_est"):
            assert row[column] == pytest.approx(exact, rel=1e-12), (run, column)
    info = result.info
    assert info["data"] == "gaussian" and "fp64" in info["precision"] and len(info["linear"]) == 4
    jac = result.jacobians
    plain = jac[jac["run"] == "linear_plain50-a0.5-init"]
    assert plain["sigma_max"].tolist() == pytest.approx([0.5] * 50)
    res = jac[jac["run"] == "linear_res50-a0.5-init"]
    assert res["sigma_max"].tolist() == pytest.approx([1.01] * 50)
    assert res["dist_identity"].tolist() == pytest.approx([0.01] * 50, rel=0.5)  # Hutchinson, 4 probes x 2 examples


# --- the Jacobian estimates against explicit Jacobians ---------------------------------------------------------------
def explicit(block: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Per example: the SVD of the Jacobian built by torch.autograd.functional.jacobian; meaned as the study does."""
    sigma_max, sigma_min, dist = [], [], []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda z: block(z[None])[0], xi)
        jac = jac.reshape(block(xi[None])[0].numel(), xi.numel())
        s = torch.linalg.svdvals(jac)
        sigma_max.append(float(s[0]))
        sigma_min.append(float(s[-1]))
        if jac.shape[0] == jac.shape[1]:
            dist.append(float((jac - torch.eye(jac.shape[0], dtype=jac.dtype)).pow(2).sum() / jac.shape[0]))
    return dict(sigma_max=sum(sigma_max) / len(x), sigma_min_est=sum(sigma_min) / len(x),
                dist_identity=math.sqrt(sum(dist) / len(dist)) if dist else float("nan"))


def random_batchnorm(block: nn.Module) -> nn.Module:
    """Eval mode with running statistics that are not (0, 1), so BN is part of the Jacobian."""
    torch.manual_seed(3)
    for m in block.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return block.double().eval().requires_grad_(False)


def tiny_blocks():
    torch.manual_seed(0)
    mlp = ResidualBlock(mlp_branch(8), nn.Identity(), in_channels=8, out_channels=8, stride=1, post_activation=True,
                        stage=0)
    conv = ResidualBlock(preact_basic_branch(2, 2, 1), nn.Identity(), in_channels=2, out_channels=2, stride=1,
                         post_activation=False, stage=0)
    down = ResidualBlock(basic_branch(2, 4, 2), PadShortcut(2, 4, 2), in_channels=2, out_channels=4, stride=2,
                         post_activation=True, stage=1)
    return {"mlp width 8": (mlp, (8,)), "pre-activation conv 2x3x3": (conv, (2, 3, 3)),
            "downsampling conv 2x4x4 -> 4x2x2": (down, (2, 4, 4))}


@pytest.mark.parametrize("name", list(tiny_blocks()))
def test_jacobian_estimate_equals_the_svd_of_the_explicit_jacobian(name):
    block, shape = tiny_blocks()[name]
    block = random_batchnorm(block)
    x = torch.randn(3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dim = math.prod(shape)
    # steps >= the Gram matrix's size and probes >= dim: the estimates are exact
    got = jacobian_spectrum(block, x, steps=dim, probes=dim)
    want = explicit(block, x)
    assert got["sigma_max"] == pytest.approx(want["sigma_max"], rel=1e-8)
    assert got["sigma_min_est"] == pytest.approx(want["sigma_min_est"], rel=1e-6, abs=1e-8)
    if got["downsampling"]:
        assert math.isnan(got["dist_identity"]) and got["gram_side"] == "output"
    else:
        assert got["dist_exact"] and got["dist_identity"] == pytest.approx(want["dist_identity"], rel=1e-10)
    # fewer steps: sigma_max from below, sigma_min_est from above (Ritz values lie inside the spectrum)
    few = jacobian_spectrum(block, x, steps=3, probes=dim)
    assert few["sigma_max"] <= want["sigma_max"] * (1 + 1e-10)
    assert few["sigma_min_est"] >= want["sigma_min_est"] * (1 - 1e-10)


def test_hutchinson_estimate_with_random_probes():
    torch.manual_seed(0)
    layer = nn.Linear(64, 64, bias=False).double().requires_grad_(False)
    x = torch.randn(32, 64, dtype=torch.float64)
    dist, exact = identity_distance(LinearisedMap(layer, x), probes=8, generator=torch.Generator().manual_seed(2))
    want = float((layer.weight - torch.eye(64, dtype=torch.float64)).pow(2).sum().div(64).sqrt())
    assert not exact and dist == pytest.approx(want, rel=0.05)


def test_residual_block_with_a_zeroed_branch_is_the_identity():
    torch.manual_seed(0)
    for block, shape in ((ResidualBlock(nn.Sequential(nn.Linear(16, 16, bias=False)), nn.Identity(), in_channels=16,
                                        out_channels=16, stride=1, post_activation=False, stage=0), (16,)),
                         (ResidualBlock(preact_basic_branch(3, 3, 1), nn.Identity(), in_channels=3, out_channels=3,
                                        stride=1, post_activation=False, stage=0), (3, 4, 4))):
        last = [m for m in block.branch.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
        nn.init.zeros_(last.weight)
        block.eval().requires_grad_(False)
        got = jacobian_spectrum(block, torch.randn(4, *shape), steps=10, probes=4)
        assert got["sigma_max"] == pytest.approx(1.0, abs=1e-6)
        assert got["sigma_min_est"] == pytest.approx(1.0, abs=1e-6)
        assert got["dist_identity"] == 0.0 and got["lanczos_steps"] == 1  # the Krylov space closes at once


# --- files, CLI, plots and report --------------------------------------------------------------------------------
@pytest.fixture
def tiny_run(tmp_path):
    """A resnet8 trained for one iteration, with one earlier checkpoint in checkpoints/ (as `--save-every` writes)."""
    from resx.config import TrainConfig
    from resx.engine import train

    run = tmp_path / "runs" / "resnet8"
    train(TrainConfig(model="resnet8", data=TINY, iterations=1, batch_size=32, device="cpu", graph=False,
                      eval_batch_size=64), run)
    earlier = torch.load(run / "checkpoint.pt", weights_only=True)
    earlier["epoch"] = 0
    (run / "checkpoints").mkdir()
    torch.save(earlier, run / "checkpoints" / "epoch-000.pt")
    return run


def cli(*args: str):
    import typer
    from typer.testing import CliRunner

    from resx.studies.signal.command import signal_command

    app = typer.Typer()
    app.command("signal")(signal_command())
    return CliRunner().invoke(app, list(args))


def test_cli_on_a_tiny_trained_run(tiny_run, tmp_path):
    out = tmp_path / "signal"
    result = cli(str(tiny_run), "--samples", "32", "--jacobian-examples", "2", "--lanczos-steps", "5",
                 "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    layers, jacobians = pd.read_csv(out / "signal_layers.csv"), pd.read_csv(out / "block_jacobians.csv")
    assert tuple(layers.columns[:len(LAYER_COLUMNS)]) == LAYER_COLUMNS
    assert tuple(jacobians.columns[:len(JACOBIAN_COLUMNS)]) == JACOBIAN_COLUMNS
    states = layers.groupby(["run", "checkpoint"])[["residual", "trained"]].first()
    assert set(states.index) == {("resnet8", "checkpoint.pt"), ("resnet8", "checkpoints/epoch-000.pt"),
                                 ("resnet8-init", "init"), ("plain8-init", "init")}
    assert states.loc[("resnet8", "checkpoint.pt"), "trained"] and not states.loc[("plain8-init", "init"), "residual"]
    # 8 weighted layers (6n+2) and 3 blocks per net; the downsampling blocks have no distance from the identity
    one = layers[(layers["run"] == "plain8-init")]
    assert (one["kind"] == "conv").sum() == 7 and (one["kind"] == "linear").sum() == 1 and (one["kind"] == "block").sum() == 3
    assert one["index"].dropna().astype(int).tolist()[:8] == list(range(1, 9))
    assert (layers[layers["kind"] != "block"]["grad_weight_rms"] > 0).all()
    assert jacobians.groupby("run").size().to_dict() == {"resnet8": 6, "resnet8-init": 3, "plain8-init": 3}
    assert jacobians[jacobians["downsampling"]]["dist_identity"].isna().all()
    assert jacobians[~jacobians["downsampling"]]["dist_identity"].notna().all()
    info = json.loads((out / "signal_info.json").read_text())
    assert info["precision"] == "fp32" and info["device"] == "cpu" and info["seconds"] > 0
    assert info["provenance"]["precision"] == "fp32" and info["provenance"]["device"] == "cpu"
    assert len(info["whole_net"]) == 4 and all(w["sigma_max"] > 0 for w in info["whole_net"])
    assert {p.name for p in out.glob("*.png")} == {"signal_layers.png", "signal_blocks.png", "block_jacobians.png"}
    assert "gradient gain" in result.output

    # the figures and the report section from the CSVs alone, without torch
    code = (
        "import sys; from pathlib import Path; from resx.studies.signal.draw import plot_signal; "
        "from resx.studies.signal.report import signal_section; "
        f"written = plot_signal(Path({str(out)!r}), formats=('svg',)); "
        f"lines = signal_section(Path({str(out)!r}), Path({str(tmp_path)!r}), Path({str(tmp_path)!r}), False); "
        "assert len(written) == 3, written; assert any('classic arguments claim' in l for l in lines), lines; "
        "assert lines[2].startswith('Computed in **fp32** on CPU'), lines[:3]; "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr

    again = cli(str(tiny_run), "--out", str(out), "--device", "cpu")
    assert again.exit_code != 0 and "already holds a signal study" in again.output and "Traceback" not in again.output


@pytest.mark.parametrize("args, message", [
    (("--model", "linear_plain", "--scale", "half"), "--scale takes numbers"),
    (("--model", "linear_plain", "--depths", "0"), "positive"),
    (("--model", "resnet", "--depths", "21"), "6n+2"),
    (("--model", "resnet8", "--scale", "0.5"), "for the linear nets"),
    (("--model", "linear_plain", "--init-scheme", "zeros"), "unknown init"),
    ((), "--model NAME"),
])
def test_cli_user_errors_in_one_line(args, message, tmp_path):
    result = cli(*args, "--samples", "8", "--device", "cpu", "--data", TINY, "--out", str(tmp_path / "o"))
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one message (rich may wrap it)


def test_reproduce_stage_without_trained_twins(tmp_path, monkeypatch):
    """The stage analyses the grid's twins (here none trained: their models at initialisation) and the linear nets."""
    from types import SimpleNamespace

    import resx.studies.signal.draw

    monkeypatch.setattr(resx.studies.signal.draw, "plot_signal", lambda folder: [])  # figures: tested above, and slow

    from resx.studies.registry import StageContext
    from resx.studies.signal.declare import SignalSettings
    from resx.studies.signal.study import signal_stage

    said: list[str] = []
    ctx = StageContext(profile=tmp_path / "p.yaml", train=SimpleNamespace(seed=0, data=TINY, data_dir=None),
                       device="cpu", out=tmp_path / "repro", reproduce=SimpleNamespace(twin_models=["resnet8", "plain8"]),
                       deep_runs={}, settings=SignalSettings(samples=16, jacobian_examples=2, lanczos_steps=3, probes=2,
                                                             linear_depth=10, linear_scales=[0.5]),
                       say=said.append)
    signal_stage(ctx)
    runs = set(pd.read_csv(tmp_path / "repro" / "signal" / "signal_layers.csv")["run"])
    assert runs == {"resnet8-init", "plain8-init"} and any("no trained run" in line for line in said)
    linear = json.loads((tmp_path / "repro" / "signal" / "linear" / "signal_info.json").read_text())["linear"]
    assert {row["run"] for row in linear} == {"linear_plain10-a0.5-init", "linear_res10-a0.5-init"}


@pytest.mark.parametrize("args, option", [(("--batch-size", "1"), "--batch-size"), (("--samples", "1"), "--samples")])
def test_batch_of_one_with_batchnorm_is_refused_before_the_earlier_study_goes(args, option, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    earlier = out / "signal_layers.csv"
    earlier.write_text("run\nx\n")
    result = cli("--model", "mlp_res", "--depths", "4", "--samples", "8", *args, "--device", "cpu", "--data", TINY,
                 "--out", str(out), "--overwrite")
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert f"{option} must be at least 2" in result.output and len(result.output.strip().splitlines()) <= 3
    assert earlier.exists()  # the check came first: the earlier study is still there


def test_twins_and_labels_come_from_the_shared_helpers():
    from resx.studies.signal.nets import fresh_entries

    entries = fresh_entries([("resnet8", {}), ("preresnet20", {})], {"resnet8-init"})
    assert [e.run for e in entries] == ["resnet8-init-2", "plain8-init", "preresnet20-init", "plain20-init"]
