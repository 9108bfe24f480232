"""`resx variants`: the shortcut and activation-placement variants of He et al. 2016 trained side by side (tiny nets on
tiny synthetic data), their tables, figures, gains at initialisation and report section; failed runs as results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from resx import reference
from resx.cli import app
from resx.config import TrainConfig
from resx.errors import ResxError
from resx.studies.variants.declare import CURVE_COLUMNS, FIGURES, GAIN_COLUMNS, SUMMARY_COLUMNS
from resx.studies.variants.plan import Variant, distinct_runs, parse_variants, plan_variants

runner = CliRunner()
DATA = "synthetic:size=8,train=128,test=64"
MLP = ["variants", "--base", "mlp_res", "--depth", "8", "--width", "16", "--data", DATA, "--epochs", "1",
       "--batch-size", "32", "--gains-batch", "32"]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def test_the_original_net_is_trained_once_for_both_tables(tmp_path):
    variants = parse_variants("identity,scale-0.5", "original,full-preact")
    planned = plan_variants(TrainConfig(model="resnet8", data=DATA), variants, seeds=2, out=tmp_path)
    assert len(planned) == 8
    runs = distinct_runs(planned)
    assert len(runs) == 6  # identity and original: one net, two seeds
    names = sorted({r.run_dir.name for r in runs})
    assert names == sorted(f"resnet8-{tag}-seed{s}" for tag in ("original", "shortcut-scale-0.5", "block-full-preact")
                           for s in (0, 1))
    by_tag = {r.run_dir.name: r.config for r in runs}
    assert by_tag["resnet8-shortcut-scale-0.5-seed0"].shortcut == "scale-0.5"
    assert by_tag["resnet8-block-full-preact-seed1"].block == "full-preact"
    assert by_tag["resnet8-original-seed0"].shortcut is None and by_tag["resnet8-original-seed0"].block is None


@pytest.mark.parametrize("shortcuts, blocks, base, message", [
    ("scale-x", "", "resnet8", r"--shortcuts scale-x: "),
    ("", "sideways", "resnet8", r"--blocks sideways: "),
    ("identity", "", "plain8", r"plain8 is a plain net"),
    ("", "", "resnet8", r"no variants to run"),
])
def test_bad_variants_are_refused_in_one_line(tmp_path, shortcuts, blocks, base, message):
    with pytest.raises(ResxError, match=message):
        plan_variants(TrainConfig(model=base, data=DATA), parse_variants(shortcuts, blocks), seeds=1, out=tmp_path)


def test_the_study_writes_its_tables_figures_and_gains(tmp_path):
    result = invoke(*MLP, "--shortcuts", "identity,scale-0.5", "--blocks", "original,full-preact", "--out", "v")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv("v/variants_summary.csv")
    assert tuple(summary.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert list(zip(summary["kind"], summary["variant"])) == [("shortcut", "identity"), ("shortcut", "scale-0.5"),
                                                              ("block", "original"), ("block", "full-preact")]
    assert (summary["seeds"] == 1).all() and (summary["failed_runs"] == 0).all()
    # identity and original are the same run: the same numbers in both tables
    one = summary.set_index("variant")
    assert one.loc["identity", "final_test_error_mean"] == one.loc["original", "final_test_error_mean"]
    assert one.loc["identity", "paper_test_error"] == reference.IDENTITY_SHORTCUT_TEST_ERROR["identity"]
    assert one.loc["scale-0.5", "paper_result"] == "fail" and math.isnan(one.loc["scale-0.5", "paper_test_error"])
    assert one.loc["full-preact", "paper_test_error"] == reference.ACTIVATION_PLACEMENT_TEST_ERROR["full-preact"][110]
    curves = pd.read_csv("v/variants_curves.csv")
    assert tuple(curves.columns[:len(CURVE_COLUMNS)]) == CURVE_COLUMNS and len(curves) == 4  # 4 rows, 1 epoch each
    gains = pd.read_csv("v/variants_gains.csv")
    assert tuple(gains.columns) == GAIN_COLUMNS and set(gains["blocks"]) == {3}  # depth 8 = 3 blocks
    # the shortcut path alone is lambda^l exactly: branches removed, an MLP's identity path keeps the RMS
    scaled = gains[gains["variant"] == "scale-0.5"].sort_values("block")
    assert scaled["shortcut_forward_gain"].tolist() == pytest.approx([0.5, 0.25, 0.125], rel=1e-5)
    assert scaled["predicted_forward_gain"].tolist() == pytest.approx([0.5, 0.25, 0.125])
    assert scaled["shortcut_backward_gain"].tolist() == pytest.approx([0.25, 0.5, 1.0], rel=1e-5)  # lambda^(L-l)
    assert scaled["predicted_backward_gain"].tolist() == pytest.approx([0.25, 0.5, 1.0])
    identity = gains[gains["variant"] == "identity"]
    assert identity["shortcut_forward_gain"].tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-5)
    info = json.loads(Path("v/variants_info.json").read_text())
    assert info["provenance"]["git_commit"] is not None or info["provenance"]["commit_source"]
    assert info["runs"] == 3 and len(info["history"]) == 1 and "one SGD step" in info["iteration"]
    for stem in FIGURES:
        assert Path(f"v/{stem}.png").is_file(), stem

    # rerun: nothing trained again, the gains kept; more seeds extend the same study
    again = invoke(*MLP, "--shortcuts", "identity,scale-0.5", "--blocks", "original,full-preact", "--out", "v")
    assert again.exit_code == 0 and "skip" in again.output
    info = json.loads(Path("v/variants_info.json").read_text())
    assert info["trained"] == 0 and len(info["history"]) == 2
    # another recipe into the same folder is refused in one line
    other = invoke(*MLP[:-6], "--epochs", "2", "--batch-size", "32", "--shortcuts", "identity", "--blocks", "",
                   "--out", "v")
    assert other.exit_code != 0 and "other settings" in other.output

    # resx plot and resx report find the study by its CSVs
    assert invoke("plot", "v", "--format", "png").exit_code == 0
    report = invoke("report", "v")
    assert report.exit_code == 0, report.output
    text = Path("v/REPORT.md").read_text()
    assert "Shortcut variants" in text and "Block variants" in text and "lambda^L" in text


def test_a_run_that_diverges_is_a_result_not_a_crash(tmp_path):
    result = invoke(*MLP, "--shortcuts", "identity", "--blocks", "", "--lr", "1e30", "--out", "v")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv("v/variants_summary.csv")
    row = summary.iloc[0]
    assert row["failed_runs"] == 1 and row["seeds"] == 0 and row["diverged_at_iteration"] >= 1
    assert math.isnan(row["final_test_error_mean"])
    info = json.loads(next(Path("v").glob("*/run_info.json")).read_text())
    assert info["status"] == "diverged"
    again = invoke(*MLP, "--shortcuts", "identity", "--blocks", "", "--lr", "1e30", "--out", "v")
    assert again.exit_code == 0 and "diverged (a result)" in again.output  # not trained again


def test_a_diverging_run_leaves_the_other_workers_training(tmp_path):
    """On a CPU the grid trains in worker processes: one run's NaN does not stop the others."""
    from resx.studies import grids

    good = TrainConfig(model="mlp_res", depth=4, width=8, data=DATA, epochs=1, batch_size=32)
    bad = TrainConfig(model="mlp_res", depth=4, width=8, data=DATA, epochs=1, batch_size=32, lr=1e30)
    runs = [grids.GridRun("mlp_res", "mlp", True, 4, 0, c, tmp_path / name) for name, c in (("bad", bad), ("good", good))]
    info = grids.run_grid(runs, concurrency=2, divergence_is_a_result=True)
    assert info["diverged"] == ["bad"]
    assert json.loads((tmp_path / "good/run_info.json").read_text())["status"] == "finished"
    with pytest.raises(ResxError, match="NaN or infinite"):
        grids.run_grid([grids.GridRun("mlp_res", "mlp", True, 4, 0, bad, tmp_path / "bad2")], concurrency=1)


def test_report_sentences_come_from_the_summary():
    from resx.studies.variants.report import verdicts

    part = pd.DataFrame([
        dict(variant="identity", kind="shortcut", final_test_error_mean=0.10, final_train_error_mean=0.05,
             paper_test_error=0.0661, paper_result="6.61", failed_runs=0),
        dict(variant="scale-0.5", kind="shortcut", final_test_error_mean=0.20, final_train_error_mean=0.15,
             paper_test_error=float("nan"), paper_result="fail", failed_runs=0),
        dict(variant="dropout-0.5", kind="shortcut", final_test_error_mean=float("nan"), final_train_error_mean=None,
             paper_test_error=float("nan"), paper_result="fail", failed_runs=1, diverged_at_iteration=12),
    ])
    lines = verdicts(part, "shortcut")
    assert lines[0].startswith("- scale-0.5: test error 20.00%, worse than identity (10.00%); training error +10.00")
    assert "the paper's net failed" in lines[0]
    assert lines[1] == "- dropout-0.5: no finished run (1 (from iteration 12) diverged); paper: fail."


def test_variants_is_a_registered_study_with_a_command():
    from resx.studies.registry import get_study

    study = get_study("variants")
    assert study.command_name == "variants" and not study.in_every_profile
    assert study.found_in({"variants_summary.csv"}) and not study.found_in({"variants_curves.csv"})
    assert Variant("shortcut", "identity").is_original and Variant("block", "original").is_original


def test_the_cpu_profile_asks_for_resnet20_on_cifar_and_the_demo_mlps_on_fashion_mnist(tmp_path):
    from resx.config import read_experiment, resolve_config
    from resx.reproduce import profile_path
    from resx.studies.variants.compute import options_from_profile
    from resx.studies.variants.declare import VariantsSettings

    path = profile_path("cpu-variants")
    settings = VariantsSettings(**read_experiment(path)["variants"])
    overrides = {"data": "imagefolder:/somewhere/cifar10-jpeg"}  # `--data` given for the CIFAR grid
    train = resolve_config(path, overrides)
    (main_out, main), (mlp_out, mlp) = options_from_profile(settings, train, overrides, tmp_path, str(path))
    assert main_out == tmp_path / "variants" and mlp_out == tmp_path / "variants-mlp"
    assert (main.base, main.train.data, main.train.epochs) == ("resnet20", "imagefolder:/somewhere/cifar10-jpeg", 10)
    assert (mlp.base, mlp.train.data, mlp.train.depth, mlp.train.epochs, mlp.seeds) == (
        "mlp_res", "fashion-mnist", 50, 3, 2)
    # every variant the profiles name is one the zoo builds
    for options in (main, mlp):
        plan_variants(options.train, options.variants(), seeds=1, out=tmp_path)
    paper = VariantsSettings(**read_experiment(profile_path("paper"))["variants"])
    (_, full), = options_from_profile(paper, resolve_config(profile_path("paper"), {}), {}, tmp_path, "paper")
    assert full.base == "resnet110" and full.train.iterations == 64000 and full.train.warmup_lr == 0.01
    assert len(distinct_runs(plan_variants(full.train, full.variants(), seeds=1, out=tmp_path))) == 15


def test_an_also_entry_without_a_name_is_refused(tmp_path):
    from resx.studies.variants.compute import options_from_profile
    from resx.studies.variants.declare import VariantsSettings

    settings = VariantsSettings(base="resnet8", also=[{"base": "mlp_res"}])
    with pytest.raises(ResxError, match=r"entry 1 must be a mapping with a name"):
        options_from_profile(settings, TrainConfig(data=DATA), {}, tmp_path, "p.yaml")


def test_cardinalities_build_resnexts_of_the_budget_and_train_them(tmp_path):
    from resx.models.budget import model_budget, resnext_for_budget

    result = invoke("variants", "--budget-of", "resnet20", "--cardinalities", "1,2", "--data", DATA,
                    "--iterations", "2", "--batch-size", "16", "--gains-batch", "16", "--out", "c")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv("c/variants_summary.csv")
    assert summary["kind"].tolist() == ["cardinality", "cardinality"] and summary["variant"].tolist() == [1, 2]
    budget = model_budget("resnet20")[0]
    for row in summary.itertuples():
        match = resnext_for_budget("resnet20", int(row.variant))
        assert row.model == match.name and row.params == match.params and row.macs == match.macs
        assert abs(row.params / budget - 1) < 0.15
        assert f"C={row.variant}: {row.model}, {row.params:,} parameters" in result.output
    assert summary["paper_result"].str.startswith("ImageNet top-1").all()
    with pytest.raises(ResxError, match=r"--cardinalities x: a cardinality is a whole number"):
        parse_variants("", "", "x")
