"""The degradation problem: He et al. 2015 ("Deep Residual Learning for Image Recognition"), Fig. 6.

Reads the degradation study's `curves.csv` (one row per run x epoch), `iteration_curves.csv` and `summary.csv`
(one row per model) and draws

- `degradation_curves`: Fig. 6 - training error (dashed) and test error (solid) against iterations, plain nets
  on the left, their residual twins on the right. Colours go by depth within each kind of net, from two palettes
  that cannot be confused (plain: oranges to dark red, residual: teal to dark blue; the deeper, the darker), so
  plain-56 and ResNet-56 never look alike. A model with several seeds gets one thin line per seed and its mean
  over seeds in bold; no band. Each panel's y-axis runs from 0 to a little above the highest error of the later
  half of training (the first iterations, near chance, run off the top, as He et al. cut Fig. 6 at 20%), so that a
  few points between ResNets read. In the paper the deeper plain net has the HIGHER training error all through
  training, the deeper ResNet the LOWER. The training error comes from `iteration_curves.csv` when the study has
  it (the error over the last 100 batches, every 10 iterations: smooth even for short runs), else from
  curves.csv's once-per-epoch rows.
- `error_vs_depth`: the final training and test error of each depth, plain vs residual, mean +- std over seeds,
  with He et al.'s Table 6 ResNet test errors (and Li et al. 2018's nets without shortcuts) as grey marks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from resx import reference
from resx.plots import style
from resx.plots.csvs import read_csv
from resx.studies.degradation.declare import CURVES, ITERATION_CURVES, SUMMARY

# the columns each figure needs (the files hold more: declare.CURVE_COLUMNS, declare.SUMMARY_COLUMNS)
CURVES_NEEDED = ("model", "residual", "depth", "seed", "epoch", "iteration", "train_error", "test_error")
ITERATIONS_NEEDED = ("model", "residual", "depth", "seed", "iteration", "train_error")
SUMMARY_NEEDED = (
    "model", "residual", "depth", "final_train_error_mean", "final_train_error_std",
    "final_test_error_mean", "final_test_error_std",
)
# (colormap, lightest, darkest) per kind of net: warm for plain nets, cool for residual ones
PALETTES = {False: ("YlOrRd", 0.45, 0.95), True: ("YlGnBu", 0.45, 0.95)}
LATE = 0.5  # the y-range fits the errors from this fraction of training on
MEAN_WIDTH, SEED_WIDTH, SEED_ALPHA = 1.8, 0.6, 0.45


def read_curves(folder: str | Path) -> pd.DataFrame | None:
    """curves.csv (its optional `finished` column, written since resx marks unfinished runs, comes as bool)."""
    return read_csv(Path(folder) / CURVES, CURVES_NEEDED)


def read_iteration_curves(folder: str | Path) -> pd.DataFrame | None:
    """iteration_curves.csv (the training error over a window of batches, against iterations), if present."""
    return read_csv(Path(folder) / ITERATION_CURVES, ITERATIONS_NEEDED)


def read_summary(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / SUMMARY, SUMMARY_NEEDED)


def seed_means(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each model's errors at each epoch (std is NaN with one seed)."""
    grouped = curves.groupby(["model", "residual", "depth", "epoch"], sort=True)
    out = grouped.agg(
        iteration=("iteration", "mean"),
        train_error=("train_error", "mean"),
        train_error_std=("train_error", "std"),
        test_error=("test_error", "mean"),
        test_error_std=("test_error", "std"),
        seeds=("seed", "nunique"),
    )
    return out.reset_index()


def summarize_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """summary.csv's columns computed from curves.csv: each run's last epoch, then mean/std over seeds per model.
    Runs that did not finish are left out (as in summary.csv), when curves.csv says which they are."""
    if "finished" in curves.columns:
        curves = curves[curves["finished"].astype(bool)]
    ordered = curves.sort_values(["model", "seed", "epoch"])
    last = ordered.groupby(["model", "seed"], sort=False).tail(1)
    best = ordered.groupby(["model", "seed"], sort=False)["test_error"].min().rename("best_test_error").reset_index()
    last = last.merge(best, on=["model", "seed"])
    summary = last.groupby(["model", "residual", "depth"], sort=False).agg(
        seeds=("seed", "nunique"),
        final_train_error_mean=("train_error", "mean"),
        final_train_error_std=("train_error", "std"),
        final_test_error_mean=("test_error", "mean"),
        final_test_error_std=("test_error", "std"),
        best_test_error_mean=("best_test_error", "mean"),
    )
    return summary.reset_index().sort_values(["residual", "depth"]).reset_index(drop=True)


def family_colors(models: Iterable[tuple[str, int]], residual: bool) -> dict[str, tuple]:
    """{model: colour} for the (model, depth) pairs of one kind of net, from that kind's palette (PALETTES): the
    shallowest lightest, the deepest darkest."""
    import matplotlib

    ordered = sorted(dict.fromkeys((str(m), int(d)) for m, d in models), key=lambda item: (item[1], item[0]))
    name, lo, hi = PALETTES[residual]
    cmap = matplotlib.colormaps[name]
    if len(ordered) == 1:
        return {ordered[0][0]: cmap(0.8 * hi + 0.2 * lo)}
    return {m: cmap(lo + (hi - lo) * i / (len(ordered) - 1)) for i, (m, _) in enumerate(ordered)}


def _label(residual: bool, depth: int, model: str, several_families: bool) -> str:
    if several_families:
        return str(model)
    return f"{'ResNet' if residual else 'plain'}-{depth}"


def _iteration_label(curves: pd.DataFrame) -> str:
    if "batch_size" in curves.columns:
        sizes = curves["batch_size"].dropna().unique()
        if len(sizes) == 1:
            return f"iterations (1 iteration = one batch of {int(sizes[0])})"
    return "iterations"


def _thousands(value, _pos) -> str:
    return f"{value / 1000:g}k" if value else "0"


def error_ceiling(series: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """A y limit (in %) for one panel: a little above the highest error drawn in the later part of each line's
    training (its iterations from LATE of its own last one on), so that the end of training reads and a run caught
    in progress still shows; the first iterations (errors near chance) may run off the top. `series`:
    (iterations, errors in %) of every line in the panel."""
    late = [y[x >= LATE * float(np.nanmax(x))] for x, y in series if len(x)]
    values = np.concatenate(late) if late else np.array([])
    values = values[np.isfinite(values)]
    if not len(values):
        return 100.0
    top = float(values.max())
    return min(100.0, max(1.0, top + max(0.15 * top, 1.0)))


def curves_figure(curves: pd.DataFrame, iterations: pd.DataFrame | None = None):
    """He et al. 2015 Fig. 6 as a matplotlib Figure (call inside style.rc()): see the module docstring.
    `iterations` (iteration_curves.csv), when given, draws the training error at its finer resolution."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    means = seed_means(curves)
    fine = iterations if iterations is not None and not iterations.empty else None
    several_families = "family" in curves.columns and curves["family"].nunique() > 1
    fig, axes = style.new_figure(width=style.PAGE_WIDTH, height=3.4, ncols=2)
    for ax, residual, title in zip(axes, (False, True), ("plain", "residual (ResNet)")):
        part = means[means["residual"] == residual]
        models = list(part.groupby(["model", "depth"], sort=False).groups)
        colors = family_colors(models, residual)
        drawn: list[tuple[np.ndarray, np.ndarray]] = []
        handles, most_seeds = [], 1

        def line(x, y, **kw) -> None:
            x, y = np.asarray(x, dtype=float), 100 * np.asarray(y, dtype=float)
            ax.plot(x, y, **kw)
            drawn.append((x, y))

        for model, depth in sorted(models, key=lambda item: (item[1], item[0])):
            color = colors[str(model)]
            mean = part[part["model"] == model].sort_values("iteration")
            runs = curves[curves["model"] == model]
            seeds = sorted(runs["seed"].unique())
            most_seeds = max(most_seeds, len(seeds))
            train = fine[fine["model"] == model] if fine is not None else None
            if train is not None and train.empty:
                train = None
            if len(seeds) > 1:  # each seed thin and light, under the bold mean
                for seed in seeds:
                    run = runs[runs["seed"] == seed].sort_values("iteration")
                    line(run["iteration"], run["test_error"], color=color, linewidth=SEED_WIDTH, alpha=SEED_ALPHA)
                    own = train[train["seed"] == seed].sort_values("iteration") if train is not None else run
                    line(own["iteration"], own["train_error"], color=color, linestyle="--", linewidth=SEED_WIDTH * 0.8,
                         alpha=SEED_ALPHA)
            if train is not None:
                train_mean = train.groupby("iteration", sort=True)["train_error"].mean()
                line(train_mean.index, train_mean.to_numpy(), color=color, linestyle="--", linewidth=1.0)
            else:
                line(mean["iteration"], mean["train_error"], color=color, linestyle="--", linewidth=1.0)
            line(mean["iteration"], mean["test_error"], color=color, linestyle="-", linewidth=MEAN_WIDTH)
            if np.isfinite(pd.to_numeric(runs["test_error"], errors="coerce").to_numpy(dtype=float)).any():
                handles.append((int(depth), Line2D([], [], color=color, linewidth=MEAN_WIDTH,
                                                   label=_label(residual, int(depth), model, several_families))))
        handles = [h for _, h in sorted(handles, key=lambda item: item[0], reverse=True)]  # deepest first
        train_label = "training error" if fine is None else "training error (window of batches)"
        if handles:  # the keys to the line styles, only beside a net that was drawn
            handles += [Line2D([], [], color="0.3", linestyle="--", linewidth=1.0, label=train_label),
                        Line2D([], [], color="0.3", linestyle="-", linewidth=MEAN_WIDTH, label="test error")]
        if handles and most_seeds > 1:
            handles += [Line2D([], [], color="0.3", linewidth=SEED_WIDTH, alpha=SEED_ALPHA, label="thin: one seed"),
                        Line2D([], [], color="0.3", linewidth=MEAN_WIDTH, label="bold: mean over seeds")]
        # below the panel: inside, it would cover the early curves that run off the top
        style.put_legend(ax, handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, handlelength=2.2)
        ax.set_title(title)
        ax.set_xlabel(_iteration_label(curves))
        if means["iteration"].max() >= 10_000:
            ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.set_xlim(left=0)
        ax.set_ylabel("error (%)")
        ax.set_ylim(0, error_ceiling(drawn))
        if part.empty:
            ax.text(0.5, 0.5, f"no {title} runs", transform=ax.transAxes, ha="center", va="center", color="0.5")
    return fig


def draw_curves(curves: pd.DataFrame, folder: Path, formats: Iterable[str],
                iterations: pd.DataFrame | None = None) -> list[Path]:
    """He et al. 2015 Fig. 6 (`curves_figure`) saved as degradation_curves.<format>."""
    with style.rc():
        return style.save_figure(curves_figure(curves, iterations), folder, "degradation_curves", formats)


def draw_error_vs_depth(summary: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Final training (left) and test (right) error against depth, plain vs residual, mean +- std over seeds.

    The degradation problem (He et al. 2015, Sec. 4.2) is the plain line rising in the LEFT panel: deeper plain nets
    fit their training set worse. Grey marks: He et al. Table 6 (ResNet) and Li et al. 2018 (no shortcuts)."""
    depths = sorted(summary["depth"].unique())
    lo, hi = min(depths), max(depths)
    with style.rc():
        fig, axes = style.new_figure(width=style.PAGE_WIDTH * 0.75, height=2.5, ncols=2)
        for ax, which, title in zip(axes, ("train", "test"), ("final training error", "final test error")):
            for residual in (False, True):
                part = summary[summary["residual"] == residual].sort_values("depth")
                if part.empty:
                    continue
                ax.errorbar(
                    part["depth"], 100 * part[f"final_{which}_error_mean"],
                    yerr=100 * part[f"final_{which}_error_std"].fillna(0),
                    color=style.variant_color(residual), marker="o", capsize=2, linewidth=1.2,
                    label="residual (ResNet)" if residual else "plain",
                )
            if which == "test":
                he = {d: e for d, e in reference.HE_TABLE6_TEST_ERROR.items() if lo <= d <= hi}
                if he:
                    ax.plot(list(he), [100 * e for e in he.values()], linestyle="none", marker="x",
                            color=style.REFERENCE_COLOR, label="He et al. 2015, Table 6 (ResNet)")
                li = {d: e["plain"] for d, e in reference.LI_TEST_ERROR.items() if lo <= d <= hi}
                if li:
                    ax.plot(list(li), [100 * e for e in li.values()], linestyle="none", marker="+", markersize=5,
                            color=style.REFERENCE_COLOR, label="Li et al. 2018 (no shortcuts)")
            ax.set_title(title)
            ax.set_xlabel("depth (weighted layers)")
            ax.set_xticks(depths)
            ax.set_ylim(bottom=0)
        axes[0].set_ylabel("error (%)")
        handles, labels = style.drawn_entries(axes[1], axes[0])  # the series drawn, in either panel
        order = sorted(range(len(labels)), key=lambda i: ("et al." in labels[i], i))  # resx first, papers after
        style.put_legend(fig, [handles[i] for i in order], [labels[i] for i in order], loc="outside lower center",
                         ncol=4)
        return style.save_figure(fig, folder, "error_vs_depth", formats)


def plot_degradation(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw He et al. 2015 Fig. 6 (`degradation_curves`) and `error_vs_depth` from a degradation study folder.

    Reads `curves.csv` (and `summary.csv` when there is no curves.csv), writes into `out` or `folder`, skips a
    figure whose CSV is absent, and returns the paths written."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    written: list[Path] = []
    curves = read_curves(folder)
    if curves is not None:
        written += draw_curves(curves, out, formats, read_iteration_curves(folder))
    # summary.csv holds finished runs only (an interrupted run's last epoch is not its final error)
    summary = read_summary(folder)
    if summary is None and curves is not None:
        summary = summarize_curves(curves)
    if summary is not None and not summary.empty:
        written += draw_error_vs_depth(summary, out, formats)
    return written
