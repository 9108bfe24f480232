"""One guard for every output folder: a lock held while writing, the fingerprint of the settings, one-line refusals."""

from __future__ import annotations

import pytest

from resx.atomic import FolderLock
from resx.errors import ResxError
from resx.output_guard import SETTINGS_NAME, check_settings, differences, guard_folder, merge_lock, read_settings


def test_same_settings_continue_other_settings_are_refused_with_the_differences(tmp_path):
    out = tmp_path / "out"
    with guard_folder(out, "toy study", {"data": "cifar10", "recipe": {"epochs": 1, "lr": 0.1}}) as same:
        assert same is False  # nothing there yet
    assert read_settings(out) == {"what": "toy study", "settings": {"data": "cifar10", "recipe": {"epochs": 1, "lr": 0.1}}}
    with guard_folder(out, "toy study", {"recipe": {"lr": 0.1, "epochs": 1}, "data": "cifar10"}) as same:
        assert same is True  # key order does not matter
    with pytest.raises(ResxError, match=r"holds a toy study made with other settings \(recipe.epochs: 1 -> 2\); give "
                                        r"another --out, or the same settings to continue it \(or --overwrite"):
        with guard_folder(out, "toy study", {"data": "cifar10", "recipe": {"epochs": 2, "lr": 0.1}}):
            pass
    with pytest.raises(ResxError, match="holds a toy study, not a reproduce run; give another --out$"):
        check_settings(out, "reproduce run", {}, can_overwrite=False)
    with guard_folder(out, "toy study", {"data": "mnist"}, overwrite=True) as same:
        assert same is False
    assert read_settings(out)["settings"] == {"data": "mnist"}


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    with guard_folder(out, "lesion study", {"a": 1}):
        with pytest.raises(ResxError, match=r"lesion study folder .* is in use by another resx process \(pid \d+ on "):
            with guard_folder(out, "lesion study", {"a": 1}):
                pass
    with guard_folder(out, "lesion study", {"a": 1}):  # freed when the first writer is done
        pass
    with guard_folder(out, "grid", {"a": 1}, overwrite=True):
        with guard_folder(out, "grid", {"a": 1}, shared=True):  # shards of one grid write together
            pass


def test_the_merge_lock_waits_instead_of_refusing(tmp_path):
    import threading

    order = []
    with merge_lock(tmp_path, "grid"):
        def second():
            with merge_lock(tmp_path, "grid"):
                order.append("second")

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.2)
        order.append("first")
    thread.join(timeout=60)
    assert order == ["first", "second"]
    FolderLock(tmp_path, name=".resx-merge.lock").release()  # free again


def test_differences_are_named_by_their_dotted_keys():
    assert differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4}) == ["b.c: 2 -> 3", "d: null -> 4"]
    assert differences({f"k{i}": i for i in range(5)}, {}, limit=2)[-1] == "and 3 more"


def test_the_settings_file_is_hidden_from_discovery(tmp_path):
    assert SETTINGS_NAME.startswith(".")


# --- every command that writes a folder holds it ------------------------------------------------------------------
def _lesion(out):
    from resx.studies.lesion.compute import run_lesion

    return run_lesion(["no-such-run"], out=out)


def _paths(out):
    from resx.studies.paths.compute import run_paths

    return run_paths(["no-such-run"], out=out)


def _signal(out):
    from resx.studies.signal.compute import run_signal

    return run_signal(["no-such-run"], out=out)


def _reproduce(out):
    from resx.reproduce import reproduce

    return reproduce("tiny", out=out)


def _train(out):
    from typer.testing import CliRunner

    from resx.cli import app

    result = CliRunner().invoke(app, ["train", "resnet8", "--data", "synthetic:size=8,train=64,test=16", "--epochs",
                                      "1", "--batch-size", "32", "--out", str(out)])
    if result.exit_code:
        raise ResxError(result.output)


@pytest.mark.parametrize("write", [_lesion, _paths, _signal, _reproduce, _train], ids=lambda f: f.__name__[1:])
def test_a_second_writer_into_a_folder_in_use_is_refused(tmp_path, write):
    held = tmp_path / "held"
    lock = FolderLock(held)  # another resx process at work in this folder
    try:
        with pytest.raises(ResxError, match=r"held is in use by another resx process \(pid \d+"):
            write(held)
    finally:
        lock.release()
    assert sorted(p.name for p in held.iterdir()) == [".resx.lock"]  # nothing else written


@pytest.mark.parametrize("write", [_lesion, _paths, _signal], ids=lambda f: f.__name__[1:])
def test_a_study_refused_by_its_checks_leaves_no_folder(tmp_path, write):
    with pytest.raises(ResxError):
        write(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_resume_of_a_run_being_trained_says_it_is_in_use(tmp_path):
    from typer.testing import CliRunner

    from resx.cli import app

    lock = FolderLock(tmp_path / "run")  # another process, still in its first epoch: no checkpoint yet
    try:
        result = CliRunner().invoke(app, ["train", "resnet8", "--data", "synthetic:size=8,train=64,test=16",
                                          "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "run"),
                                          "--resume"])
    finally:
        lock.release()
    assert result.exit_code == 1 and "is in use by another resx process (pid" in " ".join(result.output.split())
    assert "no checkpoint" not in result.output
