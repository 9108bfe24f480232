#!/usr/bin/env bash
# Build resx's wheel, install it into a fresh venv outside the checkout (with the tested versions), and run what a
# user runs first: `resx reproduce --profile tiny` and `resx demo`, from a folder that is not the repository. Also
# checks that the installed resx records its version and no git commit (it is not running from its checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/resx-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m pip wheel --quiet --no-deps -w "$work/dist" "$root"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" "$work"/dist/resx-*.whl
mkdir "$work/user" && cd "$work/user"
export RESX_NO_DOWNLOAD=1 RESX_DATA="$work/data"
"$work/venv/bin/resx" reproduce --profile tiny --out tiny-results
"$work/venv/bin/resx" demo
"$work/venv/bin/python" - <<'PY'
import json, sys
info = json.load(open("tiny-results/reproduce.json"))
block = info["provenance"]
assert block["git_commit"] is None and block["commit_source"] == "none", block
assert "resx/experiments" not in info["file"] or info["file"] == "experiments/reproduce-tiny.yaml", info["file"]
import resx
assert "site-packages" in resx.__file__, resx.__file__
print(f"wheel ok: resx {block['resx_version']} from {resx.__file__}, no commit recorded; tiny profile and demo ran")
PY
