"""Lesion studies: Veit, Wilber, Belongie 2016 ("Residual Networks Behave Like Ensembles of Relatively Shallow
Networks"), Figs. 3 and 5.

- `lesion_single`   (Fig. 3): test error when each single block is deleted at test time (the block becomes its
  shortcut). One series per run; downsampling blocks drawn as open squares; each run's unlesioned error as a dashed
  line. In the paper only the downsampling blocks (and the first) matter for a ResNet; a plain net drops to chance.
- `lesion_delete_k` (Fig. 5a): mean test error (band: ± one std over the random draws) against the fraction k/n
  of the net's n blocks deleted, so that Veit et al.'s 54-block ResNet-110 (grey crosses) and a shallower net
  compare; each run's error with no block deleted is its dashed line. The error grows smoothly with k.
- `lesion_swap`     (Fig. 5b): test error against Kendall's tau of the block order after random swaps of same-shape
  blocks: each draw a dot, the mean of each swap count a marker with its std (no line: a handful of counts);
  tau runs from 1 (original order) down, left to right.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from resx import reference
from resx.plots import style
from resx.plots.csvs import read_csv
from resx.stats import mean_std

SINGLE_COLUMNS = ("run", "block", "downsampling", "test_error", "baseline_error")
DELETE_K_COLUMNS = ("run", "k", "test_error")  # `blocks` (n) and `baseline_error` are read where present
SWAP_COLUMNS = ("run", "kendall_tau", "test_error")


def read_single(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / "lesion_single.csv", SINGLE_COLUMNS)


def read_delete_k(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / "lesion_delete_k.csv", DELETE_K_COLUMNS)


def read_swap(folder: str | Path) -> pd.DataFrame | None:
    return read_csv(Path(folder) / "lesion_swap.csv", SWAP_COLUMNS)


def delete_k_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of the test error over draws, per run and k (columns run, k, mean, std, count)."""
    out = mean_std(frame, ["run", "k"], "test_error", sort=False).reset_index()
    return out.sort_values(["run", "k"]).reset_index(drop=True)


def blocks_per_run(delete_k: pd.DataFrame, folder: Path | None = None) -> dict[str, int]:
    """{run: n blocks}, from lesion_delete_k.csv's `blocks` column, else from lesion_info.json's runs (a CSV
    written before the column existed); runs found in neither are left out (their figure is drawn against k)."""
    n: dict[str, int] = {}
    if folder is not None:
        import json

        try:
            info = json.loads((Path(folder) / "lesion_info.json").read_text(encoding="utf-8"))
            for run in info.get("runs", []):
                if isinstance(run, dict) and isinstance(run.get("blocks"), int):
                    n[str(run.get("run"))] = int(run["blocks"])
        except (OSError, ValueError, AttributeError):
            pass
    if "blocks" in delete_k.columns:
        for run, part in delete_k.groupby("run", sort=False):
            value = pd.to_numeric(part["blocks"], errors="coerce").dropna()
            if len(value):
                n[str(run)] = int(value.iloc[0])
    return n


def swap_means(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Mean and std of the test error and mean Kendall's tau per run and number of swaps (columns run, swaps,
    mean, std, kendall_tau, count; None when the CSV has no `swaps` column)."""
    if "swaps" not in frame.columns:
        return None
    out = mean_std(frame, ["run", "swaps"], "test_error", sort=False)
    out.insert(2, "kendall_tau", frame.groupby(["run", "swaps"], sort=False)["kendall_tau"].mean())
    return out.reset_index().sort_values(["run", "swaps"]).reset_index(drop=True)


def _finite(values: pd.Series) -> bool:
    return bool(np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)).any())


def _runs(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["run"]))  # in file order


def draw_single(frame: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Veit et al. 2016 Fig. 3: test error after deleting each single block, per run."""
    from matplotlib.lines import Line2D

    runs = _runs(frame)
    colors = style.run_colors(runs)
    with style.rc():
        fig, ax = style.new_figure(width=style.PAGE_WIDTH * 0.6, height=2.4)
        for run in runs:
            part = frame[frame["run"] == run].sort_values("block")
            color = colors[run]
            ax.plot(part["block"], 100 * part["test_error"], color=color, marker="o", markersize=2.5,
                    linewidth=0.8, label=run)
            down = part[part["downsampling"]]
            ax.plot(down["block"], 100 * down["test_error"], linestyle="none", marker="s", markersize=6,
                    markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.0)
            ax.axhline(100 * part["baseline_error"].mean(), color=color, linestyle="--", linewidth=0.8)
        handles, _ = style.drawn_entries(ax)
        # the keys to the marks, each only where such a mark is drawn
        if _finite(frame.loc[frame["downsampling"].astype(bool), "test_error"]):
            handles.append(Line2D([], [], linestyle="none", marker="s", markersize=6, markerfacecolor="none",
                                  markeredgecolor="0.3", label="downsampling block"))
        if handles and _finite(frame["baseline_error"]):
            handles.append(Line2D([], [], color="0.3", linestyle="--", linewidth=0.8, label="no block deleted"))
        style.put_legend(ax, handles, loc="best")
        ax.set_xlabel("deleted block (index)")
        ax.set_ylabel("test error (%)")
        ax.set_ylim(bottom=0)
        ax.set_title("test error when one block is deleted")
        return style.save_figure(fig, folder, "lesion_single", formats)


def draw_delete_k(frame: pd.DataFrame, folder: Path, formats: Iterable[str],
                  source: Path | None = None) -> list[Path]:
    """Veit et al. 2016 Fig. 5a: error against the fraction of blocks randomly deleted (k/n), mean ± std over draws,
    with each run's error when nothing is deleted. Against k itself when a run's block count n is unknown."""
    means = delete_k_means(frame)
    runs = _runs(frame)
    colors = style.run_colors(runs)
    n_blocks = blocks_per_run(frame, source)
    fraction = all(run in n_blocks for run in runs)
    with style.rc():
        fig, ax = style.new_figure(width=style.COLUMN_WIDTH, height=2.4)
        for run in runs:
            part = means[means["run"] == run]
            x = part["k"] / n_blocks[run] if fraction else part["k"]
            std = part["std"].fillna(0)
            ax.plot(x, 100 * part["mean"], color=colors[run], marker="o", markersize=2.5, label=run)
            ax.fill_between(x, 100 * (part["mean"] - std), 100 * (part["mean"] + std), color=colors[run],
                            alpha=0.18, linewidth=0)
            if "baseline_error" in frame.columns:
                baseline = pd.to_numeric(frame.loc[frame["run"] == run, "baseline_error"], errors="coerce").mean()
                ax.axhline(100 * baseline, color=colors[run], linestyle="--", linewidth=0.8)
        # the paper's means, at k/54 (its ResNet-110 has 54 blocks), where resx measured as far
        top = (means["k"] / means["run"].map(n_blocks)).max() if fraction else means["k"].max()
        veit = {(k / reference.VEIT_BLOCKS if fraction else k): e for k, e in reference.VEIT_DELETE_K_ERROR.items()}
        veit = {x: e for x, e in veit.items() if x <= top + 1e-9}
        if veit:
            ax.plot(list(veit), [100 * e for e in veit.values()], linestyle="none", marker="x",
                    color=style.REFERENCE_COLOR, label=f"Veit et al. 2016 (ResNet-110, {reference.VEIT_BLOCKS} blocks)")
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles, _ = style.drawn_entries(ax)
        if handles and (pd.to_numeric(means["std"], errors="coerce").fillna(0) > 0).any():
            handles.append(Patch(color="0.5", alpha=0.25, linewidth=0, label="± 1 std over random draws"))
        if handles and "baseline_error" in frame.columns and _finite(frame["baseline_error"]):
            handles.append(Line2D([], [], color="0.3", linestyle="--", linewidth=0.8, label="no block deleted"))
        if fraction:
            ax.set_xlabel("fraction of blocks deleted (k / n)")
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("number of deleted blocks k")
        ax.set_ylabel("test error (%)")
        ax.set_ylim(0, 100)
        ax.set_xlim(left=0)
        ax.set_title("deleting k random blocks")
        style.put_legend(ax, handles, loc="upper left")
        return style.save_figure(fig, folder, "lesion_delete_k", formats)


def binned_means(tau: np.ndarray, error: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean error in equal-width bins of Kendall's tau (empty bins dropped): the line of Fig. 5b."""
    tau = np.asarray(tau, dtype=float)
    error = np.asarray(error, dtype=float)
    lo, hi = float(np.min(tau)), float(np.max(tau))
    if hi - lo < 1e-12:
        return np.array([lo]), np.array([float(np.mean(error))])
    edges = np.linspace(lo, hi, bins + 1)
    which = np.clip(np.digitize(tau, edges) - 1, 0, bins - 1)
    centres, means = [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            centres.append(float(np.mean(tau[mask])))
            means.append(float(np.mean(error[mask])))
    return np.array(centres), np.array(means)


def draw_swap(frame: pd.DataFrame, folder: Path, formats: Iterable[str]) -> list[Path]:
    """Veit et al. 2016 Fig. 5b: error against Kendall's tau after swapping random pairs of same-shape blocks: each
    draw a dot; the mean of each swap count a marker with ± one std (binned by tau when the CSV has no counts)."""
    runs = _runs(frame)
    colors = style.run_colors(runs)
    means = swap_means(frame)
    with style.rc():
        fig, ax = style.new_figure(width=style.COLUMN_WIDTH, height=2.4)
        for run in runs:
            part = frame[frame["run"] == run]
            ax.scatter(part["kendall_tau"], 100 * part["test_error"], s=6, color=colors[run], alpha=0.35,
                       linewidths=0, rasterized=True)
            if means is not None:
                m = means[means["run"] == run]
                ax.errorbar(m["kendall_tau"], 100 * m["mean"], yerr=100 * m["std"].fillna(0), color=colors[run],
                            linestyle="none", marker="o", markersize=4, capsize=2, linewidth=0.9,
                            label=f"{run} (mean ± std per swap count)")
            else:
                centres, binned = binned_means(part["kendall_tau"].to_numpy(), part["test_error"].to_numpy())
                ax.plot(centres, 100 * binned, color=colors[run], linestyle="none", marker="o", markersize=4,
                        label=f"{run} (mean per bin of tau)")
        ax.set_xlabel("Kendall's tau of the block order")
        ax.set_ylabel("test error (%)")
        ax.set_ylim(0, 100)
        ax.invert_xaxis()  # tau = 1 is the original order: more shuffling to the right, as in Fig. 5b
        ax.set_title("reordering blocks (dots: single draws)")
        style.put_legend(ax, style.drawn_entries(ax)[0], loc="upper left")
        return style.save_figure(fig, folder, "lesion_swap", formats)


def plot_lesion(folder: str | Path, formats=("png", "pdf"), out: str | Path | None = None) -> list[Path]:
    """Draw Veit et al. 2016 Figs. 3, 5a and 5b from a lesion study folder.

    Reads `lesion_single.csv`, `lesion_delete_k.csv` and `lesion_swap.csv`; a figure whose CSV is absent is skipped.
    Writes into `out` or `folder` and returns the paths written."""
    formats = style.check_formats(formats)
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    written: list[Path] = []
    single, delete_k, swap = read_single(folder), read_delete_k(folder), read_swap(folder)
    if single is not None:
        written += draw_single(single, out, formats)
    if delete_k is not None:
        written += draw_delete_k(delete_k, out, formats, folder)
    if swap is not None:
        written += draw_swap(swap, out, formats)
    return written
