"""The loss-landscape study (Li et al. 2018, Fig. 1 and Fig. 5): resx.studies.landscape.study registers it;
`compute.run_landscape` is the library's entry point (`from resx.studies.landscape.compute import run_landscape`)."""
