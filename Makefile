# resx: `make demo` runs the main job on the CPU, `make test` passes the tests; both install first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RESX := $(PY) -m resx
PROFILE ?= quick
DATA ?=
OUT ?= results

.PHONY: install demo test reproduce clean

# constraints.txt: the versions CI tests, so that what passed once passes again
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Plain vs residual fully connected nets on Fashion-MNIST (or a built-in synthetic task when it is absent):
# the degradation problem in a few minutes on a laptop CPU.
demo: install
	$(RESX) demo

# The whole study: PROFILE=quick (default, about 15 min on one H100), paper (about 5 h), cpu (MLPs on
# Fashion-MNIST, about 10 min on a CPU), tiny (CPU, seconds). DATA overrides the profile's dataset: cifar10
# (downloaded when online) or imagefolder:PATH. Rerunning skips finished stages and runs.
reproduce: install
	$(RESX) reproduce --profile $(PROFILE) $(if $(DATA),--data $(DATA)) --out $(OUT)

test: install
	RESX_NO_DOWNLOAD=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache
