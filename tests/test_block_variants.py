"""Shortcut and activation-placement variants of He et al. 2016, "Identity Mappings in Deep Residual Networks":
Table 1 (`shortcut`: scale-L, frozen-gate-L, exclusive-gate[-bN], shortcut-gate[-bN], conv1x1, dropout-P) and Table 2 /
Fig. 4 (`block`: original, bn-after-add, relu-before-add, relu-only-preact, full-preact), on tiny nets (CPU).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from typer.testing import CliRunner

from resx.cli import app
from resx.config import TrainConfig, resolve_config
from resx.errors import ResxError
from resx.models import create_model, get_model_spec
from resx.models.shortcuts import GatedShortcut, PadShortcut
from resx.models.variants import BLOCK_NAMES, SHORTCUT_FORMS, parse_shortcut, split_model_name

SHORTCUTS = ["A", "B", "identity", "scale-0", "scale-0.5", "frozen-gate-0.5", "exclusive-gate", "exclusive-gate-b0",
             "shortcut-gate", "shortcut-gate-b6", "conv1x1", "dropout-0.5"]
NETS = {"resnet8": (dict(num_classes=3), (3, 8, 8)),
        "mlp_res": (dict(depth=6, width=8, in_channels=1, input_size=4, num_classes=3), (1, 4, 4))}


def build(name: str, **options):
    base, shape = NETS[name]
    torch.manual_seed(0)
    return create_model(name, **base, **options), shape


def one_step(net, shape) -> tuple[float, float]:
    """Loss before and after one SGD step on a tiny batch (training mode)."""
    torch.manual_seed(1)
    x, y = torch.randn(8, *shape), torch.randint(0, 3, (8,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    opt.step()
    with torch.no_grad():
        after = F.cross_entropy(net(x), y)
    return float(loss.detach()), float(after)


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("variant", [("shortcut", s) for s in SHORTCUTS] + [("block", b) for b in BLOCK_NAMES])
def test_variant_builds_and_trains_a_step(name, variant):
    key, value = variant
    net, shape = build(name, **{key: value})
    assert net.model_options[key] == value
    before, after = one_step(net, shape)
    assert math.isfinite(before) and math.isfinite(after)


# --- each variant is its definition, on a hand-checked input -------------------------------------------------------

X = torch.tensor([[1.0, -2.0, 3.0, -4.0], [-0.5, 0.5, 2.0, 0.0]])


def mlp_block(shortcut: str | None = None, block: str | None = None):
    """The first block of a width-4 residual MLP, its branch zeroed (every weight 0: the branch outputs 0), in eval mode."""
    torch.manual_seed(0)
    net = create_model("mlp_res", depth=4, width=4, input_dim=4, shortcut=shortcut, block=block).eval()
    blk = net.blocks[0]
    with torch.no_grad():
        for p in blk.branch.parameters():
            p.zero_()
        gate = getattr(blk.shortcut, "gate", None)
        if gate is not None:
            gate.weight.zero_()  # g(x) = sigmoid(b_g): the gate at its initial bias
    return blk


@pytest.mark.parametrize("shortcut, expected", [
    ("identity", [[1.0, 0.0, 3.0, 0.0], [0.0, 0.5, 2.0, 0.0]]),
    ("A", [[1.0, 0.0, 3.0, 0.0], [0.0, 0.5, 2.0, 0.0]]),
    ("scale-0.5", [[0.5, 0.0, 1.5, 0.0], [0.0, 0.25, 1.0, 0.0]]),
    ("scale-0", [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
    ("frozen-gate-0.25", [[0.75, 0.0, 2.25, 0.0], [0.0, 0.375, 1.5, 0.0]]),
    ("shortcut-gate", [[0.5, 0.0, 1.5, 0.0], [0.0, 0.25, 1.0, 0.0]]),  # b_g = 0: g = 1/2
    ("exclusive-gate-b0", [[0.5, 0.0, 1.5, 0.0], [0.0, 0.25, 1.0, 0.0]]),
    ("dropout-0.5", [[1.0, 0.0, 3.0, 0.0], [0.0, 0.5, 2.0, 0.0]]),  # eval: the identity
])
def test_zeroed_branch_leaves_the_shortcut(shortcut, expected):
    """With the branch at zero the original block is relu(h(x)): h(x) = x, L*x, (1-L)*x, (1-g)*x."""
    blk = mlp_block(shortcut)
    with torch.no_grad():
        out = blk(X)
        torch.testing.assert_close(out, torch.tensor(expected))
        torch.testing.assert_close(blk.forward_deleted(X), out)


@pytest.mark.parametrize("bias", [0, 6, 10])
def test_gates_start_at_their_bias(bias):
    for kind in ("exclusive-gate", "shortcut-gate"):
        blk = mlp_block(f"{kind}-b{bias}")
        assert isinstance(blk.shortcut, GatedShortcut) and blk.shortcut.gate.bias.eq(-bias).all()
        g = torch.sigmoid(torch.tensor(-float(bias)))
        with torch.no_grad():
            torch.testing.assert_close(blk.shortcut(X), (1 - g) * X)
            torch.testing.assert_close(blk.forward_deleted(X), F.relu((1 - g) * X))
    assert create_model("resnet8", shortcut="exclusive-gate").blocks[0].shortcut.gate.bias.eq(-6).all()
    assert create_model("resnet8", shortcut="shortcut-gate").blocks[0].shortcut.gate.bias.eq(0).all()


def test_gates_and_frozen_gate_scale_the_branch():
    """Exclusive gating: g(x) F(x) + (1-g(x)) x; shortcut-only gating: F(x) + (1-g(x)) x; frozen: L F(x) + (1-L) x."""
    torch.manual_seed(0)
    for shortcut in ("exclusive-gate-b0", "shortcut-gate-b0", "frozen-gate-0.25", "scale-0.5"):
        net = create_model("mlp_res", depth=4, width=4, input_dim=4, shortcut=shortcut).eval()
        blk = net.blocks[0]
        with torch.no_grad():
            f = blk.branch(X)
            if "gate-b" in shortcut:
                blk.shortcut.gate.weight.zero_()
                g = 0.5
            else:
                g = 0.25 if shortcut.startswith("frozen") else None
            scale = 0.5 if shortcut == "scale-0.5" else 1 - g
            branch = f if shortcut.startswith(("shortcut", "scale")) else g * f
            torch.testing.assert_close(blk(X), F.relu(branch + scale * X))


def test_dropout_shortcut_trains_with_a_mask_and_tests_with_the_identity():
    blk = mlp_block("dropout-0.5")
    x = torch.ones(64, 4)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), x)  # eval: relu(0 + x)
        blk.train()
        torch.manual_seed(0)
        out = blk.shortcut(x)
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - P)


def test_block_placements_on_a_zeroed_branch():
    """What follows the addition (Fig. 4): (a) ReLU, (b) BN-ReLU (eval BN at init: x / sqrt(1 + eps)), (c)-(e) nothing."""
    for block, expected in (("original", F.relu(X)), ("bn-after-add", F.relu(X / math.sqrt(1 + 1e-5))),
                            ("relu-before-add", X), ("relu-only-preact", X), ("full-preact", X)):
        blk = mlp_block(block=block)
        with torch.no_grad():
            torch.testing.assert_close(blk(X), expected)
            torch.testing.assert_close(blk.forward_deleted(X), expected)
        assert blk.post_activation == (block in ("original", "bn-after-add"))


@pytest.mark.parametrize("shortcut, block", [("scale-0.5", "original"), ("exclusive-gate-b0", "full-preact"),
                                             ("dropout-0.5", "bn-after-add"), ("shortcut-gate", "relu-only-preact")])
def test_forward_deleted_of_a_downsampling_block(shortcut, block):
    """Veit et al.'s lesion: the block without its branch, post(h(x)), h acting on option A's map where the shape
    changes (subsample + zero-pad)."""
    torch.manual_seed(0)
    net = create_model("resnet8", shortcut=shortcut, block=block).eval()
    blk = next(b for b in net.blocks if b.downsampling)
    x = torch.rand(2, blk.in_channels, 8, 8) - 0.3
    padded = PadShortcut(blk.in_channels, blk.out_channels, 2)(x)
    with torch.no_grad():
        if "gate" in shortcut:
            blk.shortcut.gate.weight.zero_()
        factor = {"scale-0.5": 0.5, "exclusive-gate-b0": 0.5, "dropout-0.5": 1.0,
                  "shortcut-gate": 0.5}[shortcut]
        expected = blk.post(factor * padded) if blk.post is not None else factor * padded
        if block == "original":
            expected = F.relu(expected)
        torch.testing.assert_close(blk.forward_deleted(x), expected)


@pytest.mark.parametrize("shortcut", ["scale-0.5", "exclusive-gate-b0", "frozen-gate-0.5"])
def test_stochastic_depth_drop_is_the_deleted_block(shortcut):
    torch.manual_seed(0)
    net = create_model("resnet8", shortcut=shortcut, stochastic_depth=0.5)
    blk = net.blocks[2]
    blk.train()
    blk.branch.eval()  # deterministic BN: only the drop differs
    x = torch.randn(2, blk.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(blk(x, torch.tensor(0.0)), blk.forward_deleted(x))
        kept = blk(x, torch.tensor(1.0))
        scale = blk.shortcut.branch_scale(x)
        f = blk.branch(x) * (1.0 if scale is None else scale)
        torch.testing.assert_close(kept, F.relu(f + blk.shortcut(x)))


def test_conv1x1_projects_on_every_block():
    net = create_model("resnet8", shortcut="conv1x1")
    for blk in net.blocks:
        convs = [m for m in blk.shortcut.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 1 and convs[0].kernel_size == (1, 1) and convs[0].stride == (blk.stride,) * 2


# --- parameter counts ------------------------------------------------------------------------------------------------


def test_parameter_counts():
    """Identity-like variants have exactly the option-A net's parameters; a gate adds its 1x1 conv (weights + bias), a
    conv1x1 shortcut its conv and BN; every block placement keeps the count; plain twins match."""
    count = lambda name, **o: create_model(name, **o).num_parameters()  # noqa: E731
    a = count("resnet8")
    shapes = [(b.in_channels, b.out_channels) for b in create_model("resnet8").blocks]
    for s in ("identity", "scale-0", "scale-0.5", "frozen-gate-0.5", "dropout-0.5"):
        assert count("resnet8", shortcut=s) == a, s
    for s in ("exclusive-gate", "exclusive-gate-b3", "shortcut-gate", "shortcut-gate-b6"):
        assert count("resnet8", shortcut=s) == a + sum(i * o + o for i, o in shapes), s
    assert count("resnet8", shortcut="conv1x1") == a + sum(i * o + 2 * o for i, o in shapes)
    for b in BLOCK_NAMES:
        assert count("resnet8", block=b) == count("plain8", block=b) == a, b
    m = count("mlp_res", depth=6, width=8, input_dim=4)
    assert count("mlp_res", depth=6, width=8, input_dim=4, shortcut="shortcut-gate") == m + 2 * (8 * 8 + 8)
    for b in BLOCK_NAMES:
        assert count("mlp_res", depth=6, width=8, input_dim=4, block=b) == m, b


def test_preresnet_is_resnet_with_full_preact():
    torch.manual_seed(0)
    pre = create_model("preresnet8")
    torch.manual_seed(0)
    full = create_model("resnet8", block="full-preact")
    assert pre.num_parameters() == full.num_parameters()
    assert str(pre) == str(full)
    a, b = pre.state_dict(), full.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(pre.eval()(x), full.eval()(x))


# --- names, config and command line -----------------------------------------------------------------------------------


def test_model_name_grammar():
    assert split_model_name("resnet20") == ("resnet20", {})
    assert split_model_name("resnet20:shortcut=scale-0.5,block=full-preact") == (
        "resnet20", {"shortcut": "scale-0.5", "block": "full-preact"})
    assert split_model_name("mlp_res:depth=6:width=8:stochastic-depth=0.5") == (
        "mlp_res", {"depth": 6, "width": 8, "stochastic_depth": 0.5})
    net = create_model("resnet8:shortcut=scale-0.5:block=full-preact")
    assert net.model_name == "resnet8" and net.model_options == {"shortcut": "scale-0.5", "block": "full-preact"}
    assert get_model_spec("resnet8:block=full-preact").name == "resnet8"
    for bad in ("resnet8:block", "resnet8:block=", ":block=original", "resnet8:block=original,block=original"):
        with pytest.raises(ResxError) as e:
            create_model(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ResxError, match="contradict|also given"):
        create_model("resnet8:block=full-preact", block="original")


def test_config_splits_the_name():
    cfg = resolve_config(None, dict(model="resnet20:block=full-preact"))
    assert (cfg.model, cfg.block, cfg.shortcut) == ("resnet20", "full-preact", None)
    cfg = resolve_config(None, dict(model="resnet20:shortcut=exclusive-gate-b7", block="bn-after-add"))
    assert (cfg.model, cfg.shortcut, cfg.block) == ("resnet20", "exclusive-gate-b7", "bn-after-add")
    assert resolve_config(None, dict(model="resnet20:block=original", block="original")).block == "original"
    assert resolve_config(None, dict(model="mlp_res:depth=6,width=8")).depth == 6
    for bad, words in ((dict(model="resnet20:block=full-preact", block="original"), "also given"),
                       (dict(model="resnet20", shortcut="scale"), "allowed: A, B, identity, scale-L"),
                       (dict(model="resnet20", shortcut="exclusive-gate-b11"), "exclusive-gate-bN"),
                       (dict(model="resnet20", shortcut="dropout-1"), "dropout-P"),
                       (dict(model="resnet20", shortcut="frozen-gate-1.5"), "frozen-gate-L"),
                       (dict(model="resnet20", block="preact"), "full-preact"),
                       (dict(model="mlp_res:input_dim=2"), "allowed: shortcut, block")):
        with pytest.raises(ResxError, match=words) as e:
            resolve_config(None, bad)
        assert "\n" not in str(e.value)


def test_experiment_file_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: resnet8\nshortcut: frozen-gate-0.5\nblock: relu-before-add\n")
    cfg = resolve_config(path)
    assert (cfg.shortcut, cfg.block, cfg.model_options()["block"]) == ("frozen-gate-0.5", "relu-before-add",
                                                                       "relu-before-add")
    path.write_text("model: resnet8:block=bn-after-add\nblock: full-preact\n")
    with pytest.raises(ResxError, match="also given"):
        resolve_config(path)


def test_parse_shortcut_values():
    assert parse_shortcut("identity").kind == "A"
    assert parse_shortcut("exclusive-gate").value == -6 and parse_shortcut("shortcut-gate").value == 0
    assert parse_shortcut("shortcut-gate-b6").value == -6 and parse_shortcut("scale-0").value == 0
    assert parse_shortcut("frozen-gate-0.5") == parse_shortcut("frozen-gate-0.5")
    assert TrainConfig(shortcut="conv1x1", block="relu-before-add").validate().block == "relu-before-add"


def test_block_refused_where_the_net_has_none():
    from resx.models.registry import check_model_options

    for model in ("preresnet20", "resnet18"):
        with pytest.raises(ResxError, match="no block option"):
            check_model_options(model, block="full-preact")
    check_model_options("plain8", block="full-preact")  # a plain twin takes every placement


def test_train_records_shortcut_and_block(tmp_path):
    runner = CliRunner()
    args = ["--data", "synthetic:size=8,train=64,test=32", "--epochs", "1", "--batch-size", "32", "--quiet"]
    result = runner.invoke(app, ["train", "resnet8", "--shortcut", "scale-0.5", "--block", "full-preact",
                                 "--out", str(tmp_path / "a"), *args])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert (saved["model"], saved["shortcut"], saved["block"]) == ("resnet8", "scale-0.5", "full-preact")
    result = runner.invoke(app, ["train", "resnet8:block=relu-only-preact", "--out", str(tmp_path / "b"), *args])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert (saved["model"], saved["shortcut"], saved["block"]) == ("resnet8", None, "relu-only-preact")
    result = runner.invoke(app, ["train", "resnet8", "--shortcut", "scale-x", *args])
    assert result.exit_code == 1 and "allowed" in result.output


def test_models_lists_the_variants():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for form, _ in SHORTCUT_FORMS:
        assert form in result.output
    for name in BLOCK_NAMES:
        assert name in result.output


def test_path_gates_follow_every_variant():
    """The paths study's gated forward (branch and shortcut gated apart) equals the block's own forward pass."""
    from resx.studies.paths.gates import gated_blocks_forward

    for options in (dict(shortcut="exclusive-gate-b0"), dict(block="bn-after-add"), dict(shortcut="frozen-gate-0.5")):
        torch.manual_seed(0)
        net = create_model("resnet8", **options).eval()
        x = torch.randn(2, 3, 8, 8)
        with torch.no_grad():
            h = net.stem(x)
            masks = torch.ones(len(net.blocks), 2)
            out = gated_blocks_forward(net, h, masks)
            for blk in net.blocks:
                h = blk(h)
        torch.testing.assert_close(out, h)


# --- today's nets are unchanged (values recorded from the code before the variants were added) --------------------

BEFORE = {  # name, options, input shape: parameters, state_dict keys (count, sha256 prefix), eval and train outputs
    "resnet8": (dict(), (3, 8, 8), 75290, 44, "8240bee649a934eb",
                [0.2083500325679779, -0.3671663999557495, -0.2795300781726837],
                [1.089843988418579, -2.02097749710083, -0.2468840777873993]),
    "resnet8-B": (dict(shortcut="B"), (3, 8, 8), 78042, 56, "3453564a940648eb",
                  [-0.357608824968338, 0.3217974901199341, -0.4442979097366333],
                  [-1.511864185333252, 1.6404393911361694, -0.6218392848968506]),
    "preresnet8": (dict(), (3, 8, 8), 75290, 44, "398b54da767e41e2",
                   [0.06727361679077148, -0.4392085075378418, -0.17069026827812195],
                   [0.41013339161872864, -1.272879719734192, 0.025331586599349976]),
    "mlp_res": (dict(depth=6, width=16, in_channels=1, input_size=8), (1, 8, 8), 2378, 32, "16ba48c47d9fc127",
                [5.425839424133301, -4.321151256561279, -0.5396747589111328],
                [-0.06785929203033447, -1.7418136596679688, -1.2238808870315552]),
}


@pytest.mark.parametrize("key", sorted(BEFORE))
def test_todays_nets_are_unchanged(key):
    import hashlib

    options, shape, params, n_keys, digest, eval_out, train_out = BEFORE[key]
    torch.manual_seed(0)
    net = create_model(key.split("-")[0], **options)
    torch.manual_seed(1)
    x = torch.randn(4, *shape)
    keys = list(net.state_dict())
    assert (net.num_parameters(), len(keys)) == (params, n_keys)
    assert hashlib.sha256(",".join(keys).encode()).hexdigest()[:16] == digest
    with torch.no_grad():
        train = net.train()(x)[0, :3]
        evaluated = net.eval()(x)[0, :3]
    torch.testing.assert_close(train, torch.tensor(train_out), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(evaluated, torch.tensor(eval_out), rtol=1e-5, atol=1e-5)
