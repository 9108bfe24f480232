"""Which part of the residual block matters: the shortcut and activation-placement ablations of He et al. 2016."""
