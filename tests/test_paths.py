"""The path study (Veit et al. 2016, §5): gradient gates against Jacobians computed by hand, the distributions,
the window, the files, and the CLI."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from resx.models import BlockNet, ResidualBlock
from resx.studies.common import analysis_mode
from resx.studies.paths.declare import (
    BLOCK_COLUMNS,
    DISTRIBUTION_COLUMNS,
    GRADIENT_COLUMNS,
    TOTAL_COLUMNS,
    effective_window,
)
from resx.studies.paths.path_gradients import (
    PathBackward,
    path_distribution,
    path_gradients,
    path_input_gradient,
    random_branch_masks,
    total_gradient,
)

TINY = "synthetic:size=8,train=256,test=64"
FILES = {
    "path_distribution.csv": DISTRIBUTION_COLUMNS,
    "path_gradients.csv": GRADIENT_COLUMNS,
    "path_total_gradient.csv": TOTAL_COLUMNS,
    "block_gradients.csv": BLOCK_COLUMNS,
}


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("RESX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RESX_NO_DOWNLOAD", "1")
    monkeypatch.chdir(tmp_path)


def linear_net(n: int = 4, width: int = 5, classes: int = 3, seed: int = 0) -> BlockNet:
    """Blocks y = x + W_i x, nothing after the addition: the path decomposition is exact linear algebra."""
    torch.manual_seed(seed)
    blocks = [
        ResidualBlock(nn.Sequential(nn.Linear(width, width, bias=False)), nn.Identity(), in_channels=width,
                      out_channels=width, stride=1, post_activation=False, stage=0)
        for _ in range(n)
    ]
    for block in blocks:
        nn.init.normal_(block.branch[0].weight, std=0.6 / math.sqrt(width))
    net = BlockNet(nn.Identity(), blocks, nn.Linear(width, classes)).double()
    net.model_name = "linear"
    return net


def loss_gradient_at_output(net: BlockNet, h0: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        h = h0
        for block in net.blocks:
            h = block(h)
    h = h.requires_grad_(True)
    loss = nn.functional.cross_entropy(net.head(h), labels, reduction="sum")
    return torch.autograd.grad(loss, h)[0]


def path_jacobian(net: BlockNet, subset: set[int]) -> torch.Tensor:
    """prod over blocks, in order, of (W_i if i is in the path else I): d h_n / d h_0 along that path."""
    width = net.blocks[0].branch[0].weight.shape[0]
    jac = torch.eye(width, dtype=torch.float64)
    for i, block in enumerate(net.blocks):
        jac = (block.branch[0].weight.detach() if i in subset else torch.eye(width, dtype=torch.float64)) @ jac
    return jac


def masks_for(subset: set[int], n: int, batch: int) -> torch.Tensor:
    m = torch.zeros(n, batch, dtype=torch.float64)
    m[sorted(subset)] = 1.0
    return m


def test_routed_backward_equals_the_product_of_the_chosen_jacobians():
    n, batch = 4, 6
    net = linear_net(n)
    h0 = torch.randn(batch, 5, dtype=torch.float64)
    labels = torch.randint(0, 3, (batch,))
    g_out = loss_gradient_at_output(net, h0, labels)
    for subset in ({0, 2}, set(), {0, 1, 2, 3}, {3}):
        routed = path_input_gradient(net, h0, labels, masks_for(subset, n, batch))
        torch.testing.assert_close(routed, g_out @ path_jacobian(net, subset))


def test_all_paths_sum_to_the_true_gradient():
    n, batch = 5, 4
    net = linear_net(n)
    h0 = torch.randn(batch, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (batch,))
    true = torch.autograd.grad(nn.functional.cross_entropy(net(h0), labels, reduction="sum"), h0)[0]
    with analysis_mode(net):
        backward = PathBackward(net, h0.detach(), labels)  # one forward, 2^n routed backward passes
        total = sum(backward(masks_for(set(s), n, batch))
                    for k in range(n + 1) for s in itertools.combinations(range(n), k))
    torch.testing.assert_close(total, true)


def test_per_example_masks_equal_one_mask_at_a_time():
    n, batch = 5, 8
    net = linear_net(n, seed=1)
    h0 = torch.randn(batch, 5, dtype=torch.float64)
    labels = torch.randint(0, 3, (batch,))
    ks = torch.tensor([0, 1, 2, 3, 4, 5, 2, 3])
    masks = random_branch_masks(ks, n, torch.Generator().manual_seed(0)).double()
    assert masks.shape == (n, batch) and masks.sum(0).long().tolist() == ks.tolist()
    together = path_input_gradient(net, h0, labels, masks)
    for b in range(batch):
        alone = path_input_gradient(net, h0, labels, masks[:, b:b + 1].expand(n, batch).contiguous())
        torch.testing.assert_close(together[b], alone[b])


@pytest.mark.parametrize("name", ["resnet8", "preresnet8"])
def test_conv_nets_forward_unchanged_and_paths_sum_to_the_true_gradient(name):
    """Real blocks (BN, ReLU, downsampling shortcuts, post- and pre-activation): the backward pass is linear in
    the gradient, so routing by m and 1 - m splits it exactly at every block and the 2^n routed gradients sum
    to the true one (for post-activation blocks too: the ReLU's mask is fixed by the forward pass)."""
    from resx.models import create_model

    torch.manual_seed(0)
    net = create_model(name, num_classes=4, in_channels=3).double().eval()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    labels = torch.tensor([0, 1, 3])
    h0 = net.stem(x).detach().requires_grad_(True)
    h = h0
    for block in net.blocks:
        h = block(h)
    true = torch.autograd.grad(nn.functional.cross_entropy(net.head(h), labels, reduction="sum"), h0)[0]
    n = len(net.blocks)
    with analysis_mode(net):
        backward = PathBackward(net, h0.detach(), labels)
        torch.testing.assert_close(backward.h_last, h.detach())
        total = sum(backward(masks_for(set(s), n, 3)) for k in range(n + 1) for s in itertools.combinations(range(n), k))
    torch.testing.assert_close(total, true)


def test_path_distribution_is_exact_and_stays_finite():
    d = path_distribution(4)
    assert list(d.columns) == list(DISTRIBUTION_COLUMNS)
    assert d["paths"].tolist() == [1, 4, 6, 4, 1]
    np.testing.assert_allclose(d["fraction"], [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16])
    big = path_distribution(500)
    assert big["paths"].iloc[250] == math.comb(500, 250)
    assert np.isfinite(big["fraction"]).all()
    assert big["fraction"].sum() == pytest.approx(1.0, abs=1e-9)
    # Veit et al. 2016: for n = 54, more than 95% of paths go through 19 to 35 blocks.
    assert path_distribution(54)["fraction"].iloc[19:36].sum() > 0.95


def test_effective_window_on_hand_made_distributions():
    def window(shares, mass):  # path lengths 0..n-1, as the study's path_total_gradient.csv has them
        return effective_window(range(len(shares)), shares, mass)[:2]

    assert window([0.01, 0.02, 0.5, 0.3, 0.1, 0.05, 0.02], 0.9) == (2, 4)
    assert window([0, 0, 1, 0], 0.9) == (2, 2)
    assert window([0, 0.5, 0.5, 0], 1.0) == (1, 2)
    assert window([2, 2, 6], 0.5) == (2, 2)  # unnormalised input is fine
    with pytest.raises(ValueError):
        window([0, 0], 0.9)


def test_one_effective_window_for_the_study_and_the_figures():
    from resx.studies.paths import compute, declare, draw, report

    assert draw.effective_window is compute.effective_window is report.effective_window is declare.effective_window
    assert draw.distribution_centre is report.distribution_centre is declare.distribution_centre


def test_total_gradient_is_binomial_times_mean():
    gradients = pd.DataFrame({"k": [0, 1, 2, 3], "samples": [5] * 4, "grad_norm_mean": [1.0, 0.5, 0.25, 0.0],
                              "grad_norm_std": [0.0] * 4})
    total = total_gradient(gradients)
    assert list(total.columns) == list(TOTAL_COLUMNS)
    np.testing.assert_allclose(total["total"], [1.0, 1.5, 0.75, 0.0])
    np.testing.assert_allclose(total["fraction"], np.array([1.0, 1.5, 0.75, 0.0]) / 3.25)


def test_path_gradients_counts_every_k_and_repeats_for_a_seed():
    net = linear_net(4)
    images = torch.randn(7, 5, dtype=torch.float64)  # chunks of 3: uneven on purpose
    labels = torch.randint(0, 3, (7,))
    run = lambda: path_gradients(net, images, labels, 6, torch.Generator().manual_seed(3), batch_size=3)  # noqa: E731
    a, b = run(), run()
    assert list(a.columns) == list(GRADIENT_COLUMNS)
    assert a["k"].tolist() == [0, 1, 2, 3, 4] and a["samples"].tolist() == [6] * 5
    pd.testing.assert_frame_equal(a, b)
    # k = 0: the gradient flows through the shortcuts only, so it is the output gradient itself for every subset.
    assert a["grad_norm_std"].iloc[0] < a["grad_norm_mean"].iloc[0]


# --- the command line ------------------------------------------------------------------------------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from resx.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_end_to_end_writes_the_four_csvs(tmp_path):
    out = tmp_path / "paths"
    result = cli("paths", "--model", "resnet8", "--data", TINY, "--samples", "20", "--device", "cpu",
                 "--batch-size", "64", "--out", str(out))
    assert result.exit_code == 0, result.output
    for name, columns in FILES.items():
        frame = pd.read_csv(out / name)
        assert list(frame.columns) == list(columns), name
    gradients = pd.read_csv(out / "path_gradients.csv")
    assert gradients["k"].tolist() == [0, 1, 2, 3] and (gradients["samples"] == 20).all()
    blocks = pd.read_csv(out / "block_gradients.csv")
    assert set(blocks["run"]) == {"resnet8-init", "plain8-init"}
    info = json.loads((out / "paths_info.json").read_text())
    assert info["blocks"] == 3 and info["samples"] == 20 and info["post_activation"] is True
    assert "Veit" in info["note"] and info["seconds"] > 0
    assert "post-activation" in result.output
    # the provenance block: the study computes in fp32 (TF32 only on CUDA), and the report says so
    assert info["provenance"]["precision"] == info["precision"] == "fp32"
    assert info["provenance"]["device"] == "cpu" and "torch" in info["provenance"]
    from resx.studies.paths.report import paths_section

    section = paths_section(out, tmp_path, tmp_path, several=False)
    assert section[2].startswith("Computed in **fp32** on CPU"), section[:3]


def test_cli_rejects_a_plain_net_in_one_line():
    result = cli("paths", "--model", "plain20", "--data", TINY)
    assert result.exit_code != 0
    assert "plain20 has no shortcuts: the path analysis needs a residual net" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    ((), "--model NAME"),
    (("--model", "nosuchnet", "--data", TINY), "unknown model"),
    (("--model", "resnet8", "--data", TINY, "--samples", "0"), "at least 1"),
    (("no/such/run",), "not found"),
])
def test_cli_user_errors(args, message):
    result = cli("paths", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


@pytest.fixture
def trained_twins(tmp_path):
    from resx.config import TrainConfig
    from resx.engine import train

    runs = {}
    for name in ("resnet8", "plain8"):
        config = TrainConfig(model=name, data=TINY, iterations=1, batch_size=32, device="cpu", graph=False,
                             eval_batch_size=64)
        runs[name] = tmp_path / "runs" / name
        train(config, runs[name])
    return runs


def test_cli_with_trained_twins(trained_twins, tmp_path):
    out = tmp_path / "out"
    # The plain net first: the path analysis takes the first residual net, the plain one gets block gradients.
    result = cli("paths", str(trained_twins["plain8"]), str(trained_twins["resnet8"]), "--samples", "5",
                 "--batch-size", "32", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    info = json.loads((out / "paths_info.json").read_text())
    assert info["model"] == "resnet8" and info["trained"] is True and info["data"] == TINY
    blocks = pd.read_csv(out / "block_gradients.csv")
    runs = blocks.groupby("run")[["residual", "trained"]].first()
    assert runs.loc["plain8", "trained"] and not runs.loc["plain8", "residual"]
    assert runs.loc["resnet8", "trained"] and runs.loc["resnet8", "residual"]
    assert not runs.loc["resnet8-init", "trained"] and not runs.loc["plain8-init", "residual"]

    alone = cli("paths", str(trained_twins["plain8"]), "--out", str(out))
    assert alone.exit_code != 0 and "plain8 has no shortcuts" in alone.output and "Traceback" not in alone.output


def test_the_same_run_twice_gets_a_numbered_label(trained_twins):
    from resx.studies.paths.compute import run_paths

    twice = [trained_twins["resnet8"], trained_twins["resnet8"] / "checkpoint.pt"]
    result = run_paths(twice, samples=2, batch_size=32, device="cpu", out=None)
    assert list(dict.fromkeys(result.block_gradients["run"])) == ["resnet8", "resnet8-2", "resnet8-init", "plain8-init"]


def test_every_residual_net_given_gets_its_pair_at_initialisation(trained_twins, tmp_path):
    """A trained deep net analysed beside trained twins of another depth: block gradients at init for both pairs,
    so each trained pair has its own init pair (Veit's 110 beside He's 56 twins in `make reproduce`)."""
    from resx.config import TrainConfig
    from resx.engine import train

    deep = tmp_path / "runs" / "preresnet14"
    train(TrainConfig(model="preresnet14", data=TINY, iterations=1, batch_size=32, device="cpu", graph=False,
                      eval_batch_size=64), deep)
    out = tmp_path / "out"
    result = cli("paths", str(deep), str(trained_twins["resnet8"]), str(trained_twins["plain8"]), "--samples", "2",
                 "--batch-size", "32", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    runs = set(pd.read_csv(out / "block_gradients.csv")["run"])
    assert {"preresnet14-init", "plain14-init", "resnet8-init", "plain8-init"} <= runs
    assert json.loads((out / "paths_info.json").read_text())["model"] == "preresnet14"


def test_batchnorm_calibration_refuses_a_batch_of_one_in_one_line():
    from resx.errors import ResxError
    from resx.models import create_model
    from resx.studies.common import calibrate_batchnorm

    net = create_model("mlp_res", num_classes=10, in_channels=3, input_size=8, depth=4)
    with pytest.raises(ResxError, match="batches of at least 2 images, got a batch of 1"):
        calibrate_batchnorm(net, torch.randn(1, 3, 8, 8))
    calibrate_batchnorm(net, torch.randn(5, 3, 8, 8), batch_size=2)  # the last single image joins the batch before
    assert not net.training


def test_cli_refuses_a_batch_of_one_before_the_earlier_study_goes(tmp_path):
    out = tmp_path / "paths"
    out.mkdir()
    (out / "path_gradients.csv").write_text("k\n0\n")
    result = cli("paths", "--model", "mlp_res", "--data", TINY, "--samples", "2", "--batch-size", "1", "--device",
                 "cpu", "--out", str(out), "--overwrite")
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert "--batch-size must be at least 2" in result.output
    assert (out / "path_gradients.csv").exists()
