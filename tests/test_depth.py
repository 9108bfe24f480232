"""The depth study: Telgarsky's sawtooth built exactly (2^k pieces), the exact piece counter on functions whose
pieces are known, parity data, matched parameter counts, the command line's files, resuming, the figures and the
report without torch, and the reproduce stage."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from resx.studies.depth.declare import (CURVE_COLUMNS, FIT_COLUMNS, PARAM_TOLERANCE, PIECES_COLUMNS)
from resx.studies.depth.draw import sawtooth
from resx.studies.depth.nets import MemberNets, parity_sum_ops, sawtooth_ops
from resx.studies.depth.pieces import count_pieces, evaluate, grid_pieces, linear_pieces
from resx.studies.depth.shapes import Shape, match_width, param_count, piece_bound, shapes_for
from resx.studies.depth.tasks import parity_inputs, parity_task

REPO = Path(__file__).resolve().parent.parent


# --- the constructed sawtooth and the counter ----------------------------------------------------------------------
@pytest.mark.parametrize("k", range(1, 11))
def test_constructed_sawtooth_net_has_exactly_2_to_the_k_pieces(k):
    ops = sawtooth_ops(k)
    function = linear_pieces(ops)
    assert function.pieces == 2**k
    assert sum(1 for op in ops if op[0] == "relu") == k  # k ReLU layers of 2 units
    assert all(op[1].shape[1] == 2 for op in ops[:-1] if op[0] == "linear")
    # the kinks are the multiples of 2^-k, and the net is m^k everywhere (the tent map composed k times)
    assert np.allclose(function.knots, np.arange(2**k + 1) / 2**k)
    x = np.random.default_rng(k).random(500)
    assert np.allclose(evaluate(ops, x[:, None])[:, 0], sawtooth(x, k), atol=1e-12)
    assert np.allclose(function(x), sawtooth(x, k), atol=1e-12)
    assert grid_pieces(lambda t: sawtooth(t, k)) == 2**k  # a dyadic grid (2^14 cells) agrees
    assert function.pieces <= piece_bound(2, k)


def _lin(w, b):
    return ("linear", np.array(w, dtype=float), np.array(b, dtype=float))


def _kinks(ts, cs):
    """sum c_i relu(x - t_i): one hidden layer whose kinks are at t_i."""
    return [_lin([[1.0] * len(ts)], [-t for t in ts]), ("relu",), _lin([[c] for c in cs], [0.0])]


KNOWN = {
    "linear": ([_lin([[3.0]], [1.0])], 1),
    "|x - 1/2|": ([_lin([[1.0, -1.0]], [-0.5, 0.5]), ("relu",), _lin([[1.0], [1.0]], [0.0])], 2),
    "three kinks inside, two outside": (_kinks([0.1, 0.3, 0.7, 1.5, -0.2], [1.0, -2.0, 3.0, 5.0, 1.0]), 4),
    "two kinks that cancel": (_kinks([0.5, 0.5], [1.0, -1.0]), 1),
    "a kink of weight zero": (_kinks([0.25, 0.6], [0.0, 2.0]), 2),
    "a small real kink (1e-3)": (_kinks([0.3, 0.6], [1.0, 1e-3]), 3),
    "a kink below the tolerance (1e-9)": (_kinks([0.3, 0.6], [1.0, 1e-9]), 2),
    "a kink hidden behind a later ReLU": ([_lin([[1.0]], [-0.25]), ("relu",), _lin([[1.0]], [-0.25]), ("relu",),
                                          _lin([[1.0]], [0.0])], 2),
    "a residual block (x - 2 relu(x - 1/2): the tent)": ([("residual", [_lin([[1.0]], [-0.5]), ("relu",),
                                                                         _lin([[-2.0]], [0.0])])], 2),
}


@pytest.mark.parametrize("name", KNOWN)
def test_piece_counter_on_known_piecewise_linear_functions(name):
    ops, pieces = KNOWN[name]
    function = linear_pieces(ops)
    assert function.pieces == pieces == count_pieces(ops)
    x = np.linspace(0, 1, 1001)
    assert np.allclose(function(x), evaluate(ops, x[:, None])[:, 0], atol=1e-12)
    if "1e-9" not in name:  # the grid cross-check resolves slope changes well above its own tolerance only
        assert grid_pieces(lambda t: evaluate(ops, np.asarray(t)[:, None])[:, 0]) == pieces


@pytest.mark.parametrize("model, depth", [("plain", 1), ("plain", 4), ("residual", 3)])
def test_exact_pieces_reproduce_the_trained_nets_forward_pass(model, depth):
    """The counter's piecewise-affine function is the net's function: equal at random inputs and affine between
    its knots (equal at the midpoints of its pieces too), for each seed of a MemberNets."""
    shape = Shape(model, depth, 6, 1, 100)
    net = MemberNets(shape, [3, 4])
    x = torch.rand(2, 300, 1)
    with torch.no_grad():
        out = net(x).double().numpy()
    for member in range(2):
        function = linear_pieces(net.member_ops(member))
        assert np.allclose(function(x[member, :, 0].double().numpy()), out[member], atol=1e-5)
        mids = 0.5 * (function.knots[1:] + function.knots[:-1])
        with torch.no_grad():
            at_mid = net(torch.tensor(np.stack([mids, mids]), dtype=torch.float32)[..., None])[member].double()
        assert np.allclose(function(mids), at_mid.numpy(), atol=1e-5)
        assert 1 <= function.pieces <= piece_bound(shape.width, shape.depth)


# --- parity ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 5])
def test_parity_data_and_splits(n):
    x, y = parity_inputs(n)
    assert x.shape == (2**n, n) and set(np.unique(x)) == {-1.0, 1.0}
    assert len({tuple(r) for r in x}) == 2**n  # every input once
    assert np.array_equal(y, ((x > 0).sum(axis=1) % 2).astype(float))  # odd number of +1 bits: label 1
    assert np.all(evaluate(parity_sum_ops(n), x)[:, 0].round() == y)  # n ReLUs of the sum compute it exactly
    whole = parity_task(n, [0, 1], 1.0)
    assert torch.equal(whole.x_train, whole.x_test) and whole.x_train.shape == (2, 2**n, n)
    split = parity_task(n, [0, 1], 0.5)
    for s in range(2):
        train = {tuple(r) for r in split.x_train[s].tolist()}
        test = {tuple(r) for r in split.x_test[s].tolist()}
        assert not train & test and len(train | test) == 2**n and len(train) == 2 ** (n - 1)
        labels = dict(zip(map(tuple, x.tolist()), y.tolist()))
        assert all(labels[tuple(r)] == v for r, v in zip(split.x_train[s].tolist(), split.y_train[s].tolist()))
    if n >= 3:  # each seed draws its own split
        assert not torch.equal(split.x_train[0], split.x_train[1])


# --- matched parameter counts ----------------------------------------------------------------------------------------
def test_matched_parameter_counts_match_within_the_stated_tolerance():
    for d_in in [1, *range(2, 11)]:
        for shape in shapes_for(d_in, [1, 2, 3, 4, 5, 6, 7, 8], [200, 1000, 5000]):
            assert abs(shape.mismatch) <= PARAM_TOLERANCE, shape
            # the nearest integer width: neither neighbour is closer to the budget
            gaps = [abs(param_count(d_in, w, shape.depth, shape.residual) - shape.budget)
                    for w in (shape.width - 1, shape.width, shape.width + 1) if w >= 1]
            assert abs(shape.params - shape.budget) == min(gaps)
    for shape in shapes_for(3, [1, 2, 5], [300]):  # the nets really have the counts the shapes say
        assert MemberNets(shape, [0]).count_parameters() == shape.params
    assert match_width(1, 1, False, 200) == 66 and param_count(1, 66, 1, False) == 199
    assert not any(s.residual and s.depth == 1 for s in shapes_for(1, [1, 2], [100]))


def test_seeds_trained_side_by_side_train_as_if_alone():
    from resx.studies.depth.tasks import sawtooth_task
    from resx.studies.depth.train import train_members

    shape = Shape("residual", 2, 4, 1, 100)
    _, together, _ = train_members(shape, [0, 1], sawtooth_task(2, 2), 30, 3e-3, torch.device("cpu"))
    _, alone, _ = train_members(shape, [1], sawtooth_task(2, 1), 30, 3e-3, torch.device("cpu"))
    assert together[1]["train_error"] == pytest.approx(alone[0]["train_error"], rel=1e-4)
    assert together[0]["train_error"] != pytest.approx(together[1]["train_error"], rel=1e-4)


# --- the command line, resuming, the figures and the report --------------------------------------------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from resx.cli import app

    return CliRunner().invoke(app, ["depth", *args])


TINY = ("--params", "60", "--seeds", "2", "--depths", "1,2", "--steps", "15", "--device", "cpu")


def test_cli_writes_its_columns_and_resumes(tmp_path):
    out = tmp_path / "depth"
    result = cli("--k", "1..2", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    fit, pieces = pd.read_csv(out / "depth_fit.csv"), pd.read_csv(out / "depth_pieces.csv")
    curves = pd.read_csv(out / "depth_curves.csv")
    assert tuple(fit.columns[: len(FIT_COLUMNS)]) == FIT_COLUMNS
    assert tuple(pieces.columns[: len(PIECES_COLUMNS)]) == PIECES_COLUMNS
    assert tuple(curves.columns) == CURVE_COLUMNS
    assert len(fit) == 2 * 3 * 2  # k x (shallow, plain 2, residual 2) x seeds
    built = pieces[pieces["built"] == "constructed"]
    assert (built["pieces"] == 2 ** built["k"]).all() and built["k"].tolist() == list(range(1, 13))
    trained = pieces[pieces["built"] == "trained"]
    assert len(trained) == len(fit) and (trained["pieces"] >= 1).all()
    assert set(curves["seed"]) == {0}  # the first seed's functions only
    info = json.loads((out / "depth_info.json").read_text())
    assert info["provenance"]["precision"] == "fp32" and info["targets"]["sawtooth"]["recipe"]["steps"] == 15
    assert {p.name for p in out.glob("*.png")} == {"depth_fits.png", "depth_error_sawtooth.png", "depth_pieces.png"}

    again = cli("--k", "1..2", *TINY, "--out", str(out))  # everything done: nothing trained
    assert again.exit_code == 0 and "0 nets trained, 12 done before" in again.output, again.output
    assert len(pd.read_csv(out / "depth_fit.csv")) == 12

    other = cli("--k", "1..2", *TINY[:-4], "--steps", "16", "--device", "cpu", "--out", str(out))
    assert other.exit_code != 0 and "steps 15 there, 16 now" in other.output and "Traceback" not in other.output

    parity = cli("--target", "parity", "--k", "2..3", *TINY, "--out", str(out))  # both targets in one folder
    assert parity.exit_code == 0, parity.output
    fit = pd.read_csv(out / "depth_fit.csv")
    assert set(fit["target"]) == {"sawtooth", "parity"} and (out / "depth_error_parity.png").is_file()

    replaced = cli("--k", "1", *TINY, "--out", str(out), "--overwrite")
    assert replaced.exit_code == 0 and set(pd.read_csv(out / "depth_fit.csv")["target"]) == {"sawtooth"}


def test_resume_trains_only_the_rows_that_are_missing(tmp_path):
    from resx.studies.depth.compute import run_depth

    out = tmp_path / "depth"
    options = dict(k="1", params="60", seeds=2, depths="1,2", steps=10, device="cpu", out=out, say=lambda _: None,
                   plot=False)
    first = run_depth("sawtooth", **options)
    assert first.trained == 6 and first.skipped == 0
    fit = pd.read_csv(out / "depth_fit.csv")
    kept = fit[~((fit["model"] == "residual") & (fit["seed"] == 1))]  # as if stopped before that net's seed 1
    kept.to_csv(out / "depth_fit.csv", index=False)
    second = run_depth("sawtooth", **options)
    assert second.trained == 1 and second.skipped == 5
    again = pd.read_csv(out / "depth_fit.csv")
    assert len(again) == 6 and not again.duplicated(["k", "model", "depth", "budget", "seed"]).any()
    more = run_depth("sawtooth", **{**options, "seeds": 3})  # another seed is added, the rest kept
    assert more.trained == 3 and more.skipped == 6


@pytest.mark.parametrize("args, message", [
    (("--target", "circle"), "unknown --target 'circle'"),
    (("--target", "parity", "--k", "1"), "--k takes integers >= 2"),
    (("--k", "15"), "too large"),
    (("--params", "0"), "--params takes integers >= 1"),
    (("--seeds", "0"), "--seeds must be at least 1"),
])
def test_cli_user_errors_in_one_line(args, message, tmp_path):
    result = cli(*args, "--steps", "5", "--device", "cpu", "--out", str(tmp_path / "o"))
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_figures_and_report_without_torch(tmp_path):
    out = tmp_path / "depth"
    assert cli("--k", "1..2", *TINY, "--out", str(out)).exit_code == 0
    assert cli("--target", "parity", "--k", "2..3", *TINY, "--out", str(out)).exit_code == 0
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from resx.studies.depth.draw import plot_depth
        from resx.studies.depth.report import depth_section
        out = Path({str(out)!r})
        written = plot_depth(out, formats=("svg",))
        assert sorted(p.name for p in written) == sorted(f"depth_{{s}}.svg" for s in
            ("fits", "error_sawtooth", "error_parity", "pieces")), written
        lines = depth_section(out, out.parent, out.parent, False)
        text = "\\n".join(lines)
        assert "exactly 2^k linear pieces for 12 of 12 k" in text, text
        assert "Computed in **fp32** on CPU" in text and "**Parity**" in text, text
        assert "computes parity exactly" in text, text
        assert "torch" not in sys.modules, "torch imported"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_reproduce_runs_both_targets_from_a_profile(tmp_path):
    from resx.reproduce import reproduce

    profile = tmp_path / "reproduce-depth-tiny.yaml"
    profile.write_text(textwrap.dedent("""
        reproduce:
          studies: [depth]
          requires_gpu: false
        depth:
          targets: [sawtooth, parity]
          sawtooth_k: "1..2"
          parity_n: "2..3"
          params: "40"
          depths: "1,2"
          seeds: 1
          steps: 5
    """))
    report = reproduce(str(profile), out=tmp_path / "run", device="cpu", say=lambda _: None)
    fit = pd.read_csv(tmp_path / "run" / "depth" / "depth_fit.csv")
    assert set(fit["target"]) == {"sawtooth", "parity"} and set(fit["k"]) == {1, 2, 3}
    assert "Depth separation" in report.read_text()
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert stages["depth"]["status"] == "finished"


def test_the_shipped_profile_names_both_targets():
    from resx.config import read_experiment
    from resx.studies.depth.declare import DepthSettings

    sections = read_experiment(REPO / "experiments" / "reproduce-cpu-depth.yaml")
    settings = DepthSettings(**sections["depth"])
    assert settings.targets == ["sawtooth", "parity"] and sections["reproduce"]["studies"] == ["depth"]
    assert sections["reproduce"]["requires_gpu"] is False
