"""Lesion studies (Veit et al. 2016 §4): exactness of every lesion against the net's own `forward_with`, with and
without prefix caching; Kendall's tau; draws; the CSVs; the CLI's one-line errors. CPU, tiny nets, seconds."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from resx.cli import app
from resx.config import TrainConfig
from resx.data import load_dataset
from resx.engine import Evaluator, train
from resx.errors import ResxError
from resx.models import create_model
from resx.models.net import BlockNet
from resx.studies.lesion.compute import run_lesion
from resx.studies.lesion.declare import DELETE_K_COLUMNS, SINGLE_COLUMNS, SWAP_COLUMNS
from resx.studies.lesion.evaluator import LesionEvaluator, choose_cached_positions, fold_batchnorm
from resx.studies.lesion.kendall import count_inversions, discordant_pairs_brute_force, kendall_tau
from resx.studies.lesion.plans import (deletable_blocks, deletion_plan, draw_deletions, draw_swaps, first_change,
                                       intact_plan, order_plan, parse_int_list, parse_studies, swappable_pairs)

TINY = "synthetic:size=8,train=256,test=64"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("RESX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RESX_NO_DOWNLOAD", "1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tensors of 64 images of 8x8 pixels: thread start-up costs more than it saves (and a busy 2-core box
    # makes OpenMP spin-waits 30x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return load_dataset(TINY)


def trained_like(name: str, data, seed: int = 0) -> BlockNet:
    """A net with non-trivial BatchNorm statistics (a few training-mode passes), in eval mode."""
    torch.manual_seed(seed)
    net = create_model(name, **data.model_options)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, data.channels, data.image_size, data.image_size))
    return net.eval()


def evaluator(net, data, **kw) -> LesionEvaluator:
    return LesionEvaluator(net, data.test_images, data.test_labels, data.mean, data.std, device=CPU, **kw)


def inputs(data) -> torch.Tensor:
    from resx.data.augment import normalize

    shape = (1, data.channels, 1, 1)
    return normalize(data.test_images, torch.tensor(data.mean).view(shape), torch.tensor(data.std).view(shape))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained runs, made once: resnet14 (one swappable pair) and its plain twin."""
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    for model in ("resnet14", "plain14"):
        train(TrainConfig(model=model, data=TINY, epochs=1, batch_size=32, device="cpu", data_dir=str(root / "data")),
              root / model)
    return root


# --- Kendall's tau ----------------------------------------------------------------------------------------------------
def test_kendall_tau_identity_and_reversed():
    assert kendall_tau(list(range(54))) == 1.0
    assert kendall_tau(list(range(54))[::-1]) == -1.0
    assert kendall_tau([1, 0]) == -1.0 and kendall_tau([0]) == 1.0


def test_kendall_tau_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 7, 20, 54):
        for _ in range(20):
            order = torch.randperm(n, generator=g).tolist()
            reference = torch.randperm(n, generator=g).tolist()
            d = discordant_pairs_brute_force(order)
            assert count_inversions(order) == d
            assert kendall_tau(order) == pytest.approx(1 - 4 * d / (n * (n - 1)))
            d_ref = discordant_pairs_brute_force(order, reference)
            assert kendall_tau(order, reference) == pytest.approx(1 - 4 * d_ref / (n * (n - 1)))
    for order in itertools.permutations(range(5)):
        assert count_inversions(order) == discordant_pairs_brute_force(order)


# --- exactness of lesions -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet20", "plain20", "preresnet20"])
def test_no_lesion_reproduces_the_baseline(name, data):
    net = trained_like(name, data)
    ev = evaluator(net, data)
    with torch.no_grad():
        assert torch.equal(ev.logits(intact_plan(len(net.blocks))), net(inputs(data)))
    (error,), _ = ev.evaluate([intact_plan(len(net.blocks))])
    _, reference = Evaluator(net, data, device=CPU)()
    assert error == reference


@pytest.mark.parametrize("name", ["resnet20", "plain20", "preresnet20"])
def test_deleting_a_block_equals_forward_with_and_a_net_without_it(name, data):
    net = trained_like(name, data)
    x = inputs(data)
    full_cache = evaluator(net, data)
    no_cache = evaluator(net, data, cache_bytes=0)
    sparse_cache = evaluator(net, data, cache_bytes=full_cache.cache_bytes // 3)
    small_batches = evaluator(net, data, batch_size=24)
    assert len(full_cache.cached_positions) == len(net.blocks) + 1 and no_cache.cached_positions == []
    assert 0 < len(sparse_cache.cached_positions) < len(net.blocks) + 1
    for b in range(len(net.blocks)):
        plan = deletion_plan(len(net.blocks), [b])
        assert first_change(plan) == b
        with torch.no_grad():
            expected = net.forward_with(x, deleted={b})
        for ev in (full_cache, no_cache, sparse_cache):
            assert torch.equal(ev.logits(plan), expected), (name, b, ev.cached_positions)
        torch.testing.assert_close(small_batches.logits(plan), expected)
        assert torch.equal(full_cache.logits(plan, use_cache=False), expected)
        if not net.blocks[b].downsampling:
            # A net built without block b: the same function (Veit et al. 2016 §4.1).
            without = BlockNet(net.stem, [blk for i, blk in enumerate(net.blocks) if i != b], net.head).eval()
            with torch.no_grad():
                torch.testing.assert_close(full_cache.logits(plan), without(x))
    errors, _ = full_cache.evaluate([deletion_plan(len(net.blocks), [b]) for b in range(len(net.blocks))])
    assert errors == no_cache.evaluate([deletion_plan(len(net.blocks), [b]) for b in range(len(net.blocks))])[0]


def test_deleting_k_blocks_equals_forward_with(data):
    net = trained_like("resnet20", data)
    ev, x = evaluator(net, data), inputs(data)
    for deleted in ([0, 1, 2], [4, 8], [1, 5, 7]):
        with torch.no_grad():
            assert torch.equal(ev.logits(deletion_plan(9, deleted)), net.forward_with(x, deleted=deleted))


def test_swapping_a_pair_and_back_restores_the_output(data):
    net = trained_like("resnet20", data)
    ev, x = evaluator(net, data), inputs(data)
    baseline = ev.logits(intact_plan(9))
    order = list(range(9))
    order[4], order[5] = order[5], order[4]
    swapped = ev.logits(order_plan(order))
    with torch.no_grad():
        assert torch.equal(swapped, net.forward_with(x, order=order))
    assert not torch.equal(swapped, baseline)
    order[4], order[5] = order[5], order[4]
    assert torch.equal(ev.logits(order_plan(order)), baseline)


def test_folded_batchnorm_is_the_same_function(data):
    net = trained_like("resnet20", data)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.blocks[1].branch)
    x = inputs(data)
    with torch.no_grad():
        torch.testing.assert_close(folded.forward_with(x, deleted={3}), net.forward_with(x, deleted={3}),
                                   rtol=1e-4, atol=1e-4)


def test_cache_positions_fit_the_budget():
    sizes = [10] * 11
    assert choose_cached_positions(sizes, 1000) == list(range(11))
    assert choose_cached_positions(sizes, 60) == [0, 2, 4, 6, 8, 10]
    assert choose_cached_positions(sizes, 9) == []


# --- draws ------------------------------------------------------------------------------------------------------------
def test_draws_are_deterministic_and_valid(data):
    net = create_model("resnet20", **data.model_options)
    deletable, pairs = deletable_blocks(net), swappable_pairs(net)
    assert deletable == [0, 1, 2, 4, 5, 7, 8]  # blocks 3 and 6 downsample
    assert set(pairs) == {(0, 1), (0, 2), (1, 2), (4, 5), (7, 8)}
    draw = lambda seed: draw_deletions(deletable, range(1, 8), 5, torch.Generator().manual_seed(seed))  # noqa: E731
    assert draw(0) == draw(0) and draw(0) != draw(1)
    assert all(len(d) == k and len(set(d)) == k and set(d) <= set(deletable) for k, _, d in draw(0))
    stage = {b.index: b.stage for b in net.block_info()}
    for count, _, order, tau in draw_swaps(9, pairs, range(1, 6), 10, torch.Generator().manual_seed(0)):
        assert sorted(order) == list(range(9)) and order[3] == 3 and order[6] == 6
        assert all(stage[block] == stage[position] for position, block in enumerate(order))
        assert tau == kendall_tau(order) and -1 <= tau <= 1


def test_parsers():
    assert parse_int_list("1..10") == list(range(1, 11))
    assert parse_int_list("5") == [5] and parse_int_list("1,2,5") == [1, 2, 5] and parse_int_list("1..3,8") == [1, 2, 3, 8]
    assert parse_int_list(range(1, 4)) == [1, 2, 3]
    for bad in ("1-10", "a", "", "0", "3..1", "1..", "1.5"):
        with pytest.raises(ResxError, match="--swaps"):
            parse_int_list(bad)
    assert parse_int_list("3,1..3") == [3, 1, 2]  # each count once, in order
    assert parse_studies("single, swap") == ("single", "swap")
    with pytest.raises(ResxError, match="unknown study 'shuffle'"):
        parse_studies("single,shuffle")


# --- the study end to end ---------------------------------------------------------------------------------------------
def test_run_lesion_writes_tidy_csvs(runs, tmp_path):
    result = run_lesion([runs / "resnet14", runs / "plain14" / "checkpoint.pt"], draws=3, swaps="1,2", seed=1,
                        device="cpu", out=tmp_path / "out")
    single = pd.read_csv(tmp_path / "out" / "lesion_single.csv")
    delete_k = pd.read_csv(tmp_path / "out" / "lesion_delete_k.csv")
    swap = pd.read_csv(tmp_path / "out" / "lesion_swap.csv")
    assert list(single.columns) == list(SINGLE_COLUMNS) and list(delete_k.columns) == list(DELETE_K_COLUMNS)
    assert list(swap.columns) == list(SWAP_COLUMNS)
    assert set(single["run"]) == {"resnet14", "plain14"} and len(single) == 12
    assert single.groupby("run")["downsampling"].sum().tolist() == [2, 2]
    # resnet14: 4 deletable blocks -> k = 1..4; 3 draws each.
    assert sorted(delete_k[delete_k["run"] == "resnet14"]["k"].unique()) == [1, 2, 3, 4] and len(delete_k) == 24
    # swap: the plain net is skipped by the default studies; resnet14 has one pair (blocks 0 and 1), so its orders
    # need at most one swap: the count 2 (which would swap it back) is left out, with a note.
    assert set(swap["run"]) == {"resnet14"} and len(swap) == 3
    assert set(swap["kendall_tau"].round(6)) == {round(1 - 4 / 30, 6)}  # one swap of neighbours
    info = json.loads((tmp_path / "out" / "lesion_info.json").read_text())
    assert [r["run"] for r in info["runs"]] == ["resnet14", "plain14"]
    assert info["runs"][1]["skipped"] == {"swap": "has no shortcuts; swapping blocks needs a residual net"}
    assert set(info["runs"][0]["seconds"]) == {"cache", "single", "delete-k", "swap"}
    assert info["runs"][0]["swap_counts"] == [1] and "swap counts 2 left out" in info["runs"][0]["notes"][0]
    again = run_lesion([runs / "resnet14"], draws=3, swaps="1,2", seed=1, device="cpu", out=tmp_path / "again",
                       cache_bytes=0)
    pd.testing.assert_frame_equal(again.delete_k, result.delete_k[result.delete_k["run"] == "resnet14"])
    assert result.summary()[0]["baseline"] == single["baseline_error"][0]


def test_the_same_run_twice_gets_a_numbered_label_and_data_must_fit(runs, tmp_path):
    from types import SimpleNamespace

    from resx.labels import unique_labels
    from resx.studies import guards

    result = run_lesion([runs / "resnet14", runs / "resnet14" / "checkpoint.pt"], studies="single", device="cpu",
                        out=tmp_path / "twice")
    assert [r["run"] for r in result.info["runs"]] == ["resnet14", "resnet14-2"]
    assert unique_labels(["a", "a", "a-2", "b"]) == ["a", "a-2", "a-2-2", "b"]
    other = SimpleNamespace(name="synthetic", num_classes=4, channels=3, image_size=8)
    with pytest.raises(ResxError, match=r"run r \(resnet14\) was built for num classes 10, but the data "
                                        r"\(synthetic\) has 4; lesion it on data of the same shape"):
        guards.check_data_fits("r", "resnet14", {"num_classes": 10, "in_channels": 3}, other, what="lesion")
    guards.check_data_fits("r", "resnet14", {"num_classes": 4, "input_size": 32}, other, what="lesion")  # conv: any size


def test_cli_end_to_end(runs, tmp_path):
    result = CliRunner().invoke(app, ["lesion", str(runs / "resnet14"), str(runs / "plain14"), "--draws", "2",
                                      "--swaps", "1..2", "--device", "cpu", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    for name in ("lesion_single.csv", "lesion_delete_k.csv", "lesion_swap.csv", "lesion_info.json"):
        assert (tmp_path / "cli" / name).exists()
    assert "resnet14" in result.output and "plain14" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["resnet14", "--max-k", "5"], "--max-k 5 is more than the 4 deletable"),
        (["plain14", "--studies", "swap"], "has no shortcuts; swapping blocks needs a residual net"),
        (["resnet14", "--studies", "single,shuffle"], "unknown study 'shuffle'"),
        (["resnet14", "--swaps", "1-10"], "bad --swaps"),
        (["resnet14", "--draws", "0"], "--draws must be at least 1"),
        (["resnet14", "--blocks", "0,6"], "block 6 out of range"),
        (["missing-run"], "not found"),
        (["foreign.pt"], "is not a resx checkpoint"),
        (["truncated.pt"], "is not a readable resx checkpoint"),
    ],
)
def test_cli_errors_are_one_line(runs, tmp_path, args, message):
    torch.save({"something": "else"}, tmp_path / "foreign.pt")
    (tmp_path / "truncated.pt").write_bytes((runs / "resnet14" / "checkpoint.pt").read_bytes()[:500])
    args = [str(runs / a) if a in ("resnet14", "plain14") else a for a in args]
    result = CliRunner().invoke(app, ["lesion", *args, "--device", "cpu", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1
