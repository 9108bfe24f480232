"""Input checks found by a hostile user: each refused through the CLI in one line (exit 1, no traceback, no files
made), and the one place every input of its kind passes tested on its own.

1. keys given twice: YAML experiment files (`yaml_loader`), `k=v` data specs (`parse_options`);
2. image folders of one class, or with empty class folders (`list_imagefolder`), any dataset of one class;
3. lesion swap counts beyond the most swaps a net's orders need (`swap_counts_for`);
4. a study of an unfinished run with --force records its status and epoch (`run_record`);
5. the lr schedule's milestones never fall before the first step (`milestone_iterations`);
6. messages: a file where a folder is needed and vice versa, cut at word boundaries (`clip`), counts (`count`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from resx.cli import app
from resx.config import TrainConfig, load_yaml_text, milestone_iterations, read_yaml
from resx.data import load_dataset, parse_options, parse_synthetic
from resx.errors import ResxError
from resx.text import clip, count, plural, reason

from conftest import TINY_DATA
from test_data import write_imagefolder, write_jpeg

runner = CliRunner()
TRAIN = ["train", "resnet8", "--data", TINY_DATA, "--epochs", "1", "--batch-size", "32", "--device", "cpu"]


def fail(*args: str, match: str) -> str:
    """`resx ARGS` fails as a user error: exit 1, one `error:` line matching `match`, no traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, f"resx {' '.join(map(str, args))}: exit {result.exit_code}\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert re.search(match, lines[0]), f"{match!r} not in: {lines[0]}"
    return lines[0]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 1-epoch resnet14 (one pair of same-shape blocks: 0 and 1), made once."""
    from resx.engine import train

    root = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    train(TrainConfig(model="resnet14", data=TINY_DATA, epochs=1, batch_size=32, device="cpu",
                      data_dir=str(root / "data")), root / "resnet14")
    return root / "resnet14"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "resnet14")
    return tmp_path / "resnet14"


# --- 1. keys given twice ---------------------------------------------------------------------------------------------
def test_yaml_key_twice_is_refused_with_both_lines(tmp_path):
    Path("dup.yaml").write_text("model: resnet8\nlr: 0.1\nepochs: 1\nlr: 0.2\n")
    before = files_under(tmp_path)
    fail(*TRAIN, "--config", "dup.yaml", match=r"^error: config file dup.yaml is not valid YAML at line 4, column 1: "
                                                 r"key 'lr' given twice \(first at line 2\); give each key once$")
    assert files_under(tmp_path) == before


def test_yaml_loader_checks_every_mapping_and_keeps_merges():
    with pytest.raises(Exception, match=r"key 'draws' given twice \(first at line 3\)"):
        load_yaml_text("train: {lr: 0.1}\nlesion:\n  draws: 2\n  draws: 3\n")
    with pytest.raises(Exception, match="key 1 given twice"):
        load_yaml_text("{1: a, 1: b}")
    # a merge key may be overridden: that is what it is for
    assert load_yaml_text("base: &b {lr: 0.1, epochs: 1}\ntrain:\n  <<: *b\n  lr: 0.2\n")["train"] == {"lr": 0.2, "epochs": 1}
    assert load_yaml_text("a: 1\nb: {a: 2}\n") == {"a": 1, "b": {"a": 2}}  # the same key in two mappings is fine


def test_yaml_key_twice_in_a_section(tmp_path):
    Path("profile.yaml").write_text("train:\n  lr: 0.1\nlesion:\n  draws: 2\n  swaps: '1..2'\n  draws: 3\n")
    with pytest.raises(ResxError, match=r"profile.yaml is not valid YAML at line 6, column 3: key 'draws' given twice"):
        read_yaml("profile.yaml")


def test_data_spec_key_twice_is_refused(tmp_path):
    before = files_under(tmp_path)
    fail("train", "resnet8", "--data", "synthetic:train=64,train=32", "--epochs", "1", "--device", "cpu",
         match=r"^error: synthetic option train given twice \(train=64 and train=32\); give each once$")
    assert files_under(tmp_path) == before


def test_parse_options_each_key_once():
    assert parse_options("a=1, b=2", {"a": 0, "b": 0}, "option") == {"a": "1", "b": "2"}
    with pytest.raises(ResxError, match=r"option a given twice \(a=1 and a=3\)"):
        parse_options("a=1,b=2,a=3", {"a": 0, "b": 0}, "option")
    with pytest.raises(ResxError, match=r"bad option 'c=1'; allowed: a=INT, b=INT"):
        parse_options("c=1", {"a": 0, "b": 0}, "option")
    with pytest.raises(ResxError, match="given twice"):
        parse_synthetic("synthetic:size=8,size=8")  # even with the same value: one of them is a typo


# --- 2. image folders of one class, empty class folders ------------------------------------------------------------
def test_one_class_image_folder_is_refused(tmp_path):
    write_jpeg(tmp_path / "pets" / "train" / "cat" / "0.jpg", (250, 10, 10))
    write_jpeg(tmp_path / "pets" / "test" / "cat" / "0.jpg", (250, 10, 10))
    before = files_under(tmp_path)
    fail("train", "resnet8", "--data", "imagefolder:pets", "--epochs", "1", "--device", "cpu",
         match=r"^error: imagefolder .*pets: train/ has 1 class \('cat'\), at least 2 needed")
    assert files_under(tmp_path) == before  # no run folder, no data cache


def test_empty_class_folder_is_named(tmp_path):
    write_jpeg(tmp_path / "pets" / "train" / "cat" / "0.jpg", (250, 10, 10))
    write_jpeg(tmp_path / "pets" / "test" / "cat" / "0.jpg", (250, 10, 10))
    for split in ("train", "test"):
        (tmp_path / "pets" / split / "dog").mkdir()
    before = files_under(tmp_path)
    fail("train", "resnet8", "--data", "imagefolder:pets", "--epochs", "1", "--device", "cpu",
         match=r"^error: imagefolder .*pets: class folders train/dog, test/dog hold no images \(.*\); 1 class with "
               r"training images, at least 2 needed")
    assert files_under(tmp_path) == before


def test_image_folder_splits_must_have_the_same_classes(tmp_path):
    root = write_imagefolder(tmp_path / "pets")
    shutil.rmtree(root / "test" / "dog")
    with pytest.raises(ResxError, match=r"test lacks class folder 'dog' that train/ has"):
        load_dataset(f"imagefolder:{root}")
    (root / "test" / "dog").mkdir()
    with pytest.raises(ResxError, match=r"class folder test/dog holds no images"):
        load_dataset(f"imagefolder:{root}")
    write_jpeg(root / "test" / "dog" / "0.jpg", (10, 10, 250))
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    assert load_dataset(f"imagefolder:{root}").classes == ["cat", "dog"]


def test_image_folder_path_that_is_a_file(tmp_path):
    Path("pets.zip").write_bytes(b"PK")
    with pytest.raises(ResxError, match=r"imagefolder path .*pets.zip is a file, not a folder"):
        load_dataset("imagefolder:pets.zip")


def test_any_dataset_of_one_class_is_refused():
    with pytest.raises(ResxError, match=r"dataset synthetic:train=1 has training images of 1 class \('class\d'\); "
                                        r"a classifier needs at least 2"):
        load_dataset("synthetic:train=1")


def test_data_dir_that_is_a_file(tmp_path):
    Path("datasets").write_text("not a folder")
    before = files_under(tmp_path)
    fail(*TRAIN, "--data-dir", "datasets", match=r"^error: --data-dir datasets is a file, not a folder")
    assert files_under(tmp_path) == before


# --- 3. lesion swap counts -------------------------------------------------------------------------------------------
def test_lesion_swaps_beyond_any_order_are_refused(run, tmp_path):
    fail("lesion", run, "--swaps", "1000", "--device", "cpu", "--out", "out",
         match=r"^error: --swaps 1000: run resnet14 \(resnet14\) has 1 pair of same-shape blocks to swap: 2 orders of "
               r"its blocks, each reached in at most 1 swap; .*give swap counts up to 1$")
    assert not Path("out").exists()


def test_swap_limits():
    from resx.models import create_model
    from resx.studies.lesion.plans import groups_of_pairs, most_swaps, reachable_orders, swap_groups, swappable_pairs

    for name, groups in (("resnet14", [2]), ("resnet20", [3, 2, 2]), ("resnet110", [18, 17, 17])):
        net = create_model(name)
        pairs = swappable_pairs(net)
        assert [len(g) for g in swap_groups(net)] == groups
        assert sorted(map(tuple, groups_of_pairs(pairs))) == sorted(map(tuple, swap_groups(net)))
        assert most_swaps(pairs) == sum(g - 1 for g in groups)
    assert reachable_orders(swappable_pairs(create_model("resnet20"))) == 6 * 2 * 2
    assert most_swaps([]) == 0 and reachable_orders([]) == 1


def test_swap_counts_are_capped_with_a_note():
    from types import SimpleNamespace

    from resx.studies.lesion.plans import swap_counts_for

    run = SimpleNamespace(name="r", model="resnet20")
    pairs = [(0, 1), (0, 2), (1, 2), (3, 4), (5, 6)]  # groups of 3, 2, 2: at most 2 + 1 + 1 = 4 swaps
    assert swap_counts_for(run, pairs, [1, 2, 3, 4]) == ([1, 2, 3, 4], None)
    kept, note = swap_counts_for(run, pairs, list(range(1, 11)))
    assert kept == [1, 2, 3, 4] and note.startswith("swap counts 5,6,7,8,9,10 left out: run r (resnet20) has 5 pairs")
    assert "24 orders" in note and "at most 4 swaps" in note
    with pytest.raises(ResxError, match="give swap counts up to 4"):
        swap_counts_for(run, pairs, [5, 9])


# --- 4. --force on an unfinished run: recorded -------------------------------------------------------------------------
def test_lesion_force_records_the_runs_status_and_epoch(run):
    info_file = run / "run_info.json"
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "status": "interrupted"}))
    fail("lesion", run, "--studies", "single", "--device", "cpu", "--out", "refused", match="is not finished")
    assert not Path("refused").exists()
    result = runner.invoke(app, ["lesion", str(run), "--studies", "single", "--device", "cpu", "--out", "out", "--force"])
    assert result.exit_code == 0, result.output
    record = json.loads(Path("out/lesion_info.json").read_text())["runs"][0]["run_record"]
    assert record == {"status": "interrupted", "epoch": 1, "iterations_done": 8, "total_iterations": 8}


STUDY_ARGS = {  # the smallest settings of each study of trained runs, and where its info file keeps each run's entry
    "paths": (["--samples", "4", "--batch-size", "16"], "paths_info.json", lambda info: info["nets"][0]),
    "landscape": (["--dims", "1", "--points", "2", "--samples", "16"], "landscape_info.json",
                  lambda info: info["runs"]["resnet14"]),
    "signal": (["--samples", "16", "--jacobian-examples", "2", "--lanczos-steps", "3"], "signal_info.json",
               lambda info: info["nets"][0]),
}


@pytest.mark.parametrize("study", list(STUDY_ARGS))
def test_other_studies_record_the_run_too(study, run):
    args, name, entry = STUDY_ARGS[study]
    info_file = run / "run_info.json"
    info_file.write_text(json.dumps({**json.loads(info_file.read_text()), "status": "running"}))
    result = runner.invoke(app, [study, str(run), *args, "--device", "cpu", "--out", "out", "--force"])
    assert result.exit_code == 0, result.output
    record = entry(json.loads(Path("out", name).read_text()))["run_record"]
    assert record == {"status": "running", "epoch": 1, "iterations_done": 8, "total_iterations": 8}


def test_run_record_of_an_epoch_checkpoint(run):
    from resx.studies.common import run_record

    assert run_record(run) == {"status": "finished", "epoch": 1, "iterations_done": 8, "total_iterations": 8}
    (run / "checkpoints").mkdir()
    shutil.copy(run / "checkpoint.pt", run / "checkpoints" / "epoch-001.pt")
    assert run_record(run / "checkpoints" / "epoch-001.pt")["status"] == "finished"  # the run's run_info.json
    (run / "run_info.json").unlink()
    assert run_record(run / "checkpoint.pt")["status"] is None
    assert run_record("nowhere.pt") == dict.fromkeys(("status", "epoch", "iterations_done", "total_iterations"))


# --- 5. the lr schedule ----------------------------------------------------------------------------------------------
def test_milestones_fall_after_the_first_step():
    assert milestone_iterations([0.5, 0.75], 64_000) == [32_000, 48_000]
    assert milestone_iterations([0.5, 0.75], 1) == [1, 1]  # one iteration: taken at lr, not lr/10
    assert milestone_iterations([0.1], 3) == [1] and milestone_iterations([0.5], 2) == [1]


def test_one_iteration_trains_at_lr(tmp_path):
    result = runner.invoke(app, ["train", "resnet8", "--data", TINY_DATA, "--iterations", "1", "--batch-size", "32",
                                 "--device", "cpu", "--out", "one"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv("one/metrics.csv")["lr_start"].tolist() == [0.1]


# --- 6. messages -------------------------------------------------------------------------------------------------------
def test_config_that_is_a_folder(tmp_path):
    Path("configs").mkdir()
    Path("configs/a.yaml").write_text("lr: 0.1\n")
    before = files_under(tmp_path)
    fail(*TRAIN, "--config", "configs",
         match=r"^error: config file configs is a folder, not a file; give a YAML experiment file \(YAML files in it: a.yaml\)$")
    assert files_under(tmp_path) == before


def test_results_folder_that_is_a_file():
    from resx.plots.discover import check_results_folder, find_studies

    Path("curves.csv").write_text("x\n")
    with pytest.raises(ResxError, match=r"^RESULTS_DIR curves.csv is a file, not a folder; give the folder that holds"):
        find_studies("curves.csv")
    with pytest.raises(ResxError, match=r"^no such folder: nowhere"):
        check_results_folder("nowhere")


def test_plot_of_a_file():
    Path("curves.csv").write_text("x\n")
    fail("plot", "curves.csv", match=r"^error: RESULTS_DIR curves.csv is a file, not a folder")


def test_clip_cuts_at_a_word_boundary():
    text = "Weights only load failed. This file can still be loaded, to do so you have two options"
    assert clip(text, 200) == text
    cut = clip(text, 40)
    assert len(cut) <= 40 and cut.endswith("...") and text.startswith(cut[:-3])
    assert text[len(cut) - 3] in " ,." and cut == "Weights only load failed. This file..."
    assert clip("x" * 50, 10) == "xxxxxxx..."  # one long word: cut inside it, still with the ellipsis
    assert reason(RuntimeError("\n  first line\nsecond")) == "first line"
    assert reason(KeyError()) == "KeyError"
    assert reason(ValueError("a b c d e f g h"), 10) == "a b c d..."


def test_counts_agree_with_their_nouns():
    assert count(1, "epoch") == "1 epoch" and count(2, "epoch") == "2 epochs" and count(0, "epoch") == "0 epochs"
    assert count(1, "class") == "1 class" and count(3, "class") == "3 classes"
    assert count(64_000, "iteration") == "64,000 iterations" and count(1, "swap") == "1 swap"
    assert count(2, "deletable block") == "2 deletable blocks" and plural("batch") == "batches"
    assert count(2, "run", "runs so far") == "2 runs so far"
