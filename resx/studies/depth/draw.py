"""The depth study's figures and CSV readers, from its CSVs alone (pandas, numpy, matplotlib; never torch).

- `depth_fits`: the k-fold sawtooth m^k against what the nets learned (first seed, largest budget): the
  shallow net, and the deepest plain and residual nets, drawn exactly from their kinks (depth_curves.csv).
- `depth_error_sawtooth`: test MSE / the target's variance against the parameter count, one panel per k; per
  net shape the median over seeds (line) and each seed (dots); the "found" threshold dotted.
- `depth_error_parity`: test error against n (bits), one panel per budget, same encoding.
- `depth_pieces`: linear pieces on [0, 1] against depth, log2 axes, one panel per budget: Telgarsky's
  constructed nets (2 units x k layers: 2^k pieces, black stars) beside what trained nets have (median over
  seeds) and, dotted, 2^k for each k shown.
`sawtooth` (the target, numpy) is shared with the computation, which trains on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from resx.errors import ResxError
from resx.plots import style
from resx.plots.csvs import read_csv
from resx.studies.depth.declare import (CONSTRUCTED_MODEL, CURVE_COLUMNS, FIT_COLUMNS, FOUND_RELATIVE_MSE, INFO_NAME,
                                        PARITY_SOLVED_ERROR, PIECES_COLUMNS)

SHALLOW_COLOR = "black"  # the one-hidden-layer net; deeper nets take their depth's colour (style.depth_colors)


def sawtooth(x, k: int) -> np.ndarray:
    """m^k(x), m(x) = 2 relu(x) - 4 relu(x - 1/2) (= 2x on [0, 1/2], 2 - 2x on [1/2, 1]) composed k times."""
    y = np.asarray(x, dtype=np.float64)
    for _ in range(int(k)):
        y = np.where(y <= 0.5, 2.0 * y, 2.0 - 2.0 * y)
    return y


# --- readers -------------------------------------------------------------------------------------------------------
def _read(folder: str | Path, name: str, columns: tuple[str, ...], numeric: tuple[str, ...]) -> pd.DataFrame | None:
    path = Path(folder) / name
    frame = read_csv(path, numeric)
    if frame is None:
        return None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResxError(f"{path}: missing column {missing[0]!r} (needs {', '.join(columns)})")
    frame["target"] = frame["target"].astype(str)
    for column in ("k", "params", "width"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if "budget" not in frame.columns:
        frame["budget"] = frame["params"]
    return frame


def read_fit(folder: str | Path) -> pd.DataFrame | None:
    """depth_fit.csv, or None when absent or empty; ResxError when a column is missing or malformed."""
    frame = _read(folder, "depth_fit.csv", FIT_COLUMNS, ("k", "depth", "params", "test_error"))
    if frame is not None and "relative_error" not in frame.columns:
        frame["relative_error"] = frame["test_error"]
    return frame


def read_pieces(folder: str | Path) -> pd.DataFrame | None:
    """depth_pieces.csv, or None when absent or empty."""
    frame = _read(folder, "depth_pieces.csv", PIECES_COLUMNS, ("k", "depth", "params", "pieces"))
    if frame is not None:
        frame["built"] = frame["built"].astype(str)
        if "residual" not in frame.columns:
            frame["residual"] = frame["model"] == "residual"
    return frame


def read_curves(folder: str | Path) -> pd.DataFrame | None:
    """depth_curves.csv, or None when absent or empty."""
    return _read(folder, "depth_curves.csv", CURVE_COLUMNS, ("k", "depth", "params", "x", "y"))


def read_info(folder: str | Path) -> dict:
    try:
        return json.loads((Path(folder) / INFO_NAME).read_text())
    except (OSError, ValueError):
        return {}


def found(fit: pd.DataFrame) -> pd.Series:
    """Whether each row's net found its target (declare.py's thresholds)."""
    sawtooth_rows = fit["target"] == "sawtooth"
    return np.where(sawtooth_rows, fit["relative_error"] <= FOUND_RELATIVE_MSE,
                    fit["test_error"] <= PARITY_SOLVED_ERROR).astype(bool)


def net_label(model: str, depth: int, width=None) -> str:
    """'shallow', 'plain 8', 'residual 8' (with the width when given: 'plain 8x11')."""
    shape = f" {int(depth)}x{int(width)}" if width is not None and not pd.isna(width) else f" {int(depth)}"
    if model == "plain" and int(depth) == 1:
        return "shallow" + (f" 1x{int(width)}" if width is not None and not pd.isna(width) else "")
    return f"{model}{shape}"


def _style(model: str, depth: int, colors: dict) -> dict:
    if model == "plain" and depth == 1:
        return dict(color=SHALLOW_COLOR, linestyle="-", marker="o")
    return dict(color=colors[depth], linestyle="-" if model == "plain" else "--",
                marker="o" if model == "plain" else "s")


def _depth_colors(frame: pd.DataFrame) -> dict:
    """One colour per depth above 1 (depth 1 is the shallow net, drawn in SHALLOW_COLOR)."""
    deeper = [int(d) for d in frame["depth"].unique() if int(d) > 1]
    return style.depth_colors(deeper) if deeper else {}


def _legend(fig, ax, title: str, ncols: int = 4) -> None:
    """One legend for the whole figure, under the panels (so that it never covers a line or the title)."""
    handles, labels = style.drawn_entries(ax)
    style.put_legend(fig, handles, labels, loc="outside lower center", ncols=max(1, min(ncols, len(handles))),
                     fontsize=6, title=title, title_fontsize=6)


def _budget_axis(ax, values) -> None:
    """A log axis of parameter counts labelled at the values themselves (200, 1000, 5000), not at powers of ten."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _grid(count: int, width: float = style.PAGE_WIDTH, row_height: float = 1.7, cols: int = 4):
    from matplotlib.figure import Figure

    cols = min(cols, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(width, row_height * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _spread(values, most: int) -> list:
    """At most `most` of the sorted values, evenly spread, the last always in."""
    values = sorted(set(values))
    if len(values) <= most:
        return values
    picks = np.linspace(0, len(values) - 1, most).round().astype(int)
    return [values[i] for i in sorted(set(picks))]


# --- figures -------------------------------------------------------------------------------------------------------
def draw_fits(curves: pd.DataFrame, out: Path, formats) -> list[Path]:
    part = curves[(curves["target"] == "sawtooth") & (curves["model"] != CONSTRUCTED_MODEL)]
    if not len(part):
        return []
    budget = part["budget"].max()
    part = part[part["budget"] == budget]
    ks = _spread(part["k"].unique(), 8)
    deepest = int(part["depth"].max())
    with style.rc():
        fig, axes = _grid(len(ks))
        for ax, k in zip(axes, ks):
            xs = np.linspace(0, 1, 2 ** int(k) + 1)
            # thinner when the teeth are many, so that they stay teeth, not a grey block
            ax.plot(xs, sawtooth(xs, k), color="0.6", linewidth=2.2 if k <= 4 else 1.2 if k <= 6 else 0.5,
                    label="target $m^k$")
            for model, depth in (("plain", 1), ("plain", deepest), ("residual", deepest)):
                net = part[(part["k"] == k) & (part["model"] == model) & (part["depth"] == depth)]
                if not len(net):
                    continue
                net = net.sort_values("x")
                look = _style(model, depth, {deepest: style.variant_color(model == "residual")})
                ax.plot(net["x"], net["y"], color=look["color"], linestyle=look["linestyle"], linewidth=0.9,
                        label=net_label(model, depth, net["width"].iloc[0]))
            ax.set_title(f"k = {int(k)} ({2 ** int(k)} pieces)")
            ax.set_xlim(0, 1)
            ax.set_xlabel("x")
        axes[0].set_ylabel("f(x)")
        _legend(fig, axes[0], "first seed of each net (depth x width), drawn exactly through its kinks")
        fig.suptitle(f"The sawtooth $m^k$ and what the nets learned ({int(budget)} parameters, first seed); "
                     "Telgarsky 2016", fontsize=8)
        return style.save_figure(fig, out, "depth_fits", formats)


def _median_lines(ax, frame: pd.DataFrame, x: str, y: str, colors: dict, scale: float = 1.0) -> None:
    for (model, depth), net in frame.groupby(["model", "depth"], sort=True):
        look = _style(model, int(depth), colors)
        med = net.groupby(x)[y].median().sort_index()
        ax.plot(med.index, scale * med.values, color=look["color"], linestyle=look["linestyle"],
                marker=look["marker"], markersize=3, label=net_label(model, depth))
        ax.scatter(net[x], scale * net[y], color=look["color"], s=4, alpha=0.35, linewidths=0)


def draw_error_sawtooth(fit: pd.DataFrame, out: Path, formats) -> list[Path]:
    part = fit[fit["target"] == "sawtooth"]
    if not len(part):
        return []
    ks = sorted(part["k"].unique())
    colors = _depth_colors(part)
    with style.rc():
        fig, axes = _grid(len(ks))
        for ax, k in zip(axes, ks):
            here = part[part["k"] == k].copy()
            here["relative_error"] = here["relative_error"].clip(lower=1e-7)
            _median_lines(ax, here, "params", "relative_error", colors)
            ax.axhline(FOUND_RELATIVE_MSE, color=style.REFERENCE_COLOR, linestyle=":", linewidth=0.8)
            _budget_axis(ax, here["budget"])
            ax.set_yscale("log")
            ax.set_title(f"k = {int(k)} ({2 ** int(k)} pieces)")
            ax.set_xlabel("parameters")
        axes[0].set_ylabel("test MSE / Var(target)")
        _legend(fig, axes[0], "net (depth): median over seeds, dots each seed; solid plain, dashed residual; "
                              f"dotted: found (≤ {FOUND_RELATIVE_MSE:g})")
        fig.suptitle("Fitting the sawtooth $m^k$ at matched parameter counts: shallow against deep, plain against "
                     "residual", fontsize=8)
        return style.save_figure(fig, out, "depth_error_sawtooth", formats)


def draw_error_parity(fit: pd.DataFrame, out: Path, formats) -> list[Path]:
    part = fit[fit["target"] == "parity"]
    if not len(part):
        return []
    budgets = sorted(part["budget"].unique())
    colors = _depth_colors(part)
    with style.rc():
        fig, axes = _grid(len(budgets), row_height=2.2, cols=3)
        for ax, budget in zip(axes, budgets):
            _median_lines(ax, part[part["budget"] == budget], "k", "test_error", colors, scale=100)
            ax.axhline(100 * PARITY_SOLVED_ERROR, color=style.REFERENCE_COLOR, linestyle=":", linewidth=0.8)
            ax.set_title(f"about {int(budget)} parameters")
            ax.set_xlabel("n (bits)")
            ax.set_ylim(-2, 60)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].set_ylabel("test error (%)")
        _legend(fig, axes[0], "net (depth): median over seeds, dots each seed; solid plain, dashed residual; "
                              f"50%: chance; dotted: solved (≤ {100 * PARITY_SOLVED_ERROR:g}%)")
        fig.suptitle("Parity of n bits at matched parameter counts (Håstad 1986; Bengio 2009 §2)", fontsize=8)
        return style.save_figure(fig, out, "depth_error_parity", formats)


def draw_pieces(pieces: pd.DataFrame, out: Path, formats) -> list[Path]:
    part = pieces[pieces["target"] == "sawtooth"]
    built = part[part["built"] == "constructed"].sort_values("k")
    trained = part[part["built"] == "trained"]
    if not len(part):
        return []
    budgets = sorted(trained["budget"].unique()) or [None]
    ks = _spread(trained["k"].unique(), 4) if len(trained) else []
    kcolors = {k: c for k, c in zip(ks, style.depth_colors(range(len(ks))).values())}
    with style.rc():
        fig, axes = _grid(len(budgets), row_height=2.4, cols=3)
        for ax, budget in zip(axes, budgets):
            if len(built):
                ax.plot(built["depth"], built["pieces"], color="black", marker="*", markersize=5, linewidth=0.8,
                        label="constructed: 2 units x k layers")
            for k in ks:
                here = trained[(trained["budget"] == budget) & (trained["k"] == k)]
                for model, marker, line in (("plain", "o", "-"), ("residual", "s", "--")):
                    med = here[here["model"] == model].groupby("depth")["pieces"].median().sort_index()
                    if len(med):
                        ax.plot(med.index, med.values, color=kcolors[k], marker=marker, linestyle=line,
                                markersize=3, label=f"k = {int(k)}, {model}")
                ax.axhline(2 ** int(k), color=kcolors[k], linestyle=":", linewidth=0.7)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

            top = int(max([*part["depth"], 1]))
            ax.xaxis.set_major_locator(FixedLocator([2**i for i in range(top.bit_length()) if 2**i <= top] + [top]))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("depth (ReLU layers)")
            ax.set_title(f"trained at about {int(budget)} parameters" if budget is not None else "constructed")
        axes[0].set_ylabel("linear pieces on [0, 1]")
        _legend(fig, axes[0], "trained: median over seeds (depth 1: the shallow net); dotted: 2^k, the target's pieces",
                ncols=3)
        fig.suptitle("Linear pieces against depth (Telgarsky 2016: depth k gives 2^k pieces; l layers of m units "
                     "give at most (m+1)^l)", fontsize=8)
        return style.save_figure(fig, out, "depth_pieces", formats)


def plot_depth(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw the depth study's figures from `folder`'s CSVs (those whose CSV is there); writes into `out` or
    `folder` and returns the paths written."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    written: list[Path] = []
    curves, fit, pieces = read_curves(folder), read_fit(folder), read_pieces(folder)
    if curves is not None:
        written += draw_fits(curves, out, formats)
    if fit is not None:
        written += draw_error_sawtooth(fit, out, formats)
        written += draw_error_parity(fit, out, formats)
    if pieces is not None:
        written += draw_pieces(pieces, out, formats)
    return written
