"""The path study (Veit et al. 2016, §5, Fig. 6): resx.studies.paths.study registers it; `compute.run_paths` is the
library's entry point (`from resx.studies.paths.compute import run_paths`)."""
