"""Every table a resx command prints reads at 80 columns and still shows its key columns whole at 40: no header,
name or number is cut ('train err…', '62.5…'); columns that do not fit are left out, and a caption names them.
Each command runs on tiny data through the CLI, as a user would, with COLUMNS set."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resx.cli import app
from resx.config import resolve_config
from resx.engine import train

DATA = "synthetic:size=8,train=64,test=32"
runner = CliRunner()

# command -> (arguments, each table's key column headers: shown, on one line, at 40 columns too); {out} differs per
# width where a second run into the same folder would be refused, {same} is shared (the second run resumes and
# prints its table again)
COMMANDS = {
    "train": (["train", "resnet8", "--data", DATA, "--epochs", "1", "--batch-size", "32", "--out", "{out}"],
              [["train", "test"]]),
    "models": (["models"], [["name", "blocks"]]),
    "compare-plain": (["compare-plain", "--depths", "8", "--seeds", "1", "--data", DATA, "--epochs", "1",
                       "--batch-size", "32", "--out", "{same}"], [["model", "train"]]),
    "variants": (["variants", "--base", "mlp_res", "--depth", "4", "--width", "8", "--data", DATA, "--epochs", "1",
                  "--batch-size", "32", "--gains-batch", "32", "--shortcuts", "identity,scale-0.5", "--blocks", "",
                  "--out", "{same}"], [["variant", "test"]]),
    "lesion": (["lesion", "good", "--draws", "2", "--device", "cpu", "--out", "{out}"], [["run", "single"]]),
    "paths": (["paths", "good", "--samples", "2", "--batch-size", "16", "--device", "cpu", "--out", "{out}"],
              [["window", "paths in"], ["run", "first"]]),
    "signal": (["signal", "good", "--samples", "4", "--jacobian-examples", "2", "--lanczos-steps", "3", "--probes",
                "2", "--device", "cpu", "--out", "{out}"], [["run", "grad"]]),
    "signal-linear": (["signal", "--model", "linear_plain", "--depths", "4", "--scale", "0.5,1", "--samples", "4",
                       "--jacobian-examples", "2", "--lanczos-steps", "3", "--probes", "2", "--device", "cpu",
                       "--out", "{out}"], [["run", "grad"], ["net", "err"]]),
    "landscape": (["landscape", "good", "--dims", "1", "--points", "3", "--samples", "32", "--device", "cpu",
                   "--out", "{same}"], [["run", "centre", "convex"]]),
    "approximate": (["approximate", "--task", "ball", "--models", "onenet_res,mlp_plain:width=2", "--depths", "1,2",
                     "--seeds", "1", "--steps", "10", "--train-points", "20", "--test-points", "10", "--grid", "5",
                     "--device", "cpu", "--out", "{same}"], [["model", "depth", "test %", "far %"]]),
    "depth": (["depth", "--k", "1", "--params", "60", "--seeds", "1", "--depths", "1,2", "--steps", "5", "--device",
               "cpu", "--out", "{same}"], [["net", "found"]]),
    "bench": (["bench", "--models", "resnet8", "--methods", "resx", "--seconds", "0.1", "--rounds", "1",
               "--batch-size", "32", "--data", DATA, "--device", "cpu", "--out", "{out}"], [["model", "img/s"]]),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tables") / "run"
    train(resolve_config(None, dict(model="resnet8", data=DATA, epochs=1, batch_size=32)), folder)
    return folder


@pytest.mark.parametrize("command", list(COMMANDS))
def test_tables_keep_headers_and_numbers_whole(command, trained, tmp_path):
    shutil.copytree(trained, tmp_path / "good")
    args, keys = COMMANDS[command]
    for columns in ("80", "40"):
        result = runner.invoke(app, [a.format(out=f"out{columns}", same="out") for a in args],
                               env={"COLUMNS": columns})
        assert result.exit_code == 0, result.output
        said = f"COLUMNS={columns}:\n{result.output}"
        lines = result.output.splitlines()
        assert "…" not in result.output, said
        assert all(len(line) <= int(columns) for line in lines if line[:1] in "┏┃┡│└"), said
        for table in keys:
            assert any(all(re.search(rf"(^|\s){re.escape(key)}(\s|$)", line) for key in table) for line in lines), said
