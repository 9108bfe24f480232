"""The degradation study (He et al. 2015, Fig. 6): resx.studies.degradation.study registers it;
`compare.compare_plain` is the library's entry point (`from resx.studies.degradation.compare import compare_plain`)."""
