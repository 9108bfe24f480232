"""resx.plots: every figure is drawn from small but realistic study CSVs, and nothing pulls in torch."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resx.errors import ResxError
from resx.plots import plot_results
from resx.studies.lesion.draw import plot_lesion
from resx.studies.bench.draw import plot_bench
from resx.studies.paths.draw import plot_paths
from resx.studies.degradation.draw import plot_degradation

REPO = Path(__file__).resolve().parents[1]
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-", "svg": b"<?xml"}


# --- example CSVs with the studies' columns, shaped like the papers' results --------------------------------------
def write_degradation(folder: Path, depths=(20, 56), seeds=(0, 1), epochs=3, steps_per_epoch=391) -> None:
    rng = np.random.default_rng(0)
    curves, summary = [], []
    for residual in (False, True):
        for depth in depths:
            model = f"{'resnet' if residual else 'plain'}{depth}"
            # He et al. Fig. 6: deeper plain nets train worse, deeper ResNets better
            final_train = (0.04 - 0.0003 * (depth - 20)) if residual else (0.05 + 0.002 * (depth - 20))
            for seed in seeds:
                for epoch in range(1, epochs + 1):
                    decay = math.exp(-1.5 * (epoch - 1))
                    train = final_train + 0.5 * decay + rng.normal(0, 0.003)
                    curves.append(dict(
                        model=model, family="cifar", residual=residual, depth=depth, seed=seed, epoch=epoch,
                        iteration=epoch * steps_per_epoch, train_error=train, test_error=train + 0.04,
                        train_loss=2 * train, test_loss=2 * train + 0.1, lr=0.1, batch_size=128))
    frame = pd.DataFrame(curves)
    frame.to_csv(folder / "curves.csv", index=False)
    last = frame[frame["epoch"] == epochs]
    for (model, residual, depth), part in last.groupby(["model", "residual", "depth"]):
        summary.append(dict(
            model=model, residual=residual, depth=depth, params=int(depth * 14_000), seeds=len(seeds),
            final_train_error_mean=part["train_error"].mean(), final_train_error_std=part["train_error"].std(),
            final_test_error_mean=part["test_error"].mean(), final_test_error_std=part["test_error"].std(),
            best_test_error_mean=part["test_error"].mean()))
    pd.DataFrame(summary).to_csv(folder / "summary.csv", index=False)


def write_lesion(folder: Path, blocks=9) -> None:
    rng = np.random.default_rng(1)
    single, delete_k, swap = [], [], []
    for run, base in (("resnet20", 0.08), ("resnet20-stochastic-depth", 0.07)):
        for block in range(blocks):
            downsampling = block in (3, 6)
            error = base + (0.2 if block == 0 else 0.06 if downsampling else 0.01) + rng.normal(0, 0.002)
            single.append(dict(run=run, block=block, stage=block // 3, downsampling=downsampling,
                               test_error=error, baseline_error=base))
        for k in range(0, 8):
            for draw in range(4):
                delete_k.append(dict(run=run, k=k, draw=draw, test_error=min(0.9, base * math.exp(0.3 * k))
                                     + rng.normal(0, 0.01)))
        for swaps in (1, 2, 3, 5):
            for draw in range(5):
                tau = 1 - swaps * 0.08 + rng.normal(0, 0.02)
                swap.append(dict(run=run, swaps=swaps, draw=draw, kendall_tau=tau,
                                 test_error=base + 0.6 * (1 - tau) + rng.normal(0, 0.01)))
    pd.DataFrame(single).to_csv(folder / "lesion_single.csv", index=False)
    pd.DataFrame(delete_k).to_csv(folder / "lesion_delete_k.csv", index=False)
    pd.DataFrame(swap).to_csv(folder / "lesion_swap.csv", index=False)


def write_paths(folder: Path, n=6) -> None:
    ks = np.arange(n + 1)
    paths = np.array([math.comb(n, int(k)) for k in ks])
    grad = 0.5 * np.exp(-0.9 * ks)
    total = paths * grad
    pd.DataFrame(dict(k=ks, paths=paths, fraction=paths / paths.sum())).to_csv(
        folder / "path_distribution.csv", index=False)
    pd.DataFrame(dict(k=ks, samples=100, grad_norm_mean=grad, grad_norm_std=0.3 * grad)).to_csv(
        folder / "path_gradients.csv", index=False)
    pd.DataFrame(dict(k=ks, total=total, fraction=total / total.sum())).to_csv(
        folder / "path_total_gradient.csv", index=False)
    rows = []
    for run, residual in (("plain20", False), ("resnet20", True)):
        for trained in (False, True):
            for block in range(9):
                # plain nets lose gradient towards the input; residual nets keep it
                norm = (0.9 ** (9 - block) if residual else 0.5 ** (9 - block)) * (0.3 if trained else 1.0)
                rows.append(dict(run=run, residual=residual, trained=trained, block=block, grad_norm=norm))
    pd.DataFrame(rows).to_csv(folder / "block_gradients.csv", index=False)


def write_bench(folder: Path) -> None:
    rows = []
    for model, scale in (("resnet20", 1.0), ("resnet56", 0.4), ("resnet110", 0.2)):
        for method, speed in (("eager", 12_000), ("cuda_graph", 33_000), ("cuda_graph_bf16", 62_000)):
            rows.append(dict(model=model, method=method, batch_size=128, images_per_second=speed * scale,
                             peak_memory_mb=500 / scale))
    pd.DataFrame(rows).to_csv(folder / "bench.csv", index=False)


def write_example_results(results: Path) -> Path:
    """A results folder as the studies write it: one subfolder per study."""
    for name, write in (("degradation", write_degradation), ("lesion", write_lesion), ("paths", write_paths),
                        ("bench", write_bench)):
        (results / name).mkdir(parents=True, exist_ok=True)
        write(results / name)
    return results


def assert_figures(paths, folder: Path, stems, formats=("png", "pdf")) -> None:
    expected = {folder / f"{stem}.{fmt}" for stem in stems for fmt in formats}
    assert set(map(Path, paths)) == expected
    for path in expected:
        data = path.read_bytes()
        assert data.startswith(MAGIC[path.suffix[1:]]), path
        assert len(data) > 1000, path
        if path.suffix == ".png":
            assert len(data) < 150_000, f"{path} is {len(data)} bytes"
    assert not list(folder.glob(".*.tmp")), "temporary files left behind"


# --- tests --------------------------------------------------------------------------------------------------------
def test_plot_degradation(tmp_path):
    write_degradation(tmp_path)
    assert_figures(plot_degradation(tmp_path), tmp_path, ["degradation_curves", "error_vs_depth"])


def test_plot_degradation_from_summary_only(tmp_path):
    write_degradation(tmp_path)
    (tmp_path / "curves.csv").unlink()
    assert_figures(plot_degradation(tmp_path, formats=("png",)), tmp_path, ["error_vs_depth"], ("png",))


def test_plot_lesion(tmp_path):
    write_lesion(tmp_path)
    assert_figures(plot_lesion(tmp_path), tmp_path, ["lesion_single", "lesion_delete_k", "lesion_swap"])


def test_plot_paths(tmp_path):
    write_paths(tmp_path)
    assert_figures(plot_paths(tmp_path), tmp_path, ["paths", "block_gradients"])


def test_plot_bench(tmp_path):
    write_bench(tmp_path)
    assert_figures(plot_bench(tmp_path, formats=["png", "svg"]), tmp_path, ["bench"], ("png", "svg"))


def test_missing_csvs_are_skipped(tmp_path):
    assert plot_degradation(tmp_path) == []
    assert plot_lesion(tmp_path) == []
    assert plot_paths(tmp_path) == []
    assert plot_bench(tmp_path) == []


def test_partial_lesion_study_draws_what_it_can(tmp_path):
    write_lesion(tmp_path)
    (tmp_path / "lesion_swap.csv").unlink()
    assert_figures(plot_lesion(tmp_path, formats="png"), tmp_path, ["lesion_single", "lesion_delete_k"], ("png",))


def test_plot_results_finds_every_study_in_subfolders(tmp_path):
    results = write_example_results(tmp_path / "results")
    written = plot_results(results)
    assert len(written) == 2 * 8
    for sub, stems in (("degradation", ["degradation_curves", "error_vs_depth"]),
                       ("lesion", ["lesion_single", "lesion_delete_k", "lesion_swap"]),
                       ("paths", ["paths", "block_gradients"]), ("bench", ["bench"])):
        assert_figures([p for p in written if p.parent == results / sub], results / sub, stems)


def test_plot_results_into_out_keeps_the_subfolders(tmp_path):
    results = write_example_results(tmp_path / "results")
    written = plot_results(results, formats=("png",), out=tmp_path / "figures")
    assert (tmp_path / "figures" / "lesion" / "lesion_swap.png").is_file()
    assert all(p.is_relative_to(tmp_path / "figures") for p in written)
    assert not list(results.rglob("*.png"))


def test_plot_results_all_in_one_folder(tmp_path):
    for write in (write_degradation, write_lesion, write_paths, write_bench):
        write(tmp_path)
    assert len(plot_results(tmp_path, formats=("png",))) == 8


def test_plot_results_on_empty_folder_says_what_it_looked_for(tmp_path):
    with pytest.raises(ResxError, match="no resx CSVs found under .*curves.csv"):
        plot_results(tmp_path)


def test_unknown_format_names_the_allowed(tmp_path):
    write_bench(tmp_path)
    with pytest.raises(ResxError, match="png, pdf, svg"):
        plot_bench(tmp_path, formats=("png", "jpg"))


def test_missing_column_names_file_and_column(tmp_path):
    write_degradation(tmp_path)
    curves = pd.read_csv(tmp_path / "curves.csv").drop(columns=["test_error"])
    curves.to_csv(tmp_path / "curves.csv", index=False)
    with pytest.raises(ResxError, match=r"curves\.csv: missing column 'test_error'"):
        plot_results(tmp_path)


def test_bool_columns_written_as_text_or_numbers(tmp_path):
    write_paths(tmp_path)
    blocks = pd.read_csv(tmp_path / "block_gradients.csv")
    blocks["residual"] = blocks["residual"].map({True: "true", False: "false"})
    blocks["trained"] = blocks["trained"].astype(int)
    blocks.to_csv(tmp_path / "block_gradients.csv", index=False)
    assert_figures(plot_paths(tmp_path, formats="png"), tmp_path, ["paths", "block_gradients"], ("png",))


def test_shared_columns_come_typed_and_rows_without_a_depth_are_left_out(tmp_path):
    from resx.plots.csvs import collecting_notes, read_csv

    path = tmp_path / "summary.csv"
    path.write_text("model,residual,depth,final_test_error_mean\nresnet20,true,20,0.08\n,0,,0.2\nplain56,False,56.0,0.3\n")
    with collecting_notes() as notes:
        frame = read_csv(path, ["model", "residual", "depth", "final_test_error_mean"])
    assert list(frame["depth"]) == [20, 56] and frame["depth"].dtype.kind == "i"
    assert list(frame["residual"]) == [True, False] and list(frame["model"]) == ["resnet20", "plain56"]
    assert any("1 row(s) without a depth" in note for note in notes)
    path.write_text("run,residual,x\n,true,1\n")  # a missing name stays missing, not the text "nan"
    assert read_csv(path, ["residual", "x"])["run"].isna().all()


def test_plotting_never_imports_torch_typer_or_rich(tmp_path):
    results = write_example_results(tmp_path / "results")
    code = textwrap.dedent(f"""
        import sys
        import resx.plots, resx.report
        resx.plots.plot_results({str(results)!r}, formats=("png",))
        resx.report.write_report({str(results)!r})
        heavy = sorted(m for m in ("torch", "typer", "rich") if m in sys.modules)
        assert not heavy, heavy
        import matplotlib
        assert matplotlib.get_backend().lower() == "agg" or "matplotlib.pyplot" not in sys.modules
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (results / "REPORT.md").is_file()


def test_legends_name_only_what_was_drawn(tmp_path, monkeypatch):
    """A run, a method or a kind of net with no numbers (not run, diverged to NaN) gets no legend entry, and a key
    to a mark (downsampling block, ± 1 std, training error) only comes with such a mark."""
    from resx.plots import style

    results = write_example_results(tmp_path / "results")
    nothing = "resnet20-stochastic-depth"
    for name in ("lesion_single.csv", "lesion_delete_k.csv", "lesion_swap.csv"):
        frame = pd.read_csv(results / "lesion" / name)
        frame.loc[frame["run"] == nothing, "test_error"] = np.nan
        if name == "lesion_single.csv":
            frame["downsampling"] = False
        if name == "lesion_delete_k.csv":
            frame = frame[frame["draw"] == 0]  # one draw: no spread to key
        frame.to_csv(results / "lesion" / name, index=False)
    bench = pd.read_csv(results / "bench" / "bench.csv")
    bench.loc[bench["method"] == "cuda_graph_bf16", "images_per_second"] = np.nan
    bench.to_csv(results / "bench" / "bench.csv", index=False)
    for name, columns in (("curves.csv", ["train_error", "test_error"]),
                          ("summary.csv", ["final_train_error_mean", "final_test_error_mean"])):
        frame = pd.read_csv(results / "degradation" / name)
        frame.loc[~frame["residual"], columns] = np.nan  # the plain nets diverged from the start
        frame.to_csv(results / "degradation" / name, index=False)
    blocks = pd.read_csv(results / "paths" / "block_gradients.csv")
    blocks.loc[blocks["run"] == "plain20", "grad_norm"] = np.nan
    blocks.to_csv(results / "paths" / "block_gradients.csv", index=False)

    legends: dict[str, list[list[str]]] = {}

    def capture(fig, folder, stem, formats):
        found = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
        legends[stem] = [[t.get_text() for t in legend.get_texts()] for legend in found if legend is not None]
        return []

    monkeypatch.setattr(style, "save_figure", capture)
    plot_results(results, formats=("png",))
    assert legends["lesion_single"] == [["resnet20", "no block deleted"]]
    # no baseline_error column in this CSV: no baseline drawn, so no key to it
    assert [text.split(" (")[0] for text in legends["lesion_delete_k"][0]] == ["resnet20", "Veit et al. 2016"]
    assert legends["lesion_swap"] == [["resnet20 (mean ± std per swap count)"]]
    assert legends["bench"] == [["eager", "cuda_graph"]]
    assert len(legends["degradation_curves"]) == 1  # the residual panel's; the plain panel says "no plain runs"
    assert not any("plain" in text for text in legends["degradation_curves"][0])
    assert not any("plain" in text for text in legends["error_vs_depth"][0])
    assert not any("plain20" in text for text in legends["block_gradients"][0])
