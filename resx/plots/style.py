"""One look for every resx figure: sized for a paper column, small fonts, one colormap for depth.

Figures are built with the object API (`matplotlib.figure.Figure`), which needs no GUI backend and no
global pyplot state, so plotting works on a headless server and from several threads.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from resx.atomic import write_bytes_atomic
from resx.errors import ResxError
from resx.studies.registry import FIGURE_FORMATS as FORMATS
DPI = 200  # png only; pdf and svg are vector

# A paper column is about 3.4 in wide, a full page width about 7 in.
COLUMN_WIDTH = 3.4
PAGE_WIDTH = 7.0

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # TrueType in PDFs: text stays text and editable
    "svg.fonttype": "none",
}

DEPTH_CMAP = "viridis"
PLAIN_COLOR = "#d95f02"  # orange
RESIDUAL_COLOR = "#1b6ca8"  # blue
REFERENCE_COLOR = "0.35"  # grey, for the papers' numbers
RUN_COLORS = ("#1b6ca8", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


@contextlib.contextmanager
def rc() -> Iterator[None]:
    """Apply the resx style while a figure is built and saved (without touching the global defaults)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float = COLUMN_WIDTH, height: float = 2.4, ncols: int = 1, sharey: bool = False):
    """A Figure and its axes (a list when ncols > 1); call inside `rc()`."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=True)
    return fig, (list(axes) if ncols > 1 else axes)


def depth_colors(depths: Iterable[int]) -> dict[int, tuple]:
    """One colour per depth from one colormap, so a depth has the same colour in every panel and figure."""
    depths = sorted({int(d) for d in depths})
    cmap = matplotlib.colormaps[DEPTH_CMAP]
    if len(depths) == 1:
        return {depths[0]: cmap(0.0)}
    # stop before viridis's pale yellow end, which is hard to see on white
    return {d: cmap(0.85 * i / (len(depths) - 1)) for i, d in enumerate(depths)}


def variant_color(residual: bool) -> str:
    return RESIDUAL_COLOR if residual else PLAIN_COLOR


def run_colors(runs: Sequence[str]) -> dict[str, str]:
    return {run: RUN_COLORS[i % len(RUN_COLORS)] for i, run in enumerate(runs)}


def check_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise ("png", ".PDF") -> ("png", "pdf"); an unknown format is a ResxError naming the allowed ones."""
    if isinstance(formats, str):
        formats = [formats]
    out: list[str] = []
    for fmt in formats:
        name = str(fmt).strip().lower().lstrip(".")
        if name not in FORMATS:
            raise ResxError(f"unknown figure format {fmt!r}; allowed: {', '.join(FORMATS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ResxError(f"no figure format given; allowed: {', '.join(FORMATS)}")
    return tuple(out)


def save_figure(fig: Figure, folder: str | Path, stem: str, formats: Sequence[str]) -> list[Path]:
    """Write `folder/stem.<fmt>` for each format, atomically (rendered in memory, then renamed into place)."""
    paths = []
    for fmt in formats:
        buffer = io.BytesIO()
        # no creation dates in the files, so redrawing the same CSVs gives the same bytes
        metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[fmt]
        fig.savefig(buffer, format=fmt, dpi=DPI, bbox_inches="tight", pad_inches=0.02, metadata=metadata)
        data = buffer.getvalue()
        if fmt == "png":
            data = _small_png(data)
        paths.append(write_bytes_atomic(Path(folder) / f"{stem}.{fmt}", data))
    return paths


def _small_png(data: bytes) -> bytes:
    """The same picture with a 256-colour palette: a few times smaller for line plots, no visible change."""
    from PIL import Image  # Pillow is a matplotlib dependency

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")  # figures are opaque (white face colour)
    small = io.BytesIO()
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        small, format="PNG", optimize=True, dpi=(DPI, DPI))
    return small.getvalue() if small.tell() < len(data) else data



# --- legends: only what was drawn -------------------------------------------------------------------------------------
def _drew(artist, ax) -> bool:
    """Whether `artist` put anything on `ax`: a point with finite coordinates (positive ones on a log axis), a bar of
    finite length. Artists of other kinds count as drawn."""
    import numpy as np
    from matplotlib.collections import Collection
    from matplotlib.container import BarContainer, ErrorbarContainer
    from matplotlib.lines import Line2D

    def finite(xy) -> bool:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        ok = np.isfinite(xy).all(axis=1)
        if ax.get_xscale() == "log":
            ok &= xy[:, 0] > 0
        if ax.get_yscale() == "log":
            ok &= xy[:, 1] > 0
        return bool(ok.any())

    if isinstance(artist, ErrorbarContainer):
        line = artist.lines[0]
        return line is None or _drew(line, ax)
    if isinstance(artist, BarContainer):
        return any(np.isfinite([p.get_width(), p.get_height()]).all() for p in artist.patches)
    if isinstance(artist, Line2D):
        return finite(artist.get_xydata())
    if isinstance(artist, Collection):
        offsets = artist.get_offsets()
        if len(offsets):
            return finite(offsets)
        return any(finite(path.vertices) for path in artist.get_paths())
    return True


def drawn_entries(*axes) -> tuple[list, list[str]]:
    """The legend entries (handles, labels) of what `axes` drew, each label once, in order: a run or a study whose
    numbers are all missing (not run, no rows, diverged to NaN) gets no entry beside nothing."""
    handles: list = []
    labels: list[str] = []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels and _drew(handle, ax):
                handles.append(handle)
                labels.append(label)
    return handles, labels


def put_legend(target, handles: Sequence, labels: Sequence[str] | None = None, **kwargs):
    """`target.legend(handles, labels, **kwargs)` (an Axes or a Figure), or no legend when there is nothing to name.
    Labels default to the handles' own."""
    if not handles:
        return None
    labels = list(labels) if labels is not None else [h.get_label() for h in handles]
    return target.legend(list(handles), labels, **kwargs)
