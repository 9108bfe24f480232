"""The depth study (depth separation: Telgarsky 2015/2016's sawtooth, built and trained; parity of n bits, Håstad
1986, Bengio 2009). resx.studies.depth.study registers it; `compute.run_depth` is the library's entry point
(`from resx.studies.depth.compute import run_depth`)."""
