"""The studies, one folder each: degradation (He et al. 2015 Fig. 6), lesion (Veit et al. 2016 §4), paths (Veit et
al. 2016 §5), landscape (Li et al. 2018), signal (signal propagation) and bench (training speed).

A study's folder holds its layers (declare, draw, compute, report, command, study: see registry.py); registry.py
is where they plug in, common.py and guards.py what the torch studies share. Each study's entry point is a plain
library function in its compute module (e.g. `from resx.studies.paths.compute import run_paths`); the CLI wraps it.
"""
