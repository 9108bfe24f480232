"""The training-speed benchmark (`resx bench`): resx.studies.bench.study registers it; `compute.run_bench` is the
library's entry point (`from resx.studies.bench.compute import BenchSettings, run_bench`)."""
