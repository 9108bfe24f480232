"""The studies: degradation (He et al. 2015 Fig. 6), lesion (Veit et al. 2016 §4), paths (Veit et al. 2016 §5).

Each study is a plain library module (no typer, no rich) whose results are tidy CSV files; the CLI wraps it.
Import the study modules directly (e.g. `from resx.studies.paths import run_paths`).
"""
