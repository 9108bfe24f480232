"""The provenance block: resx's own commit and nobody else's, the versions it computes with, and the same block in
every record (run_info.json and each study's info file)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import resx
import resx.provenance as provenance

KEYS = {"resx_version", "git_commit", "commit_source", "python", "torch", "torchvision", "numpy", "pandas", "cuda",
        "cudnn", "host", "time", "device", "device_name", "precision", "threads"}


def git(where: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=where, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x", "GIT_COMMITTER_NAME": "u",
                        "GIT_COMMITTER_EMAIL": "u@x", "PATH": "/usr/bin:/bin:/usr/local/bin"})


def test_the_block_names_versions_device_precision_and_threads():
    block = provenance.provenance("cpu", "fp32", threads=3)
    assert KEYS <= set(block)
    assert block["resx_version"] == resx.__version__ and block["precision"] == "fp32" and block["threads"] == 3
    assert block["device"] == "cpu" and block["device_name"].startswith("CPU (")
    assert block["torchvision"] and block["numpy"] and block["pandas"]


def test_the_commit_is_the_code_this_process_runs(monkeypatch):
    """A long grid keeps reporting the commit it was started from, even if the checkout moves on meanwhile."""
    first = provenance.git_commit()
    monkeypatch.setattr(provenance, "_checkout_commit", lambda root: "moved-on")
    assert provenance.git_commit() == first


def test_an_install_inside_someone_elses_repository_names_no_foreign_commit(tmp_path, monkeypatch):
    """resx installed (not editable) into a .venv inside a user's own git repository: `git rev-parse` there would
    answer with the user's commit; resx must record none (or pip's record of its own, for a direct-URL install)."""
    user_repo = tmp_path / "my-project"
    package = user_repo / ".venv" / "lib" / "python3.11" / "site-packages" / "resx"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (user_repo / "pyproject.toml").write_text('[project]\nname = "my-project"\n')
    (user_repo / "notes.txt").write_text("mine\n")
    git(user_repo, "init", "-q")
    git(user_repo, "add", "notes.txt", "pyproject.toml")
    git(user_repo, "commit", "-q", "-m", "the user's commit")
    monkeypatch.setattr(provenance, "_direct_url_commit", lambda: None)
    assert provenance.own_checkout(package) is None
    assert provenance.find_commit(package) == (None, "none")
    # the same package at the top of a repository whose pyproject is not resx's: still not resx's checkout
    (user_repo / "resx").mkdir()
    (user_repo / "resx" / "__init__.py").write_text("")
    assert provenance.find_commit(user_repo / "resx") == (None, "none")
    # pip's record of a direct-URL install from git names resx's own commit
    monkeypatch.setattr(provenance, "_direct_url_commit", lambda: "a" * 40)
    assert provenance.find_commit(package) == ("a" * 40, "direct_url")


def test_resx_own_checkout_is_recognised(tmp_path):
    repo = tmp_path / "resx-checkout"
    (repo / "resx").mkdir(parents=True)
    (repo / "resx" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text('[project]\nname = "resx"\n')
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "resx")
    commit, source = provenance.find_commit(repo / "resx")
    assert source == "checkout" and len(commit) == 40
    (repo / "pyproject.toml").write_text('[project]\nname = "resx"\nversion = "2"\n')
    assert provenance.find_commit(repo / "resx")[0] == commit + "+dirty"


def test_direct_url_json_is_read(monkeypatch):
    class Dist:
        where = Path(resx.__file__).parent.parent

        def read_text(self, name):
            assert name == "direct_url.json"
            return json.dumps({"url": "https://example.org/resx.git", "vcs_info": {"vcs": "git", "commit_id": "b" * 40}})

        def locate_file(self, name):
            return self.where / name

    monkeypatch.setattr(provenance.metadata, "distribution", lambda name: Dist())
    assert provenance._direct_url_commit() == "b" * 40
    Dist.where = Path("/elsewhere/site-packages")  # another installed copy than the resx running: not its commit
    assert provenance._direct_url_commit() is None


@pytest.mark.parametrize("info, expected", [
    ({"provenance": {"precision": "bf16", "device_name": "CPU (x)", "threads": 1, "resx_version": "0.1.0",
                     "git_commit": "c" * 40, "torch": "2.9"}},
     "Computed in **bf16** on CPU (x) with 1 CPU thread; resx 0.1.0 at commit cccccccccccc, torch 2.9."),
    ({"precision": "fp32"}, "Computed in fp32 (this info file has no provenance block)."),
    ({}, ""),
])
def test_the_report_line_says_the_precision(info, expected):
    from resx.markdown import computed_with

    assert computed_with(info) == expected


def test_git_variables_of_the_environment_do_not_redirect_the_commit(tmp_path, monkeypatch):
    """A git hook exports GIT_DIR: resx must still read its own checkout, not the repository GIT_DIR names."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("x")
    git(foreign, "init", "-q")
    git(foreign, "add", "x.txt")
    git(foreign, "commit", "-q", "-m", "foreign")
    repo = tmp_path / "resx-checkout"
    (repo / "resx").mkdir(parents=True)
    (repo / "resx" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text('[project]\nname = "resx"\n')
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "resx")
    own, _ = provenance.find_commit(repo / "resx")
    monkeypatch.setenv("GIT_DIR", str(foreign / ".git"))
    monkeypatch.chdir(foreign)
    assert provenance.find_commit(repo / "resx") == (own, "checkout")
