"""The training-speed section of REPORT.md, from bench.csv (median images/s and peak memory per model and method),
beside reference runs of the same nets outside resx on an H100."""

from pathlib import Path

from resx import reference
from resx.markdown import DASH, computed_with, figures, heading, markdown_table, read_info
from resx.studies.bench.declare import INFO_NAME


def bench_section(folder: Path, results_dir: Path, report_dir: Path, several: bool) -> list[str]:
    import pandas as pd

    from resx.studies.bench.draw import read_bench

    frame = read_bench(folder)
    if frame is None:
        return []
    lines = [heading(folder, results_dir, "Training speed", several), ""]
    provenance = computed_with(read_info(folder / INFO_NAME))
    if provenance:
        lines += [provenance, ""]
    has_memory = "peak_memory_mb" in frame.columns
    agg = frame.groupby(["model", "method", "batch_size"], sort=False).agg(
        images_per_second=("images_per_second", "mean"),
        **({"peak_memory_mb": ("peak_memory_mb", "max")} if has_memory else {}))
    rows = [[m, method, int(b), f"{r['images_per_second']:,.0f}",
             f"{r['peak_memory_mb']:,.0f}" if has_memory and not pd.isna(r["peak_memory_mb"]) else DASH]
            for (m, method, b), r in agg.iterrows()]
    lines += [markdown_table(["model", "method", "batch", "images/s", "peak memory (MB)"], rows, align="llrrr"), ""]
    ref_rows = [[model, *[v for v in methods.values()]]
                for model, methods in reference.BENCH_H100_IMAGES_PER_SECOND.items()]
    lines += ["For comparison, reference runs of the same nets outside resx (one H100, batch 128, images/s):", "",
              markdown_table(["model", *reference.BENCH_H100_METHODS.values()], ref_rows, align="lrrrr"), ""]
    lines += figures(folder, ["bench"], report_dir, {"bench": "Training throughput per model and method"})
    return lines
