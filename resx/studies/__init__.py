"""The studies: degradation (He et al. 2015 Fig. 6), lesion (Veit et al. 2016 §4), paths (Veit et al. 2016 §5)."""
