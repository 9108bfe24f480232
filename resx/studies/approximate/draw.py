"""The approximation study's figures and readers, from its CSVs alone (Lin & Jegelka 2018, "ResNet with one-neuron
hidden layers is a Universal Approximator"):

- `approximation_regions`  decision regions, rows: models, columns: depths (the first seed), p(class 1) shaded, the
  boundary p = 1/2 drawn, the first seed's training points on top;
- `approximation_accuracy` training and test accuracy against depth: the mean over seeds and a band from the lowest
  to the highest seed, with the accuracy of a constant (the larger class's share);
- `approximation_far`      the share of a circle far outside the data that each net puts in class 1, one panel per
  radius, against depth (mean and min-max band over seeds): a width-<=d net's class-1 region is unbounded, a
  one-neuron ResNet's need not be;
- `approximation_loss`     the training loss along training (the first seed), one panel per model, one line per depth.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from resx.errors import ResxError
from resx.markdown import read_info as _read_json
from resx.plots import style
from resx.plots.csvs import read_csv
from resx.studies.approximate.declare import (COLUMNS, CSV_NAME, CURVE_COLUMNS, CURVES_NAME, INFO_NAME, MARGIN_COLUMNS,
                                              POINT_COLUMNS, POINTS_NAME, RADII, REGION_COLUMNS, REGIONS_NAME,
                                              SHARE_COLUMNS)

CLASS0_COLOR, CLASS1_COLOR = "#a63603", "#08519c"  # the ring (class 0) and the disc (class 1)
PAPER = "Lin & Jegelka 2018"


# --- readers ---------------------------------------------------------------------------------------------------------
TEXT = ("task", "split", "label")  # required columns that hold words (resx.plots.csvs checks the others for numbers)


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame | None:
    frame = read_csv(path, [c for c in columns if c not in TEXT])
    if frame is not None:
        missing = [c for c in columns if c in TEXT and c not in frame.columns]
        if missing:
            raise ResxError(f"{path}: missing column {missing[0]!r} (needs {', '.join(columns)})")
        for column in TEXT:
            if column in frame.columns and column != "label":
                frame[column] = frame[column].astype(str)
    return frame


def read_results(folder: str | Path) -> pd.DataFrame | None:
    frame = _read(Path(folder) / CSV_NAME, COLUMNS)
    return None if frame is None else frame.assign(label=labels(frame))


def read_regions(folder: str | Path) -> pd.DataFrame | None:
    frame = _read(Path(folder) / REGIONS_NAME, REGION_COLUMNS)
    return None if frame is None else frame.assign(label=labels(frame))


def read_points(folder: str | Path) -> pd.DataFrame | None:
    return _read(Path(folder) / POINTS_NAME, POINT_COLUMNS)


def read_curves(folder: str | Path) -> pd.DataFrame | None:
    frame = _read(Path(folder) / CURVES_NAME, CURVE_COLUMNS)
    return None if frame is None else frame.assign(label=frame["label"].astype(str))


def read_info(folder: str | Path) -> dict:
    return _read_json(Path(folder) / INFO_NAME)


def labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's model spec: the `label` column resx writes, else model (and width where the file has one)."""
    if "label" in frame.columns:
        return frame["label"].astype(str)
    if "width" in frame.columns:
        return frame["model"].astype(str) + ":width=" + frame["width"].astype(str)
    return frame["model"].astype(str)


def _order(values: Iterable) -> list:
    return list(dict.fromkeys(values))  # in file order


def tag(radius: float) -> str:
    return f"r{radius:g}"


def radii_in(frame: pd.DataFrame) -> list[float]:
    """The circles measured, from the per-radius columns present (the declared ones)."""
    return [r for r, column in zip(RADII, SHARE_COLUMNS) if column in frame.columns]


# --- summary -----------------------------------------------------------------------------------------------------
def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per task, model spec and depth: seeds, params, accuracy and far-field share (mean, min, max), the
    nets that learnt a constant on the training points, and those whose class 1 reaches each circle (margin > 0)."""
    rows = []
    for (task, label, depth), part in frame.groupby(["task", "label", "depth"], sort=False):
        row = {"task": task, "label": label, "model": part["model"].iloc[0], "width": part["width"].iloc[0],
               "depth": int(depth), "seeds": len(part), "params": int(part["params"].iloc[0])}
        for column in ("train_accuracy", "test_accuracy", "final_loss", "far_class1_share", *SHARE_COLUMNS):
            if column in part.columns:
                values = pd.to_numeric(part[column], errors="coerce")
                row.update({f"{column}_mean": values.mean(), f"{column}_min": values.min(),
                            f"{column}_max": values.max()})
        for column in MARGIN_COLUMNS:
            if column in part.columns:
                row[f"reached_{column.rsplit('_', 1)[1]}"] = int((pd.to_numeric(part[column]) > 0).sum())
        if "train_class1_share" in part.columns:
            share = pd.to_numeric(part["train_class1_share"])
            row["constant"] = int(((share == 0) | (share == 1)).sum())
        for column in ("residual", "hidden_layers", "majority_share", "loss_half", "loss_three_quarters", "seconds"):
            if column in part.columns:
                row[column] = part[column].iloc[0] if column in ("residual", "hidden_layers") else part[column].mean()
        rows.append(row)
    return pd.DataFrame(rows)


# --- figures -------------------------------------------------------------------------------------------------------
def _region_cmap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("class01", ["#fdd0a2", "#ffffff", "#c6dbef"])


def _depth_axis(ax, depths: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(depths)
    ax.set_xticklabels([str(d) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel("depth (blocks; an MLP block is 2 layers)")


def draw_regions(regions: pd.DataFrame, points: pd.DataFrame | None, results: pd.DataFrame | None, folder: Path,
                 formats: Iterable[str], max_points: int = 400) -> list[Path]:
    """The first seed's decision regions: rows models, columns depths; the training points on top."""
    seed = int(regions["seed"].min())
    regions = regions[regions["seed"] == seed]
    models, depths = _order(regions["label"]), sorted(regions["depth"].unique())
    task = ", ".join(_order(regions["task"].astype(str)))
    train = None
    if points is not None:
        train = points[(points["seed"] == seed) & (points["split"].astype(str) == "train")]
        train = train.iloc[:max_points]
    cmap = _region_cmap()
    with style.rc():
        from matplotlib.figure import Figure

        size = 1.05
        fig = Figure(figsize=(0.9 + size * len(depths), 0.5 + size * len(models)), layout="constrained")
        axes = np.atleast_2d(fig.subplots(len(models), len(depths), squeeze=False))
        image = None
        for i, label in enumerate(models):
            for j, depth in enumerate(depths):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                part = regions[(regions["label"] == label) & (regions["depth"] == depth)]
                if j == 0:
                    ax.set_ylabel(label, fontsize=6)
                if i == 0:
                    ax.set_title(f"depth {depth}")
                if part.empty:
                    ax.set_axis_off()
                    continue
                xs, ys = np.sort(part["x"].unique()), np.sort(part["y"].unique())
                grid = part.pivot_table(index="y", columns="x", values="p_class1").reindex(index=ys, columns=xs)
                extent = (xs[0], xs[-1], ys[0], ys[-1])
                image = ax.imshow(grid.to_numpy(), origin="lower", extent=extent, cmap=cmap, vmin=0, vmax=1,
                                  interpolation="nearest", aspect="equal")
                if np.nanmin(grid.to_numpy()) < 0.5 < np.nanmax(grid.to_numpy()):
                    ax.contour(xs, ys, grid.to_numpy(), levels=[0.5], colors="k", linewidths=0.6)
                if train is not None:
                    for cls, color in ((0, CLASS0_COLOR), (1, CLASS1_COLOR)):
                        mine = train[train["class"] == cls]
                        ax.scatter(mine["x"], mine["y"], s=0.6, color=color, linewidths=0, rasterized=True)
                if results is not None:
                    row = results[(results["label"] == label) & (results["depth"] == depth) & (results["seed"] == seed)]
                    if len(row):
                        ax.text(0.03, 0.03, f"train {100 * row['train_accuracy'].iloc[0]:.1f}%", fontsize=5,
                                transform=ax.transAxes, bbox=dict(facecolor="white", alpha=0.7, linewidth=0, pad=1))
        if image is not None:
            bar = fig.colorbar(image, ax=axes, shrink=0.6, aspect=30)
            bar.set_label("p(class 1)")
        source = f"{PAPER}'s toy" if task == "ball" else f"a harder task than {PAPER}'s disc and ring"
        fig.suptitle(f"Decision regions on {task}, seed {seed} ({source})\ndots: training points (blue: class 1, "
                     "orange: class 0); black line: p = 1/2", fontsize=7)
        return style.save_figure(fig, folder, "approximation_regions", formats)


def _band(ax, frame: pd.DataFrame, column: str, scale: float = 100.0) -> list:
    """Per model spec: the mean over seeds (line and markers) and a min-max band; returns the labels drawn."""
    models = _order(frame["label"])
    colors = style.run_colors(models)
    for label in models:
        part = frame[frame["label"] == label]
        stats = part.groupby("depth")[column].agg(["mean", "min", "max"]).sort_index()
        ax.plot(stats.index, scale * stats["mean"], color=colors[label], marker="o", markersize=3, label=label)
        ax.fill_between(stats.index, scale * stats["min"], scale * stats["max"], color=colors[label], alpha=0.18,
                        linewidth=0)
    return models


def _band_handles(ax, seeds: int, extra: list | None = None) -> list:
    from matplotlib.patches import Patch

    handles, _ = style.drawn_entries(ax)
    if not handles:  # no net drawn: no key to its marks either
        return []
    band = [Patch(color="0.5", alpha=0.3, linewidth=0, label=f"band: min-max over {seeds} seeds; line: mean")]
    return handles + (band if seeds > 1 else []) + (extra or [])


def draw_accuracy(results: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Training and test accuracy against depth, mean and min-max band over seeds, with a constant's accuracy."""
    from matplotlib.lines import Line2D

    depths = sorted(results["depth"].unique())
    seeds = int(results.groupby(["label", "depth"])["seed"].nunique().max())
    task = ", ".join(_order(results["task"].astype(str)))
    with style.rc():
        fig, axes = style.new_figure(width=style.PAGE_WIDTH * 0.8, height=2.8, ncols=2, sharey=True)
        extra = []
        for ax, column, name in zip(axes, ("train_accuracy", "test_accuracy"), ("training", "test")):
            _band(ax, results, column)
            if "majority_share" in results.columns:
                ax.axhline(100 * results["majority_share"].mean(), color=style.REFERENCE_COLOR, linestyle="--",
                           linewidth=0.8)
            _depth_axis(ax, depths)
            ax.set_title(f"{name} accuracy")
        if "majority_share" in results.columns:
            extra = [Line2D([], [], color=style.REFERENCE_COLOR, linestyle="--", linewidth=0.8,
                            label="a constant (the larger class's share)")]
        axes[0].set_ylabel("accuracy (%)")
        axes[0].set_ylim(top=101)
        style.put_legend(fig, _band_handles(axes[0], seeds, extra), loc="outside lower center", ncol=3, fontsize=6)
        fig.suptitle(f"Narrow nets against one-neuron ResNets on {task} ({PAPER})", fontsize=8)
        return style.save_figure(fig, folder, "approximation_accuracy", formats)


def draw_far(results: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """The share of each far circle put in class 1, against depth (mean, min-max band over seeds), and dotted, the
    share of the seeds' nets whose class 1 reaches the circle at all (largest margin on it > 0)."""
    from matplotlib.lines import Line2D

    radii = radii_in(results)
    shares = [c for r, c in zip(RADII, SHARE_COLUMNS) if r in radii] or ["far_class1_share"]
    margins = [c if c in results.columns else None for r, c in zip(RADII, MARGIN_COLUMNS) if r in radii] or [None]
    titles = [f"circle of radius {r:g}" for r in radii] or ["the far circle"]
    depths = sorted(results["depth"].unique())
    seeds = int(results.groupby(["label", "depth"])["seed"].nunique().max())
    colors = style.run_colors(_order(results["label"]))
    with style.rc():
        fig, axes = style.new_figure(width=style.PAGE_WIDTH, height=2.5, ncols=len(shares), sharey=True)
        axes = axes if isinstance(axes, list) else [axes]
        for ax, share, margin, title in zip(axes, shares, margins, titles):
            _band(ax, results, share)
            if margin is not None:
                reached = results.assign(_r=pd.to_numeric(results[margin]) > 0)
                for label in _order(results["label"]):
                    part = reached[reached["label"] == label].groupby("depth")["_r"].mean().sort_index()
                    ax.plot(part.index, 100 * part, color=colors[label], linestyle=":", linewidth=1.1, marker="x",
                            markersize=3)
            _depth_axis(ax, depths)
            ax.set_title(title)
        axes[0].set_ylabel("share (%)")
        axes[0].set_ylim(-3, 103)
        extra = [Line2D([], [], color="0.3", linestyle=":", marker="x", markersize=3,
                        label="nets whose class 1 reaches the circle (% of seeds)")] if margins[0] is not None else []
        style.put_legend(fig, _band_handles(axes[0], seeds, extra), loc="outside lower center", ncol=3, fontsize=6)
        fig.suptitle("Far outside the data: the share of each circle put in class 1 (solid lines)\nTheory: every "
                     "class-1 region of a ReLU net of width <= d is unbounded; a one-neuron ResNet's need not be",
                     fontsize=7)
        return style.save_figure(fig, folder, "approximation_far", formats)


def draw_loss(curves: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """The training loss along training, the first seed: one panel per model spec, one line per depth."""
    seed = int(curves["seed"].min())
    curves = curves[curves["seed"] == seed]
    models = _order(curves["label"].astype(str))
    colors = style.depth_colors(curves["depth"].unique())
    with style.rc():
        fig, axes = style.new_figure(width=min(style.PAGE_WIDTH, 2.4 * len(models)), height=2.6, ncols=len(models),
                                     sharey=True)
        axes = axes if isinstance(axes, list) else [axes]
        for ax, label in zip(axes, models):
            part = curves[curves["label"].astype(str) == label]
            for depth in sorted(part["depth"].unique()):
                line = part[part["depth"] == depth].sort_values("step")
                ax.plot(line["step"], line["loss"].clip(lower=1e-6), color=colors[depth], label=f"depth {depth}")
            ax.set_yscale("log")
            ax.set_xlabel("step (Adam update)")
            ax.set_title(label, fontsize=7)
        axes[0].set_ylabel("training loss (cross-entropy)")
        legend = dict(zip(*reversed(style.drawn_entries(*axes))))  # every depth drawn, once
        names = sorted(legend, key=lambda n: int(n.split()[-1]))
        style.put_legend(fig, [legend[n] for n in names], names, loc="outside lower center",
                         ncol=max(1, min(6, len(names))), fontsize=6)
        fig.suptitle(f"Training loss, seed {seed} (lr / 10 at 50% and 75% of the steps; floored at 1e-6)", fontsize=7)
        return style.save_figure(fig, folder, "approximation_loss", formats)


def plot_approximate(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw the study's figures from approximation.csv, approximation_regions.csv.gz, approximation_points.csv and
    approximation_curves.csv in `folder` (a figure whose CSV is absent is skipped) into `out` or `folder`."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    written: list[Path] = []
    results, regions, curves = read_results(folder), read_regions(folder), read_curves(folder)
    if regions is not None:
        written += draw_regions(regions, read_points(folder), results, out, formats)
    if results is not None:
        written += draw_accuracy(results, out, formats)
        written += draw_far(results, out, formats)
    if curves is not None:
        written += draw_loss(curves, out, formats)
    return written
