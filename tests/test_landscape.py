"""Loss landscapes (Li et al. 2018): filter normalisation, twins' directions, the zero step and the interpolation's
ends against independent evaluations, resuming and sharding, the figures without torch, the smooth-vs-chaotic
numbers, the report section, the stage and the CLI. CPU, tiny nets and data, seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import typer
from typer.testing import CliRunner

from resx.config import TrainConfig
from resx.data import load_dataset, normalize
from resx.engine import load_model, train
from resx.errors import ResxError
from resx.studies.landscape.command import landscape_command
from resx.studies.landscape.compute import run_landscape
from resx.studies.landscape.declare import CSV_COLUMNS, LandscapeSettings
from resx.studies.landscape.directions import make_directions, random_directions
from resx.studies.landscape.metrics import bowl_ratio, local_convexity, surface_metrics
from resx.studies.landscape.options import check_options, grid_points, shard_points
from resx.studies.landscape.report import landscape_section, twin_pairs, twin_verdict
from resx.studies.landscape.study import landscape_stage
from resx.studies.landscape.surface import Subset, recalibrate_batchnorm, subset_indices
from resx.studies.landscape.targets import fresh_net

TINY = "synthetic:size=8,train=256,test=64"
CPU = torch.device("cpu")
FAST = dict(samples=64, device="cpu", precision="fp32", plot=False, say=lambda message: None)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained runs, made once: resnet8 (two seeds) and its plain twin, 8 iterations each."""
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    for model, seed in (("resnet8", 0), ("plain8", 0), ("resnet8", 1)):
        train(TrainConfig(model=model, data=TINY, iterations=8, batch_size=32, seed=seed, device="cpu",
                          data_dir=str(root / "data")), root / f"{model}-seed{seed}")
    return root


def independent_eval(run_dir: Path, samples: int = 64, seed: int = 0) -> tuple[float, float]:
    """Mean cross-entropy and error of the loaded net on the study's subset, computed here in one batch."""
    net, _ = load_model(run_dir / "checkpoint.pt")
    data = load_dataset(TINY)
    index = subset_indices(len(data.train_images), samples, seed)
    shape = (1, data.channels, 1, 1)
    x = normalize(data.train_images[index], torch.tensor(data.mean).view(shape), torch.tensor(data.std).view(shape))
    y = data.train_labels[index]
    with torch.no_grad():
        logits = net.eval()(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) != y).float().mean())


# --- directions -------------------------------------------------------------------------------------------------------
def test_filter_normalisation_matches_each_filter_and_zeroes_bn_and_biases():
    for name in ("resnet8", "mlp_res"):
        net = fresh_net(name, dict(num_classes=10, in_channels=3, input_size=8), seed=0)
        (d,) = make_directions(net, 1, "filter", seed=3)
        for (pname, w), dk in zip(net.named_parameters(), d):
            assert dk.shape == w.shape
            if w.dim() <= 1:  # BN weights and biases, the classifier's bias
                assert torch.count_nonzero(dk) == 0, pname
            else:  # each output channel of a conv, each row of a linear weight
                assert torch.allclose(dk.flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1), rtol=1e-5), pname
    (layer,) = make_directions(net, 1, "layer", seed=3)
    (raw,) = random_directions(net, 1, seed=3)
    (none,) = make_directions(net, 1, "none", seed=3)
    for w, dk, r, n in zip(net.parameters(), layer, raw, none):
        if w.dim() > 1:
            assert float(dk.norm()) == pytest.approx(float(w.detach().norm()), rel=1e-5)
        assert torch.equal(n, r)  # none: the raw Gaussian, 1-D parameters included


def test_twins_get_identical_directions_from_one_seed():
    options = dict(num_classes=10, in_channels=3, input_size=8)
    residual, plain = fresh_net("resnet8", options, 0), fresh_net("plain8", options, 0)
    for a, b in zip(random_directions(residual, 2, seed=5), random_directions(plain, 2, seed=5)):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    # the same seed gives the twins the same initial weights, hence the same filter-normalised directions
    for a, b in zip(make_directions(residual, 2, "filter", 5), make_directions(plain, 2, "filter", 5)):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    d1, d2 = random_directions(residual, 2, seed=5)
    assert not torch.equal(d1[0], d2[0])  # two different directions
    assert not torch.equal(random_directions(residual, 1, seed=6)[0][0], d1[0])  # another seed, others


# --- the grid and the options -----------------------------------------------------------------------------------------
def test_shards_cover_the_grid_exactly_once():
    grid = grid_points(2, (-1.0, 1.0), 7)
    assert len(grid) == 49 and (24, 0.0, 0.0) in grid  # odd points: the centre is the unperturbed net, exactly
    for n in (1, 2, 3, 5, 49, 60):
        seen = [p for i in range(1, n + 1) for p, _, _ in shard_points(grid, (i, n))]
        assert sorted(seen) == list(range(49))
    assert [p for p, _, _ in shard_points(grid, (2, 3))] == [p for p in range(49) if p % 3 == 1]


@pytest.mark.parametrize("bad, message", [
    (dict(dims=3), "--dims must be 1 or 2"),
    (dict(points=1), "--points must be an integer >= 2"),
    (dict(points=float("nan")), "--points must be an integer"),
    (dict(span="1:-1"), "the start must be below the end"),
    (dict(span="nan:1"), "finite"),
    (dict(span=(-1, float("inf"))), "finite"),
    (dict(span="1"), "expected LO:HI"),
    (dict(samples=0), "--samples must be an integer >= 1"),
    (dict(batch_size=-2), "--batch-size"),
    (dict(seed=-1), "--seed"),
    (dict(shard="3/2"), "I must be between 1 and N"),
    (dict(shard="a/b"), "expected I/N"),
    (dict(norm="unit"), "allowed: filter, layer, none"),
    (dict(directions="pca"), "allowed: random, interpolate"),
    (dict(directions="interpolate", dims=2), "use --dims 1"),
])
def test_bad_options_are_one_line_errors(bad, message):
    options = dict(dims=2, span=(-1, 1), points=21, samples=None, directions="random", norm="filter",
                   bn_recalibrate=False, shard=None, seed=0, batch_size=None)
    with pytest.raises(ResxError, match=message.replace("(", r"\(")) as caught:
        check_options(**{**options, **bad})
    assert "\n" not in str(caught.value)


# --- measurements -----------------------------------------------------------------------------------------------------
def test_zero_step_gives_the_trained_loss(runs, tmp_path):
    run = runs / "resnet8-seed0"
    result = run_landscape([run], dims=1, points=3, out=tmp_path / "o", **FAST)
    centre = result.frame[result.frame["x"] == 0.0].iloc[0]
    loss, error = independent_eval(run)
    assert centre["train_loss"] == pytest.approx(loss, rel=1e-5)
    assert centre["train_error"] == pytest.approx(error)
    assert result.info["runs"]["resnet8-seed0"]["centre_loss"] == pytest.approx(loss, rel=1e-5)
    block = json.loads((tmp_path / "o" / "landscape_info.json").read_text())["provenance"]
    assert block["precision"] == "fp32" and block["device"] == "cpu" and block["torch"] == torch.__version__
    section = landscape_section(tmp_path / "o", tmp_path, tmp_path, False)
    assert section[2].startswith("Computed in **fp32** on CPU")  # right after the heading
    assert list(pd.read_csv(tmp_path / "o" / "landscape.csv").columns[:8]) == list(CSV_COLUMNS)
    assert (result.frame["loss_se"] > 0).all() and (result.frame["y"] == 0.0).all()
    assert result.frame["train_loss"].iloc[0] > loss and result.frame["train_loss"].iloc[2] > loss  # a minimum


def test_interpolation_ends_are_the_two_runs(runs, tmp_path):
    a, b = runs / "resnet8-seed0", runs / "resnet8-seed1"
    result = run_landscape([a, b], directions="interpolate", dims=1, span=(0, 1), points=3, out=tmp_path / "o", **FAST)
    frame = result.frame.set_index("x")
    assert frame.loc[0.0, "train_loss"] == pytest.approx(independent_eval(a)[0], rel=1e-5)
    assert frame.loc[1.0, "train_loss"] == pytest.approx(independent_eval(b)[0], rel=1e-5)
    assert frame.loc[1.0, "train_error"] == pytest.approx(independent_eval(b)[1])
    # from a fresh net: BN statistics are recalibrated at every point, whatever was asked, and it is said
    fresh = run_landscape([a], init=True, directions="interpolate", dims=1, span=(0, 1), points=2,
                          out=tmp_path / "fresh", **FAST)
    assert fresh.frame["bn_recalibrate"].all()
    assert "forced" in next(iter(fresh.info["runs"].values()))["bn"]
    with pytest.raises(ResxError, match="two nets of one model"):
        run_landscape([a, runs / "plain8-seed0"], directions="interpolate", dims=1, out=tmp_path / "x", **FAST)


def test_resume_skips_finished_points_and_shards_fill_the_grid_once(runs, tmp_path):
    out = tmp_path / "o"
    twins = [runs / "resnet8-seed0", runs / "plain8-seed0"]
    first = run_landscape(twins, points=4, shard="1/3", out=out, **FAST)
    assert first.evaluated == 2 * len([p for p in range(16) if p % 3 == 0]) and first.skipped == 0
    before = pd.read_csv(out / "landscape.csv")
    rest = run_landscape(twins, points=4, out=out, **FAST)  # the whole grid: only what shard 1 did not measure
    assert rest.evaluated == 2 * 16 - first.evaluated and rest.skipped == first.evaluated
    after = pd.read_csv(out / "landscape.csv")
    assert len(after) == 32 and not after.duplicated(["run", "point"]).any()
    kept = after.merge(before, on=["run", "point"], suffixes=("", "_before"))
    assert len(kept) == len(before) and (kept["seconds"] == kept["seconds_before"]).all()  # rows untouched
    again = run_landscape(twins, points=4, out=out, **FAST)
    assert again.evaluated == 0 and again.skipped == 32
    info = json.loads((out / "landscape_info.json").read_text())
    assert info["runs"]["plain8-seed0"]["points_done"] == 16
    with pytest.raises(ResxError, match="other settings.*--overwrite") as caught:
        run_landscape(twins, points=5, out=out, **FAST)
    assert "\n" not in str(caught.value)
    replaced = run_landscape(twins[:1], dims=1, points=3, out=out, overwrite=True, **FAST)
    assert replaced.evaluated == 3 and len(pd.read_csv(out / "landscape.csv")) == 3


def test_fresh_model_with_recalibrated_batchnorm(tmp_path):
    result = run_landscape([], "mlp_plain", init=True, data=TINY, dims=2, points=3, out=tmp_path / "o", **FAST)
    assert len(result.frame) == 9 and result.frame["bn_recalibrate"].all()
    assert result.frame["run"].iloc[0] == "mlp_plain-init"
    with pytest.raises(ResxError, match="add --init"):
        run_landscape([], "mlp_plain", data=TINY, out=tmp_path / "x", **FAST)


def test_recalibration_gives_the_subset_statistics():
    net = fresh_net("resnet8", dict(num_classes=10, in_channels=3, input_size=8), seed=0)
    images = torch.randn(32, 3, 8, 8)
    labels = torch.zeros(16, dtype=torch.long)
    subset = Subset([(images[:16], labels), (images[16:], labels)], 32, 16, torch.arange(32))
    recalibrate_batchnorm(net, subset, CPU, "fp32")
    with torch.no_grad():
        conv_out = net.stem[0](images)
    assert not net.training
    assert torch.allclose(net.stem[1].running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-5)


# --- the numbers and the figures (torch-free) -------------------------------------------------------------------------
def _frame(run: str, residual: bool, z: np.ndarray, xs: np.ndarray, model: str) -> pd.DataFrame:
    gx, gy = np.meshgrid(xs, xs if z.ndim == 2 else [0.0], indexing="ij")
    return pd.DataFrame(dict(run=run, residual=residual, dims=z.ndim, x=gx.ravel(), y=gy.ravel(),
                             train_loss=z.reshape(gx.shape).ravel(), train_error=0.5, loss_se=0.01, model=model))


def test_a_bowl_is_convex_and_a_noisy_surface_is_not():
    xs = np.linspace(-1, 1, 21)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    bowl = 0.05 + gx ** 2 + 0.5 * gy ** 2
    noisy = bowl + np.random.default_rng(0).normal(0, 0.3, bowl.shape)
    frame = pd.concat([_frame("smooth", True, bowl, xs, "resnet56"), _frame("chaotic", False, noisy, xs, "plain56"),
                       _frame("line", True, xs ** 2, xs, "resnet20")])
    metrics = surface_metrics(frame).set_index("run")
    assert metrics.loc["smooth", "convex_share"] == 1.0 and metrics.loc["line", "convex_share"] == 1.0
    assert metrics.loc["chaotic", "convex_share"] < 0.5
    assert metrics.loc["line", "roughness_ratio"] == pytest.approx(50.0)  # (n - 1)^2 / 8, the bowl's own
    assert metrics.loc["line", "bowl_ratio"] == pytest.approx(50.0)
    assert metrics.loc["smooth", "roughness_ratio"] > 20 * metrics.loc["chaotic", "roughness_ratio"]
    assert bowl_ratio(xs, xs) == pytest.approx(66.75)
    saddle = gx ** 2 - gy ** 2
    assert np.nanmean(local_convexity(saddle)) == 0.0
    # the report's sentence: a pair whose residual surface is the noisy one contradicts Li et al. Fig. 5
    swapped = pd.concat([_frame("resnet56", True, noisy, xs, "resnet56"),
                         _frame("plain56", False, bowl, xs, "plain56")])
    (pair,) = twin_pairs(surface_metrics(swapped))
    assert "does NOT show it" in twin_verdict(*pair) and "less convex and rougher" in twin_verdict(*pair)


def test_figures_and_report_without_torch(tmp_path):
    xs = np.linspace(-1, 1, 7)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    noisy = 1 + gx ** 2 + np.random.default_rng(1).uniform(0, 2, gx.shape)
    frame = pd.concat([_frame("resnet56", True, 0.1 + gx ** 2 + gy ** 2, xs, "resnet56"),
                       _frame("plain56", False, noisy, xs, "plain56"),
                       _frame("resnet20-line", True, xs ** 2 + 0.1, xs, "resnet20")])
    frame.to_csv(tmp_path / "landscape.csv", index=False)
    code = ("import sys; from resx.studies.landscape.draw import plot_landscape; "
            f"paths = plot_landscape({str(tmp_path)!r}, formats=('png',)); print(sorted(p.name for p in paths)); "
            "from resx.studies.landscape.report import landscape_section; from pathlib import Path; "
            f"folder = Path({str(tmp_path)!r}); lines = landscape_section(folder, folder, folder, False); "
            "print('\\n'.join(lines)); assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "['landscape_1d.png', 'landscape_2d_contour.png', 'landscape_2d_surface.png']" in done.stdout
    assert "## Loss landscape (Li et al. 2018)" in done.stdout
    assert "the measurement shows it" in done.stdout  # the bowl is the residual one here
    assert "![" in done.stdout and "landscape_2d_contour.png" in done.stdout


# --- the stage and the command ----------------------------------------------------------------------------------------
def test_stage_measures_the_trained_twins(runs, tmp_path):
    said: list[str] = []
    ctx = SimpleNamespace(
        settings=LandscapeSettings(dims=1, points=3, samples=32),
        reproduce=SimpleNamespace(twin_models=["resnet8", "plain8", "resnet110"]),
        grid_run=lambda m: runs / f"{m}-seed0", train=SimpleNamespace(data=TINY, data_dir=None, seed=0), device="cpu",
        study_out=lambda name: tmp_path / name, say=said.append)
    landscape_stage(ctx)
    frame = pd.read_csv(tmp_path / "landscape" / "landscape.csv")
    assert sorted(set(frame["run"])) == ["plain8-seed0", "resnet8-seed0"] and len(frame) == 6
    assert any("Li et al. 2018 Fig. 5" in line for line in said)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("landscape")(landscape_command())

    @app.callback()
    def main() -> None:  # a group, as in the real app: `landscape` is a subcommand
        pass

    return app


def test_cli_runs_and_refuses_bad_input_in_one_line(runs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(_app(), ["landscape", str(runs / "resnet8-seed0"), str(runs / "plain8-seed0"), "--dims", "1",
                                    "--points", "3", "--span", "-0.5:0.5", "--samples", "32", "--device", "cpu",
                                    "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "landscape.csv").exists() and (tmp_path / "o" / "landscape_1d.png").exists()
    assert "convex" in result.output and "roughness" in result.output
    for bad, message in ((["--points", "0"], "--points"), (["--span", "1:-1"], "--span"),
                         (["--shard", "3/2"], "--shard"), (["--samples", "0"], "--samples")):
        result = runner.invoke(_app(), ["landscape", str(runs / "resnet8-seed0"), "--out", str(tmp_path / "bad"), *bad])
        assert result.exit_code != 0
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output


def test_fresh_batchnorm_net_gets_batches_of_two_or_more(tmp_path):
    # --samples 8: the default batch (samples / 8) would be 1, which BN recalibration cannot use
    result = run_landscape([], "mlp_res", init=True, data=TINY, dims=1, points=2, out=tmp_path / "o",
                           **{**FAST, "samples": 8})
    assert len(result.frame) == 2 and result.info["batch_size"] >= 2
    for bad, message in ((dict(samples=8, batch_size=1), "--batch-size must be at least 2"),
                         (dict(samples=1), "--samples must be at least 2")):
        with pytest.raises(ResxError, match=message):
            run_landscape([], "mlp_res", init=True, data=TINY, dims=1, points=2, out=tmp_path / "bad",
                          **{**FAST, **bad})


def test_cli_fresh_batchnorm_net_with_eight_samples(tmp_path):
    result = CliRunner().invoke(_app(), ["landscape", "--model", "mlp_res", "--init", "--samples", "8", "--dims", "1",
                                         "--points", "2", "--data", TINY, "--device", "cpu", "--out",
                                         str(tmp_path / "o")])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("runs, extra, message", [
    (["a", "b", "c"], [], "--directions interpolate takes two runs (from and to) or one with --init; got 3"),
    (["a"], [], "--directions interpolate takes two runs (from and to) or one with --init; got 1"),
    (["a", "b"], ["--init"], "--directions interpolate with --init takes one run (the line from its fresh net to "
                             "it); got 2"),
])
def test_interpolate_names_the_number_of_runs_before_anything_is_loaded(tmp_path, runs, extra, message):
    from resx.cli import app

    # runs that do not exist and a dataset that is not there: the number of runs is what is wrong first
    result = CliRunner().invoke(app, ["landscape", *runs, *extra, "--directions", "interpolate", "--data", "cifar10",
                                      "--device", "cpu", "--out", str(tmp_path / "o")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0] == f"error: {message}"
