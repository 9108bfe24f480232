"""What every study's figures share (never torch): the style (`style.py`: sizes, fonts, colours, saving), reading
CSVs (`csvs.py`), and finding every registered study's CSVs under a results folder to redraw them (`discover.py`:
`plot_results`, `resx plot`). A study's own figures are drawn by its draw.py (resx/studies/<name>/draw.py), from
its CSVs alone.
"""

from resx.plots.discover import find_studies, plot_results
from resx.plots.style import FORMATS

__all__ = ["FORMATS", "find_studies", "plot_results"]
