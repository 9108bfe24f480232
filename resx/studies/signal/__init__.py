"""The signal study (He et al. 2016, "Identity mappings", §3; Saxe et al. 2014, deep linear nets): activation and
gradient RMS per layer, block Jacobian spectra, deep linear nets against a^l. resx.studies.signal.study registers it;
`compute.run_signal` is the library's entry point (`from resx.studies.signal.compute import run_signal`)."""
