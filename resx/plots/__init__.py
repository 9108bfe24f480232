"""Figures from the studies' CSVs (never from models or checkpoints, so nothing here imports torch).

- `plot_degradation`: He et al. 2015 Fig. 6 (plain vs residual training curves) and final error against depth.
- `plot_lesion`: Veit et al. 2016 Fig. 3 (delete one block), Fig. 5a (delete k blocks), Fig. 5b (reorder blocks).
- `plot_paths`: Veit et al. 2016 Fig. 6 (path lengths and gradient per path length) and gradient norm per block.
- `plot_landscape`: Li et al. 2018 Figs. 1 and 5 (loss along random directions: 1D curves, 2D contours, 3D).
- `plot_signal`: activation and gradient RMS against depth, and block Jacobian spectra, plain vs residual.
- `plot_bench`: training throughput per model and method.
- `plot_results`: find every registered study's CSVs under a results folder and redraw their figures.

Each takes the folder holding the CSVs, `formats` (png, pdf, svg) and an optional `out` folder, skips figures
whose CSVs are absent, and returns the paths it wrote. The style (sizes, fonts, colours) lives in `style.py`.
"""

from resx.plots.bench import plot_bench
from resx.plots.degradation import plot_degradation
from resx.plots.discover import find_studies, plot_results
from resx.plots.landscape import plot_landscape
from resx.plots.lesion import plot_lesion
from resx.plots.paths import effective_window, plot_paths
from resx.plots.signal import plot_signal
from resx.plots.style import FORMATS

__all__ = [
    "FORMATS", "effective_window", "find_studies", "plot_bench", "plot_degradation", "plot_landscape", "plot_lesion",
    "plot_paths", "plot_results", "plot_signal",
]
