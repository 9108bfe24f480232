"""Studies stopped part way (Ctrl-C, SIGTERM, a kill) keep what they finished: lesion per experiment of each run,
paths per part (the path gradients, each net's block gradients), signal per net. The same command continues from
them without computing them again, to the CSVs of an uninterrupted study, and the message of the stopped study says
so. Tiny nets on the CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resx.cli import app
from resx.config import resolve_config
from resx.engine import train

DATA = "synthetic:size=8,train=64,test=32"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume") / "run"
    train(resolve_config(None, dict(model="resnet8", data=DATA, epochs=1, batch_size=32)), folder)
    return folder


@pytest.fixture
def good(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "good")
    return Path("good")


def counting(monkeypatch, module, name: str, stop_after: int | None = None,
             stop_with: type[BaseException] = KeyboardInterrupt) -> list[int]:
    """Count the calls of `module.name`; with `stop_after`, the call after that many raises `stop_with` (Ctrl-C,
    or what the CLI's SIGTERM handler raises, right after the first units were finished)."""
    calls: list[int] = []
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        if stop_after is not None and len(calls) >= stop_after:
            raise stop_with
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_text() == (b / name).read_text(), name


def stopped(args: list[str], kept: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    line = [line for line in result.output.splitlines() if line.startswith("interrupted")]
    assert line and kept in line[0] and "run the same command again to continue from them" in line[0], result.output


def test_an_interrupted_lesion_keeps_each_finished_experiment(good, monkeypatch):
    from resx.studies.lesion import compute

    args = ["lesion", str(good), str(good), "--draws", "2", "--device", "cpu"]  # two runs: resnet8, resnet8-2
    assert runner.invoke(app, [*args, "--out", "U"]).exit_code == 0

    # Ctrl-C in the second experiment (resnet8's delete-k): resnet8's single is kept
    with monkeypatch.context() as patch:
        counting(patch, compute, "lesion_delete_k", stop_after=0)
        stopped([*args, "--out", "S"], kept="1 of 4 lesion experiments are kept in S")
    single = counting(monkeypatch, compute, "lesion_single")
    delete_k = counting(monkeypatch, compute, "lesion_delete_k")
    again = runner.invoke(app, [*args, "--out", "S"])
    assert again.exit_code == 0, again.output
    assert "1 of 4 lesion experiments kept" in again.output
    assert (len(single), len(delete_k)) == (1, 2)  # resnet8's single is not computed again
    same_files(Path("S"), Path("U"), ["lesion_single.csv", "lesion_delete_k.csv", "lesion_swap.csv"])
    assert not list(Path("S").glob(".lesion-progress.json"))  # finished: a rerun is refused as before
    refused = runner.invoke(app, [*args, "--out", "S"])
    assert refused.exit_code == 1 and "already holds a lesion study" in refused.output


def test_an_unfinished_study_with_other_settings_is_refused(good, monkeypatch):
    from resx.studies.lesion import compute

    args = ["lesion", str(good), "--device", "cpu", "--out", "S"]
    with monkeypatch.context() as patch:
        counting(patch, compute, "lesion_delete_k", stop_after=0)
        stopped([*args, "--draws", "2"], kept="1 of 2 lesion experiments")
    refused = runner.invoke(app, [*args, "--draws", "3"])
    assert refused.exit_code == 1 and "holds an unfinished lesion study made with other settings (draws: 2 -> 3)" \
        in refused.output.replace("\n", " "), refused.output
    replaced = runner.invoke(app, [*args, "--draws", "3", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_an_interrupted_path_study_keeps_its_finished_parts(good, monkeypatch):
    from resx.studies.paths import compute

    args = ["paths", str(good), "--samples", "2", "--batch-size", "16", "--device", "cpu"]
    assert runner.invoke(app, [*args, "--out", "U"]).exit_code == 0

    # Ctrl-C in the block gradients of the second net: the path gradients and the first net's are kept
    with monkeypatch.context() as patch:
        counting(patch, compute, "block_gradients", stop_after=1)
        stopped([*args, "--out", "S"], kept="2 of 4 parts (the path gradients, each net's block gradients) are kept")
    paths = counting(monkeypatch, compute, "path_gradients")
    blocks = counting(monkeypatch, compute, "block_gradients")
    again = runner.invoke(app, [*args, "--out", "S"])
    assert again.exit_code == 0, again.output
    assert (len(paths), len(blocks)) == (0, 2)
    same_files(Path("S"), Path("U"), ["path_gradients.csv", "block_gradients.csv", "path_total_gradient.csv",
                                      "path_distribution.csv"])


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_an_interrupted_signal_study_keeps_each_finished_net(good, monkeypatch, stop):
    from resx.cli_common import Terminated
    from resx.studies.signal import compute

    args = ["signal", str(good), "--samples", "4", "--jacobian-examples", "2", "--lanczos-steps", "3", "--probes", "2",
            "--device", "cpu"]  # three nets: the trained run, resnet8-init, plain8-init
    assert runner.invoke(app, [*args, "--out", "U"]).exit_code == 0

    with monkeypatch.context() as patch:
        counting(patch, compute, "measure_net", stop_after=1,
                 stop_with=Terminated if stop == "sigterm" else KeyboardInterrupt)
        result = runner.invoke(app, [*args, "--out", "S"])
    line = result.output.replace("\n", " ")
    assert result.exit_code == (143 if stop == "sigterm" else 130), result.output
    assert "1 of 3 nets are kept in S; run the same command again to continue from them" in line, result.output
    measured = counting(monkeypatch, compute, "measure_net")
    again = runner.invoke(app, [*args, "--out", "S"])
    assert again.exit_code == 0, again.output
    assert len(measured) == 2 and "1 of 3 nets kept" in again.output
    same_files(Path("S"), Path("U"), ["signal_layers.csv", "block_jacobians.csv"])


def test_a_study_stopped_before_its_first_unit_says_it_starts_over(good, monkeypatch):
    from resx.studies.lesion import compute

    args = ["lesion", str(good), "--draws", "2", "--device", "cpu", "--out", "S"]
    with monkeypatch.context() as patch:
        counting(patch, compute, "lesion_single", stop_after=0)
        result = runner.invoke(app, args)
    assert result.exit_code == 130
    assert ("interrupted; none of its 2 lesion experiments was finished, so nothing is kept; running the same "
            "command again starts over") in result.output.replace("\n", " "), result.output
    other = runner.invoke(app, [*args[:-2], "--draws", "3", "--out", "S"])  # nothing kept: nothing to refuse
    assert other.exit_code == 0, other.output
