"""What the degradation study declares (He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition",
Fig. 6 and Table 6): its files and their CSV columns, the model families of its grid. No torch, no pandas: every
layer of the study may import it. Its section of a reproduce profile is `compare_plain:` (read by
compare.CompareOptions, like the experiment files' section of the same name).
"""

from resx.studies.registry import OutputFile, figure_files

# The grid's files and their columns (users' scripts rely on them; extra columns may follow, never fewer).
CURVE_COLUMNS = [
    "model", "family", "residual", "depth", "seed", "epoch", "iteration", "train_error", "test_error",
    "train_loss", "test_loss", "lr", "batch_size", "seconds", "images_per_second",
]
SUMMARY_COLUMNS = [
    "model", "family", "residual", "depth", "params", "seeds", "final_train_error_mean", "final_train_error_std",
    "final_test_error_mean", "final_test_error_std", "best_test_error_mean", "best_test_error_std", "iterations",
]
CURVES = "curves.csv"  # one row per run and epoch
SUMMARY = "summary.csv"  # one row per model, mean and std over seeds
ITERATION_CURVES = "iteration_curves.csv"  # every run's iterations.csv (engine/run.py), with the grid's columns
INFO_NAME = "grid_info.json"


def shard_info_name(index: int, count: int) -> str:
    """The info file of shard `index` of `count` (each shard of a sharded grid writes its own)."""
    return f"grid_info-shard{index}of{count}.json"


FAMILIES = {
    # family: (plain name, residual name); MLPs take their depth as an option
    "cifar": ("plain{d}", "resnet{d}"),
    "preact": ("plain{d}", "preresnet{d}"),
    "mlp": ("mlp_plain", "mlp_res"),
}

OUTPUTS = (
    OutputFile(CURVES, tuple(CURVE_COLUMNS), "one row per run and epoch"),
    OutputFile(SUMMARY, tuple(SUMMARY_COLUMNS), "final and best error per model, mean and std over seeds",
               marks_study=False),
    OutputFile(ITERATION_CURVES, about="every run's iterations.csv: training error over the last batches",
               marks_study=False),
    OutputFile(INFO_NAME, about="the grid's settings, timings and provenance; `history`: one entry per invocation"),
    OutputFile("grid_info-shard*.json", about="one per shard of a sharded grid"),
    *figure_files("degradation_curves", "error_vs_depth"),
)
