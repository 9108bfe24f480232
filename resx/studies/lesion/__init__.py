"""The lesion study (Veit et al. 2016, §4): resx.studies.lesion.study registers it; `compute.run_lesion` is the
library's entry point (`from resx.studies.lesion.compute import run_lesion`)."""
