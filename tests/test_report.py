"""resx.report: REPORT.md holds resx's numbers beside the papers', and the 90% gradient window is right."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from resx import reference
from resx.errors import ResxError
from resx.markdown import markdown_table
from resx.studies.paths.declare import effective_window
from resx.report import write_report
from test_plots import write_degradation, write_example_results, write_lesion, write_paths


# --- the effective window (Veit et al. 2016: 5 to 17 of 54 blocks) -----------------------------------------------
def test_window_on_a_hand_made_distribution():
    k = [0, 1, 2, 3, 4, 5, 6, 7]
    total = [0, 1, 4, 30, 40, 20, 4, 1]  # sums to 100: k 3..5 hold 90 exactly
    assert effective_window(k, total) == (3, 5, pytest.approx(0.90))


def test_window_prefers_the_shorter_range_then_the_heavier():
    # 92% in k 2..3, while k 5..6 holds 91%: both two wide, so the heavier wins
    assert effective_window([0, 1, 2, 3, 4, 5, 6], [1, 2, 46, 46, 1, 2, 2], mass=0.9)[:2] == (2, 3)
    assert effective_window([0, 1, 2, 3], [0, 0, 100, 0]) == (2, 2, pytest.approx(1.0))
    assert effective_window([0, 1, 2], [1, 1, 1], mass=1.0) == (0, 2, pytest.approx(1.0))


def test_window_ignores_the_row_order_and_works_on_veit_shaped_totals():
    n = 54
    ks = list(range(n + 1))
    totals = [math.comb(n, k) * 0.22 ** k for k in ks]  # C(n, k) x a gradient falling exponentially with k
    lo, hi, captured = effective_window(ks[::-1], totals[::-1])
    assert captured >= 0.9
    assert 4 <= lo < hi <= 18  # Veit et al.: 5 to 17
    # no shorter window holds 90%
    share = [t / sum(totals) for t in totals]
    width = hi - lo
    assert all(sum(share[a:a + width]) < 0.9 for a in range(n + 2 - width))


def test_window_rejects_nonsense():
    with pytest.raises(ValueError):
        effective_window([0, 1], [0, 0])
    with pytest.raises(ValueError):
        effective_window([0, 1], [1, 1], mass=0)


def test_markdown_table():
    table = markdown_table(["a", "b|c"], [[1, None], ["x", float("nan")]], align="lr")
    assert table.splitlines() == ["| a | b\\|c |", "| --- | ---: |", "| 1 | — |", "| x | — |"]


# --- the report ------------------------------------------------------------------------------------------------
def test_report_holds_tables_reference_numbers_and_window(tmp_path):
    results = write_example_results(tmp_path / "results")
    (results / "stages.json").write_text(json.dumps({"degradation": {"seconds": 3723.0}, "lesion": {"seconds": 12}}))
    run = results / "degradation" / "runs" / "resnet20-s0"
    run.mkdir(parents=True)
    (run / "run_info.json").write_text(json.dumps({"seed": 0, "dataset": "imagefolder:/data/cifar10-jpeg",
                                                   "git_commit": "0123abc", "device_name": "CPU"}))
    (run / "config.yaml").write_text("model: resnet20\nepochs: 3\n")
    path = write_report(results, meta={"machine": "laptop", "gpu": None, "seeds": [0, 1]})
    assert path == results / "REPORT.md"
    text = path.read_text()

    # provenance
    assert "| machine | laptop |" in text and "| seeds | 0, 1 |" in text
    assert "| degradation | 1:02:03 |" in text
    assert "0123abc" in text and "JPEG" in text  # imagefolder -> the JPEG-copy note

    # degradation: summary table with He et al. Table 6 beside it, and the verdicts
    summary = pd.read_csv(results / "degradation" / "summary.csv")
    resnet56 = summary[summary["model"] == "resnet56"].iloc[0]
    assert "| final train error | final test error |" in text
    row = next(line for line in text.splitlines() if line.startswith("| resnet56 |"))
    assert f"{100 * resnet56['final_test_error_mean']:.2f}" in row
    assert "| 6.97 |" in row  # He et al. Table 6, ResNet-56
    assert "Degradation (He et al. Fig. 6, left): shows" in text
    assert "Residual nets improve with depth" in text

    # lesion: Veit et al.'s numbers beside resx's
    for k, error in reference.VEIT_DELETE_K_ERROR.items():
        assert f"| {k} |" in text and f"{100 * error:.1f}" in text
    for error in reference.VEIT_SWAP_ERROR.values():
        assert f"{100 * error:.1f}" in text
    assert "18: 12.2, 36: 12.1" in text

    # paths: the window computed from path_total_gradient.csv, beside Veit's 5 to 17 and 27
    totals = pd.read_csv(results / "paths" / "path_total_gradient.csv")
    lo, hi, _ = effective_window(totals["k"], totals["total"])
    assert f"| {lo} to {hi} (" in text and "| 5 to 17 |" in text and "| 27 |" in text
    assert "first / last" in text

    # figures linked relative to the report, only when drawn
    assert "degradation/degradation_curves.png" not in text
    from resx.plots import plot_results

    plot_results(results, formats=("png",))
    text = write_report(results).read_text()
    assert "](degradation/degradation_curves.png)" in text and "](paths/paths.png)" in text


def test_report_elsewhere_links_back_to_the_figures(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_paths(results)
    (results / "paths.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    path = write_report(results, out=tmp_path / "docs" / "REPORT.md")
    assert "](../results/paths.png)" in path.read_text()


def test_report_verdicts_say_no_when_the_degradation_does_not_show(tmp_path):
    write_degradation(tmp_path)
    (tmp_path / "summary.csv").unlink()  # the report then summarises curves.csv itself
    curves = pd.read_csv(tmp_path / "curves.csv")
    curves.loc[curves["model"] == "plain56", "train_error"] = 0.01  # the deeper plain net now trains better
    curves.to_csv(tmp_path / "curves.csv", index=False)
    text = write_report(tmp_path).read_text()
    assert "Degradation (He et al. Fig. 6, left): does not show" in text
    assert "| plain56 | plain | 56 | — | 2 | 1.00 ± 0.00 |" in text


def test_report_with_only_a_lesion_study(tmp_path):
    write_lesion(tmp_path)
    text = write_report(tmp_path).read_text()
    assert "## Lesion study" in text and "## Degradation" not in text and "## Paths" not in text
    assert "No run_info.json" in text


def test_report_on_an_empty_folder_says_so(tmp_path):
    text = write_report(tmp_path).read_text()
    assert "No study results found" in text


def test_report_on_a_missing_folder(tmp_path):
    with pytest.raises(ResxError, match="no such folder"):
        write_report(tmp_path / "nope")


def test_lesion_verdicts_say_whether_the_nets_behave_as_veit_et_al():
    from resx.studies.lesion.report import delete_k_verdicts, single_deletion_verdicts

    single = pd.DataFrame({
        "run": ["res"] * 4 + ["plain"] * 2, "block": [0, 1, 2, 3, 0, 1], "residual": [True] * 4 + [False] * 2,
        "test_error": [0.30, 0.11, 0.105, 0.12, 0.88, 0.91], "baseline_error": [0.10] * 4 + [0.12] * 2,
    })
    lines = single_deletion_verdicts(single)
    assert "75% of its 4 single deletions stay within 2 points" in lines[0] and "(as Veit" in lines[0]
    assert "88.00 to 91.00% error against 12.00%" in lines[1] and "(as Veit" in lines[1]
    means = pd.DataFrame({"run": ["res"] * 3, "k": [1, 2, 3], "mean": [0.1, 0.2, 0.15], "std": [0, 0, 0]})
    assert "rises at 1 of 2 steps" in delete_k_verdicts(means)[0]


def test_recipe_line_says_what_the_runs_used():
    from resx.report import recipe_line

    found = {"momentum": ["0.9"], "weight_decay": ["0.0001"], "batch_size": ["128"], "lr": ["0.1"],
             "lr_milestones": ["0.5, 0.75"], "augment": ["False"], "warmup_lr": ["None", "0.01"],
             "precision": ["auto", "bf16"]}
    line = recipe_line(found)
    assert "no augmentation" in line and "warm-up at lr 0.01" in line and "arithmetic: bf16 " in line
    assert "pad-4 crop and flip for some" not in line


def test_report_sentences_are_computed_from_the_csvs(tmp_path):
    """A sentence that states a result follows its CSV: change a number in the CSV and the sentence changes."""
    write_lesion(tmp_path)
    before = write_report(tmp_path).read_text()
    assert "the deletions that hurt most: block 0 (" in before
    single = pd.read_csv(tmp_path / "lesion_single.csv")
    worst_later = (single["run"] == "resnet20") & (single["block"] == 4)
    single.loc[worst_later, "test_error"] = 0.5
    single.to_csv(tmp_path / "lesion_single.csv", index=False)
    after = write_report(tmp_path).read_text()
    assert "the deletions that hurt most: block 4 (50.00%), block 0 (" in after
    assert before != after


def test_a_report_without_trained_runs_has_no_recipe_line_and_its_own_stage_is_not_unfinished(tmp_path):
    """A profile of a study that trains its own small nets leaves no config.yaml: no CIFAR recipe line of question
    marks; and the report stage writing the report is not listed as an unfinished stage."""
    write_lesion(tmp_path)
    (tmp_path / "stages.json").write_text(json.dumps({"lesion": {"status": "finished", "seconds": 5.0},
                                                      "report": {"status": "running", "earlier_seconds": 0.0}}))
    text = write_report(tmp_path).read_text()
    assert "Recipe of these runs" not in text
    assert "not finished" not in text and "Total: 5.0 s." in text
