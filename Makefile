# resx: `make demo` runs the main job on the CPU, `make test` passes the tests; both install first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RESX := $(PY) -m resx
PROFILE ?= quick
DATA ?= cifar10
OUT ?= results

.PHONY: install demo test reproduce clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Plain vs residual fully connected nets on Fashion-MNIST (or a built-in synthetic task when it is absent):
# the degradation problem in a few minutes on a laptop CPU.
demo: install
	$(RESX) demo

# The whole study: PROFILE=quick (default, about 15 min on one H100), paper (about 2 h), tiny (CPU, seconds).
# DATA=cifar10 (downloaded when online) or DATA=imagefolder:PATH. Rerunning skips finished stages and runs.
reproduce: install
	$(RESX) reproduce --profile $(PROFILE) --data $(DATA) --out $(OUT)

test: install
	RESX_NO_DOWNLOAD=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache
