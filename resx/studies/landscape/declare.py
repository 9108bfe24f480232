"""What the loss-landscape study declares (Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the Loss Landscape
of Neural Nets", Fig. 1 and Fig. 5): its files and their CSV columns, its options' choices and defaults, and its
section of a reproduce profile. No torch, no pandas: every layer of the study may import it.
"""

from dataclasses import dataclass

from resx.studies.registry import OutputFile, figure_files

TITLE = "Loss landscape (Li et al. 2018)"

# The study's files (users' scripts rely on the CSV's columns, in this order; EXTRA_COLUMNS follow them).
CSV_NAME = "landscape.csv"
INFO_NAME = "landscape_info.json"
CSV_COLUMNS = ("run", "residual", "dims", "x", "y", "train_loss", "train_error", "loss_se")
EXTRA_COLUMNS = ("model", "point", "samples", "bn_recalibrate", "directions", "norm", "seconds")
# What a figure needs (y and loss_se may be empty: y for 1D rows written by others, loss_se with one batch).
REQUIRED_COLUMNS = ("run", "residual", "dims", "x", "train_loss", "train_error")
FIGURE_STEMS = ("landscape_1d", "landscape_2d_contour", "landscape_2d_surface")

OUTPUTS = (
    OutputFile(CSV_NAME, columns=CSV_COLUMNS,
               about="one row per run and grid point: training loss, error and the loss's standard error"),
    OutputFile(INFO_NAME, about="the settings, provenance, per run the centre loss and seconds per point"),
    *figure_files("landscape_*"),
)

# The options' choices (resx.studies.landscape.options checks them) and the automatic sizes.
DIMS = (1, 2)
DIRECTIONS = ("random", "interpolate")
NORMS = ("filter", "layer", "none")
DEFAULT_SAMPLES = {"cpu": 1024, "cuda": 8192}
BATCHES_PER_POINT = 8  # the default batch size splits the subset into this many batches (for loss_se)
MAX_DEFAULT_BATCH = {"cpu": 256, "cuda": 2048}


@dataclass
class LandscapeSettings:
    """The landscape section of a reproduce profile: the surfaces `resx reproduce` measures around the grid's
    trained twins (reproduce.twin_models)."""

    dims: int = 2
    points: int = 21  # per axis: 21 x 21 = 441 points per net
    samples: int | None = None  # training images per point (None: 1024 on CPU, 8192 on CUDA)
    norm: str = "filter"
    bn_recalibrate: bool = False
    span: str = "-1:1"
    batch_size: int | None = None
    # fp32 by default: near a minimum the loss differences between neighbouring points are small, and bf16's
    # rounding of the logits shows up as roughness that is not the surface's (Li et al. computed in fp32)
    precision: str = "fp32"
