"""What the variants study declares (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks", ECCV,
Tables 1 and 2, Figs. 3, 4 and 6): its files and their CSV columns, the variants it runs by default and its section of
a reproduce profile. No torch, no pandas: every layer of the study may import it.

A variant is one net: the base net (resnet110 in the paper) with one shortcut variant (`kind` shortcut: identity,
scale-0.5, exclusive-gate, ...) or one placement of BN and ReLU in the block (`kind` block: original, bn-after-add,
..., full-preact); the names are the zoo's `--shortcut` and `--block` values. The identity shortcut and the original
block are the same net, trained once and listed in both tables.
"""

from dataclasses import dataclass, field

from resx.studies.registry import OutputFile, figure_files

TITLE = "Which part of the block matters: shortcut and activation variants (He et al. 2016)"
# shortcut and block: He et al. 2016's Tables 1 and 2; cardinality: ResNeXts of the base net's parameter budget with
# C groups (Xie et al. 2017, Table 3: at preserved complexity, more groups beat a wider net), named by C
KINDS = ("shortcut", "block", "cardinality")
ORIGINAL = {"shortcut": "identity", "block": "original", "cardinality": "1"}  # each table's reference net

SUMMARY_NAME = "variants_summary.csv"
# users' scripts rely on these columns; extra columns follow
SUMMARY_COLUMNS = ("variant", "kind", "model", "params", "seeds", "final_train_error_mean", "final_train_error_std",
                   "final_test_error_mean", "final_test_error_std", "best_test_error", "failed_runs",
                   "paper_test_error")
# runs: the runs found (finished or failed); diverged_at_iteration: the earliest iteration at which a run's loss
# became NaN or infinite (empty when none did); paper_result: the paper's entry as printed ("fail" or the %);
# paper_model: the net the paper's number is for; iterations: the longest finished run's
SUMMARY_EXTRA = ("runs", "diverged_at_iteration", "paper_result", "paper_model", "iterations", "best_test_error_mean",
                 "macs")  # macs: multiply-accumulates of one forward pass of one input (the cardinality nets' budget)
CURVES_NAME = "variants_curves.csv"
# compare-plain's per-run curve columns (curves.csv), with the variant and its kind first
CURVE_COLUMNS = ("variant", "kind", "model", "family", "residual", "depth", "seed", "epoch", "iteration",
                 "train_error", "test_error", "train_loss", "test_loss", "lr", "batch_size", "seconds",
                 "images_per_second")
GAINS_NAME = "variants_gains.csv"
# At initialisation, per variant and block (1 = the first): the signal's RMS at the block's output over that at the
# first block's input (forward_gain), the loss gradient's RMS at the block's input over that at the last block's
# input (backward_gain), the same two with every residual branch removed (the shortcut path alone: the product of
# shortcut maps of the paper's eqs. 4-6, measured) and the closed form lambda^l where the shortcut is a constant
# scale lambda (empty otherwise).
GAIN_COLUMNS = ("variant", "kind", "model", "block", "blocks", "forward_gain", "backward_gain",
                "shortcut_forward_gain", "shortcut_backward_gain", "predicted_forward_gain",
                "predicted_backward_gain")
INFO_NAME = "variants_info.json"
FIGURES = ("variants_curves", "variants_vs_paper", "variants_gains")

OUTPUTS = (
    OutputFile(SUMMARY_NAME, SUMMARY_COLUMNS, "per variant: final and best error over seeds, failed runs, the paper's"),
    OutputFile(CURVES_NAME, CURVE_COLUMNS, "one row per run and epoch", marks_study=False),
    OutputFile(GAINS_NAME, GAIN_COLUMNS, "forward and backward gain over depth at initialisation", marks_study=False),
    OutputFile(INFO_NAME, about="settings, recipe, provenance, timings; `history`: one entry per invocation"),
    *figure_files(*FIGURES),
)

# The paper's tables, in its order (Table 1: shortcuts; Table 2: activations)
PAPER_SHORTCUTS = ("identity", "scale-0", "scale-0.5", "frozen-gate-0.5", "exclusive-gate-b0", "exclusive-gate",
                   "exclusive-gate-b7", "shortcut-gate", "shortcut-gate-b6", "conv1x1", "dropout-0.5")
PAPER_BLOCKS = ("original", "bn-after-add", "relu-before-add", "relu-only-preact", "full-preact")
DEFAULT_SHORTCUTS = "identity,scale-0.5,exclusive-gate,shortcut-gate,conv1x1,dropout-0.5"
DEFAULT_BLOCKS = "original,bn-after-add,relu-before-add,relu-only-preact,full-preact"


@dataclass
class VariantsSettings:
    """The `variants:` section of a reproduce profile. The recipe is the profile's `train:` section (with the command
    line's overrides), then this section's own `train:` changes. `also:` lists more variant grids of other bases or
    data, each a mapping of these same keys plus `name`, written to OUT/variants-<name> (for example the demo's deep
    MLPs on Fashion-MNIST beside ResNet-20 on CIFAR-10); their own `train:` keys win over the command line's, so a
    `--data` given for the main grid does not replace theirs."""

    base: str = "resnet110"
    shortcuts: str = DEFAULT_SHORTCUTS
    blocks: str = DEFAULT_BLOCKS
    seeds: int = 1
    concurrency: int | None = None
    gains_batch: int = 128
    budget_of: str | None = None  # the cardinality nets' budget: this model's parameter count (default: base)
    cardinalities: str = ""  # e.g. "1,2,4,8": one ResNeXt per C of that budget
    train: dict = field(default_factory=dict)
    also: list = field(default_factory=list)
