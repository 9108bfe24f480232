"""The model zoo, tested by name: every registered model builds, trains a step and exposes its blocks.

A new model is tested the moment it is registered (parametrized over `list_models()`).
Parameter counts are checked against He et al. 2015, Table 6 (../shared/REFERENCE.md §1).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resx.errors import ResxError
from resx.models import BlockNet, PadShortcut, create_model, get_model_spec, list_models, twin_name

# Nets too big to train a step cheaply: built and run forward once (batch 1, 8x8), still tested by name.
BIG = {"resnet1202", "plain1202", "preresnet1001"}
NUM_CLASSES = 7  # not 10, so a head that ignores num_classes is caught


def tiny_setup(name: str) -> tuple[dict, tuple[int, ...]]:
    """Model options and input shape (without batch) for a tiny forward pass of `name`."""
    family = get_model_spec(name).family
    if family in ("mlp", "linear", "onenet"):
        return dict(in_channels=1, input_size=8, num_classes=NUM_CLASSES), (1, 8, 8)
    if family == "imagenet":
        return dict(input_size=32, num_classes=NUM_CLASSES), (3, 32, 32)
    return dict(num_classes=NUM_CLASSES), (3, 8, 8)


_built: dict[str, BlockNet] = {}


def build(name: str) -> BlockNet:
    """Each model is built once per session (the 1202-layer nets take about a second)."""
    if name not in _built:
        options, _ = tiny_setup(name)
        torch.manual_seed(0)
        _built[name] = create_model(name, **options)
    net = _built[name]
    net.zero_grad(set_to_none=True)
    return net


def forward_shapes(net: BlockNet, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Size, torch.Size]]]:
    """net(x) and the (input shape, output shape) of every block, in order."""
    shapes: list[tuple[torch.Size, torch.Size]] = []
    hooks = [b.register_forward_hook(lambda m, i, o: shapes.append((i[0].shape, o.shape))) for b in net.blocks]
    try:
        out = net(x)
    finally:
        for h in hooks:
            h.remove()
    return out, shapes


# --- every model by name ------------------------------------------------------------------------------------


def test_zoo_lists_the_paper_models():
    names = set(list_models())
    for depth in (20, 32, 44, 56, 110, 1202):
        assert {f"resnet{depth}", f"plain{depth}"} <= names
    assert {"preresnet110", "preresnet164", "preresnet1001", "resnet18", "resnet34", "mlp_res", "mlp_plain"} <= names
    assert len(names) == len(list_models()), "a model is listed twice"


@pytest.mark.parametrize("name", list_models())
def test_model_forward_backward(name):
    net = build(name)
    _, shape = tiny_setup(name)
    assert isinstance(net, BlockNet)
    assert net.model_name == name
    torch.manual_seed(1)
    if name in BIG:
        # train mode: in eval mode an untrained 1202-layer net overflows (BN running stats are still (0, 1),
        # so each of 600 residual additions roughly doubles the variance)
        with torch.no_grad():
            out = net.train()(torch.randn(1, *shape))
        assert out.shape == (1, NUM_CLASSES)
        assert torch.isfinite(out).all()
        return
    net.train()
    x = torch.randn(2, *shape)
    out = net(x)
    assert out.shape == (2, NUM_CLASSES)
    loss = F.cross_entropy(out, torch.tensor([0, NUM_CLASSES - 1]))
    loss.backward()
    assert torch.isfinite(loss)
    params = list(net.parameters())
    assert all(p.grad is not None for p in params), "some parameter gets no gradient"
    assert all(torch.isfinite(p.grad).all() for p in params)
    # the stem, every block and the head take part in the gradient
    assert any(p.grad.abs().sum() > 0 for p in net.stem.parameters()) or not list(net.stem.parameters())
    assert any(p.grad.abs().sum() > 0 for p in net.head.parameters())


@pytest.mark.parametrize("name", list_models())
def test_model_block_interface(name):
    net = build(name)
    net.train(name in BIG)  # see test_model_forward_backward; train-mode BN output is still deterministic
    _, shape = tiny_setup(name)
    torch.manual_seed(2)
    x = torch.randn(1 if name in BIG else 2, *shape)
    with torch.no_grad():
        out, shapes = forward_shapes(net, x)
        info = net.block_info()
        assert len(info) == len(net.blocks) == len(shapes) > 0
        assert [i.index for i in info] == list(range(len(info)))
        stages = [i.stage for i in info]
        assert stages == sorted(stages) and stages[0] == 0
        spec = get_model_spec(name)
        for block_info, (shape_in, shape_out) in zip(info, shapes):
            assert block_info.downsampling == (shape_in != shape_out), f"block {block_info.index}: {shape_in} -> {shape_out}"
            assert block_info.residual == spec.residual
            assert (shape_in[1], shape_out[1]) == (block_info.in_channels, block_info.out_channels)
        assert net.residual == spec.residual
        # forward_with with nothing changed is the plain forward pass
        torch.testing.assert_close(net.forward_with(x), out, rtol=0, atol=0)
        torch.testing.assert_close(net.forward_with(x, order=range(len(net.blocks)), deleted=()), out, rtol=0, atol=0)


# --- lesions on small nets of each family ------------------------------------------------------------------

SMALL = {
    "resnet8": (dict(), (3, 8, 8)),
    "plain8": (dict(), (3, 8, 8)),
    "preresnet8": (dict(), (3, 8, 8)),
    "resnet14": (dict(shortcut="B"), (3, 8, 8)),
    "resnet18": (dict(input_size=8), (3, 8, 8)),
    "mlp_res": (dict(depth=8, width=16, in_channels=1, input_size=8), (1, 8, 8)),
    "mlp_plain": (dict(depth=8, width=16, in_channels=1, input_size=8), (1, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_delete_every_block(name):
    options, shape = SMALL[name]
    torch.manual_seed(0)
    net = create_model(name, **options).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        full = net(x)
        for i, info in enumerate(net.block_info()):
            out = net.forward_with(x, deleted={i})
            assert out.shape == full.shape and torch.isfinite(out).all()
            assert not torch.equal(out, full), f"deleting block {i} changed nothing"
            if not info.downsampling:
                # a deleted block of unchanged shape is the identity: same as leaving it out of the order
                skipped = net.forward_with(x, order=[j for j in range(len(net.blocks)) if j != i])
                torch.testing.assert_close(out, skipped)
        with pytest.raises(IndexError):
            net.forward_with(x, deleted={len(net.blocks)})


def test_reorder_same_shape_blocks():
    torch.manual_seed(0)
    net = create_model("resnet14").eval()  # 2 blocks per stage: blocks 0 and 1 share a shape
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        swapped = net.forward_with(x, order=[1, 0, 2, 3, 4, 5])
        manual = net.head(net.blocks[5](net.blocks[4](net.blocks[3](net.blocks[2](net.blocks[0](net.blocks[1](net.stem(x))))))))
    torch.testing.assert_close(swapped, manual)


def test_deleted_downsampling_block_keeps_its_shortcut():
    """Veit et al. 2016 §4: a deleted block is replaced by its shortcut (option A: subsample + zero-pad)."""
    torch.manual_seed(0)
    net = create_model("resnet8").eval()
    i = next(b.index for b in net.block_info() if b.downsampling)
    block = net.blocks[i]
    h = torch.rand(2, block.in_channels, 8, 8)
    with torch.no_grad():
        out = block.forward_deleted(h)
    assert out.shape == (2, block.out_channels, 4, 4)
    torch.testing.assert_close(out[:, : block.in_channels], h[:, :, ::2, ::2])  # relu of a non-negative input
    assert (out[:, block.in_channels :] == 0).all()


# --- parameter counts (He et al. 2015, Table 6) -------------------------------------------------------------

PAPER_PARAMS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS))
def test_parameter_counts_match_paper(depth):
    paper = PAPER_PARAMS[depth]
    decimals = len(paper.split(".")[1])
    count = (_built.get(f"resnet{depth}") or create_model(f"resnet{depth}")).num_parameters()
    assert f"{count / 1e6:.{decimals}f}" == paper, f"resnet{depth}: {count:,} parameters, paper {paper}M"


@pytest.mark.parametrize("name", [n for n in list_models() if get_model_spec(n).family in ("cifar", "mlp")])
def test_plain_and_residual_twins_have_equal_parameters(name):
    twin = twin_name(name)
    assert twin_name(twin) == name
    assert get_model_spec(twin).residual != get_model_spec(name).residual
    if name in BIG:
        count = lambda n: build(n).num_parameters()  # noqa: E731
    else:
        count = lambda n: create_model(n, in_channels=1, input_size=8).num_parameters()  # noqa: E731
    assert count(name) == count(twin)


def test_imagenet_twins_equal_with_option_a():
    assert (create_model("resnet18", shortcut="A", input_size=32).num_parameters()
            == create_model("plain18", input_size=32).num_parameters())


def test_option_b_has_more_parameters():
    a = create_model("resnet20", shortcut="A").num_parameters()
    b = create_model("resnet20", shortcut="B").num_parameters()
    # two projections: 16->32 and 32->64 (1x1 conv + BN)
    assert b == a + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_data_options_shape_the_net():
    net = create_model("resnet8", num_classes=100, in_channels=1)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 100)


# --- errors ---------------------------------------------------------------------------------------------------


def test_unknown_model_lists_known_names():
    with pytest.raises(ResxError) as e:
        create_model("resnet-56")
    message = str(e.value)
    assert "resnet-56" in message
    for name in list_models():
        assert name in message


@pytest.mark.parametrize("name", ["resnet21", "plain7", "resnet2", "preresnet1000"])
def test_bad_depth(name):
    with pytest.raises(ResxError, match=name):
        create_model(name)


def test_bad_depth_says_what_is_allowed():
    with pytest.raises(ResxError, match="6n\\+2"):
        get_model_spec("resnet21")


def test_unknown_option():
    with pytest.raises(ResxError, match="no option 'dropout'.*allowed"):
        create_model("resnet20", dropout=0.5)
    with pytest.raises(ResxError, match="stochastic_depth"):
        create_model("mlp_plain", stochastic_depth=0.5)  # the plain MLP has no such option


def test_unknown_shortcut_option():
    with pytest.raises(ResxError, match="'C'"):
        create_model("resnet20", shortcut="C")


def test_twin_of_preact_is_refused():
    with pytest.raises(ResxError, match="plain110"):
        twin_name("preresnet110")


# --- stochastic depth (Huang et al. 2016) ---------------------------------------------------------------------


def test_survival_probabilities_decay_linearly():
    net = create_model("resnet20", stochastic_depth=0.5)
    probs = [b.survival_prob for b in net.blocks]
    count = len(probs)
    assert probs == pytest.approx([1 - (l / count) * 0.5 for l in range(1, count + 1)])
    assert probs[-1] == pytest.approx(0.5)
    net.set_stochastic_depth(None)
    assert all(b.survival_prob == 1.0 for b in net.blocks)


def test_stochastic_depth_block_train_and_eval():
    torch.manual_seed(0)
    net = create_model("resnet14", stochastic_depth=0.5)
    block = net.blocks[1]  # not downsampling: identity shortcut
    p = block.survival_prob
    assert 0.5 < p < 1
    x = torch.randn(4, block.in_channels, 8, 8)
    block.eval()
    with torch.no_grad():
        branch = block.branch(x)
        # test time: every block kept, its branch scaled by p (Huang et al. 2016, Eq. 5)
        torch.testing.assert_close(block(x), F.relu(p * branch + x))
        block.train()
        outcomes = set()
        for _ in range(60):
            block.branch.eval()  # keep BN deterministic; only the drop decision is random
            out = block(x)
            if torch.allclose(out, F.relu(branch + x)):
                outcomes.add("kept")
            elif torch.allclose(out, F.relu(x)):
                outcomes.add("dropped")
            else:
                outcomes.add("other")
    assert outcomes == {"kept", "dropped"}


def test_stochastic_depth_refused_by_plain_net():
    with pytest.raises(ResxError, match="plain"):
        create_model("plain20", stochastic_depth=0.5)
    net = create_model("plain8")
    with pytest.raises(ValueError):
        net.set_stochastic_depth(0.5)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5])
def test_stochastic_depth_bad_probability(p):
    with pytest.raises(ResxError):
        create_model("resnet8", stochastic_depth=p)


# --- option A shortcut ---------------------------------------------------------------------------------------


def test_pad_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 3, 8, 8)
    shortcut = PadShortcut(3, 5, stride=2)
    out = shortcut(x)
    assert out.shape == (2, 5, 4, 4)
    assert torch.equal(out[:, :3], x[:, :, ::2, ::2])
    assert torch.equal(out[:, 3:], torch.zeros(2, 2, 4, 4))
    assert list(shortcut.parameters()) == []
    assert torch.equal(PadShortcut(3, 3, stride=1)(x), x)


def test_pad_shortcut_cannot_shrink():
    with pytest.raises(ValueError):
        PadShortcut(8, 4)


def test_stochastic_depth_follows_the_given_draws():
    """The training step passes each mini-batch's draws in (`keep`): 1 runs the branch, 0 leaves the shortcut."""
    torch.manual_seed(0)
    net = create_model("resnet14", stochastic_depth=0.5).train()
    block = net.blocks[1]
    block.branch.eval()  # deterministic BN: only the drop decision differs
    x = torch.randn(4, block.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x, torch.tensor(1.0)), F.relu(block.branch(x) + x))
        torch.testing.assert_close(block(x, torch.tensor(0.0)), block.forward_deleted(x))
        net.eval()
        keep = torch.zeros(len(net.blocks))
        torch.testing.assert_close(net(torch.randn(2, 3, 8, 8), keep).shape, torch.Size([2, 10]))
