"""What the lesion study declares (Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of
Relatively Shallow Networks", §4): its files and their CSV columns, its options' defaults and its section of a
reproduce profile. No torch, no pandas: every layer of the study may import it.
"""

from dataclasses import dataclass

from resx.studies.registry import OutputFile, figure_files

STUDIES = ("single", "delete-k", "swap")
DEFAULT_MAX_K = 20  # Veit et al. 2016, Fig. 5a: k = 1..20 of ResNet-110's 54 blocks
DEFAULT_DRAWS = 50
DEFAULT_SWAPS = range(1, 11)  # Veit et al. 2016, Fig. 5b: up to 10 swapped pairs

SINGLE_COLUMNS = ("run", "block", "stage", "downsampling", "test_error", "baseline_error", "test_loss", "model", "residual")
DELETE_K_COLUMNS = ("run", "k", "draw", "test_error", "baseline_error", "test_loss", "deleted", "model", "residual",
                    "blocks")  # blocks: n, the net's number of blocks (Fig. 5a is drawn against k / n)
SWAP_COLUMNS = ("run", "swaps", "draw", "kendall_tau", "test_error", "baseline_error", "test_loss", "order", "model",
                "residual")
INFO_NAME = "lesion_info.json"

OUTPUTS = (
    OutputFile("lesion_single.csv", SINGLE_COLUMNS, "test error with one block deleted (Fig. 3)"),
    OutputFile("lesion_delete_k.csv", DELETE_K_COLUMNS, "test error with k random blocks deleted (Fig. 5a)"),
    OutputFile("lesion_swap.csv", SWAP_COLUMNS, "test error after random swaps of blocks (Fig. 5b)"),
    OutputFile(INFO_NAME, about="settings, provenance, timings, skipped studies"),
    *figure_files("lesion_*"),
)


@dataclass
class LesionSettings:
    """The lesion section of a reproduce profile."""

    max_k: int | None = 20
    draws: int = 50
    swaps: str = "1..10"
