"""ResNeXt (Xie et al. 2017) and DenseNet (Huang et al. 2017): parameter counts against the papers, tiny forward
passes, lesions through the lesion study's entry point, the path study (ResNeXt analysed, DenseNet refused), the
budget builder and the MAC counter. CPU, tiny nets; the big nets are built on the meta device only."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from resx.errors import ResxError
from resx.models import create_model, get_model_spec, list_models
from resx.models.budget import count_macs, model_budget, resnext_for_budget
from resx.models.densenet import DenseLayer

TINY = "synthetic:size=8,train=64,test=32"
TINY_RESNEXT = "resnext11_2x2d_w16"  # 1 block per stage, stem 4, stages 16/32/64, bottlenecks 4/8/16
TINY_DENSENET = ("densenet10", dict(growth_rate=4))  # 2 layers per dense block


def meta_params(name: str) -> int:
    with torch.device("meta"):
        return create_model(name).num_parameters()


# --- parameter counts (10 classes) against the papers ----------------------------------------------------------------
@pytest.mark.parametrize("name, paper, tolerance", [
    ("resnext29_8x64d", 34.4e6, 0.01),  # Xie et al. 2017, Table 7
    ("resnext29_16x64d", 68.1e6, 0.01),
    ("densenet40", 1.0e6, 0.02),  # Huang et al. 2017, Table 2
])
def test_parameter_counts_match_the_papers(name, paper, tolerance):
    assert abs(meta_params(name) / paper - 1) < tolerance


def test_densenet_bc100_count():
    """769,162 (the authors' Torch code and public PyTorch reproductions: 0.77M); the paper rounds it to 0.8M."""
    count = meta_params("densenet_bc100")
    assert count == 769_162 and f"{count / 1e6:.1f}" == "0.8"


def test_names_and_families():
    names = set(list_models())
    assert {"resnext29_8x64d", "resnext29_16x64d", "densenet40", "densenet_bc100"} <= names
    assert get_model_spec("resnext29_8x64d").family == "resnext" and "Xie" in get_model_spec("resnext29_8x64d").description
    assert get_model_spec("densenet40").family == "densenet" and "Huang" in get_model_spec("densenet40").description
    assert get_model_spec("resnext38_4x16d").depth == 38 and get_model_spec("densenet_bc40").depth == 40
    for bad, allowed in (("resnext30_8x64d", "9n\\+2"), ("densenet41", "3n\\+4"), ("resnext29_8x64d_w30", "multiple of 4")):
        with pytest.raises(ResxError, match=allowed):
            get_model_spec(bad)


# --- tiny nets: forward, lesion ---------------------------------------------------------------------------------------
def tiny(name: str, options: dict | None = None) -> nn.Module:
    torch.manual_seed(0)
    net = create_model(name, **(options or {}))
    with torch.no_grad():  # non-trivial BN statistics
        net.train()(torch.randn(8, 3, 32, 32))
    return net.eval()


@pytest.mark.parametrize("name, options", [(TINY_RESNEXT, {}), TINY_DENSENET, ("densenet_bc10", dict(growth_rate=4))])
def test_tiny_forward_and_deleting_every_block(name, options):
    net = tiny(name, options)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = net(x)
        assert full.shape == (2, 10) and torch.isfinite(full).all()
        for i in range(len(net.blocks)):
            out = net.forward_with(x, deleted={i})
            assert out.shape == full.shape and not torch.equal(out, full)


def test_a_deleted_dense_layer_leaves_its_slot_zero():
    """concat(x, H(x)) becomes concat(x, 0): the layer's k maps are zero, the rest is unchanged."""
    net = tiny(*TINY_DENSENET)
    layer = net.blocks[1]
    assert isinstance(layer, DenseLayer) and not layer.downsampling
    start, k = layer.branch.read, layer.branch.growth
    h = net.blocks[0](net.stem(torch.randn(2, 3, 32, 32)))
    with torch.no_grad():
        kept, deleted = layer(h), layer.forward_deleted(h)
    assert torch.equal(deleted, h) and (h[:, start : start + k] == 0).all()
    assert torch.equal(kept[:, :start], h[:, :start]) and kept[:, start : start + k].abs().sum() > 0


def test_lesion_evaluator_deletes_blocks_of_both_families():
    from resx.data import load_dataset
    from resx.studies.lesion.evaluator import LesionEvaluator
    from resx.studies.lesion.plans import deletable_blocks, deletion_plan, intact_plan, swappable_pairs

    data = load_dataset(TINY)
    for name, options in ((TINY_RESNEXT, {}), TINY_DENSENET):
        net = create_model(name, **options, **data.model_options).eval()
        ev = LesionEvaluator(net, data.test_images, data.test_labels, data.mean, data.std, device=torch.device("cpu"))
        n = len(net.blocks)
        baseline = ev.logits(intact_plan(n))
        lesioned = ev.logits(deletion_plan(n, [1]))  # resnext11: a stage-opening block (its projection stays)
        assert lesioned.shape == baseline.shape and not torch.equal(lesioned, baseline)
    assert deletable_blocks(net) == [0, 1, 3, 5] and swappable_pairs(net) == [(0, 1)]  # densenet10: 2 transitions


# --- the studies through their CLI ------------------------------------------------------------------------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from resx.cli import app

    return CliRunner().invoke(app, list(args))


def test_lesion_and_paths_on_trained_tiny_nets(tmp_path):
    from resx.config import TrainConfig
    from resx.engine import train

    for name in (TINY_RESNEXT, "densenet7"):
        train(TrainConfig(model=name, data=TINY, epochs=1, batch_size=32, device="cpu"), tmp_path / name)
    result = cli("lesion", str(tmp_path / TINY_RESNEXT), str(tmp_path / "densenet7"), "--studies", "single",
                 "--device", "cpu", "--out", str(tmp_path / "lesion"))
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "lesion" / "lesion_info.json").read_text())
    assert [r["blocks"] for r in info["runs"]] == [3, 3]
    refused = cli("paths", str(tmp_path / "densenet7"), "--data", TINY, "--device", "cpu", "--out", str(tmp_path / "p"))
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "concatenate" in refused.output and "no shortcut-or-branch paths" in refused.output


def test_paths_analyses_a_resnext_and_refuses_a_densenet(tmp_path):
    result = cli("paths", "--model", TINY_RESNEXT, "--data", TINY, "--samples", "2", "--device", "cpu",
                 "--batch-size", "16", "--out", str(tmp_path / "paths"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "paths" / "paths_info.json").read_text())["blocks"] == 3
    refused = cli("paths", "--model", "densenet40", "--data", TINY)
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "densenet40 is a DenseNet: its layers concatenate new features" in refused.output


# --- budgets -----------------------------------------------------------------------------------------------------------
def test_count_macs_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    by_hand = 8 * 8 * 8 * 3 * 9 + 4 * 4 * 8 * 2 * 9 + 8 * 5
    assert count_macs(net, (3, 8, 8)) == by_hand
    # ResNet-20 (option A): stem, 6 convs at 32x32 (16 ch), then 6 at 16x16 (32) and 8x8 (64), the first from half
    stages = sum(hw * hw * c * c * 9 * 6 - hw * hw * c * (c // 2) * 9 * (hw != 32) for hw, c in ((32, 16), (16, 32), (8, 64)))
    assert model_budget("resnet20")[1] == 32 * 32 * 16 * 3 * 9 + stages + 64 * 10 == 40_551_040


@pytest.mark.parametrize("cardinality", [1, 2, 4, 8])
def test_budget_resnexts_match_resnet20(cardinality):
    """Nearest count over integer group widths d: within 10% of the budget (resnet20: 0.27M; resnet56's matches,
    at 56 layers, are within 6%: see the report of resx.models.budget's docstring)."""
    match = resnext_for_budget("resnet20", cardinality)
    assert match.name.startswith(f"resnext20_{cardinality}x") and match.name.endswith("d_w64")
    assert match.budget == 269_722 and abs(match.relative_error) < 0.10
    assert meta_params(match.name) == match.params
    for d in (match.group_width - 1, match.group_width + 1):  # the neighbours are no closer
        if d >= 1:
            other = meta_params(f"resnext20_{cardinality}x{d}d_w64")
            assert abs(other - match.budget) >= abs(match.params - match.budget)
