"""Shared fixtures: everything runs on the CPU, offline, on tiny data the tests make themselves."""

import os
import sys

import pytest

os.environ.setdefault("RESX_NO_DOWNLOAD", "1")
# The tests' nets and batches are tiny: extra CPU threads only add overhead, and on a shared machine they
# make the suite several times slower. Set before torch is imported (and inherited by CLI subprocesses).
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_DATA = "synthetic:size=8,train=256,test=64"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own data directory and working directory, so nothing leaks between tests."""
    monkeypatch.setenv("RESX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RESX_NO_DOWNLOAD", "1")
    monkeypatch.chdir(tmp_path)
    torch = sys.modules.get("torch")  # not imported here: the torch-free tests stay torch-free
    threads = torch.get_num_threads() if torch is not None else None
    yield
    # a run with --threads N sets torch's threads for the whole process: the next test starts with the usual one
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != (threads or 1):
        torch.set_num_threads(threads or 1)


@pytest.fixture
def tiny_data():
    return TINY_DATA
