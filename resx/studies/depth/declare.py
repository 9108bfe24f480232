"""What the depth study declares (depth separation: Telgarsky 2015, arXiv 1509.08101, and 2016, COLT "Benefits of
depth in neural networks"; parity: Håstad 1986, Bengio 2009 §2): its files and their CSV columns, its constants,
thresholds and its section of a reproduce profile. No torch, no pandas: every layer of the study may import it.
"""

from dataclasses import dataclass, field

from resx.studies.registry import OutputFile, figure_files

TITLE = "Depth separation: the sawtooth and parity (Telgarsky 2016; Håstad 1986)"
TARGETS = ("sawtooth", "parity")
MODELS = ("plain", "residual")
CONSTRUCTED_MODEL = "telgarsky"  # the constructed sawtooth net's `model` in depth_pieces.csv (built: constructed)

# The study's files (users' scripts rely on the CSVs' columns, in this order; the extra columns follow them).
# `k` holds k (compositions of the tent map) for the sawtooth and n (the number of bits) for parity.
PIECES_COLUMNS = ("target", "k", "model", "depth", "width", "params", "seed", "pieces", "built")
PIECES_EXTRA = ("residual", "budget", "max_pieces", "target_pieces")
FIT_COLUMNS = ("target", "k", "model", "depth", "width", "residual", "params", "seed", "train_error", "test_error")
FIT_EXTRA = ("budget", "relative_error", "train_loss", "pieces", "train_points", "test_points", "steps", "lr")
CURVE_COLUMNS = ("target", "k", "model", "depth", "width", "residual", "params", "budget", "seed", "x", "y")
FIGURES = ("depth_fits", "depth_error_sawtooth", "depth_error_parity", "depth_pieces")
INFO_NAME = "depth_info.json"

OUTPUTS = (
    OutputFile("depth_fit.csv", FIT_COLUMNS, "per target, k (or n), net and seed: train and test error"),
    OutputFile("depth_pieces.csv", PIECES_COLUMNS,
               "linear pieces on [0, 1] of the constructed and the trained sawtooth nets"),
    OutputFile("depth_curves.csv", CURVE_COLUMNS, "the learned functions (first seed), exactly, at their kinks",
               marks_study=False),
    OutputFile(INFO_NAME, about="settings, provenance, timings, thresholds, constructed piece counts"),
    *figure_files(*FIGURES),
)

# --- what counts as "found" (thresholds of this study, not of a paper) --------------------------------------------
# Sawtooth: a trained net found m^k when its test MSE is at most 5% of the target's variance (1/12 on [0, 1]), i.e.
# R^2 >= 0.95: a net that misses one tooth in eight, or fits the teeth at half height, is above it. `relative_error`
# in depth_fit.csv is that ratio. The report also gives how often a net has at least 2^k pieces (PIECES_FRACTION of
# 2^k): necessary to fit, not sufficient (a wide shallow net has many kinks that each change little).
FOUND_RELATIVE_MSE = 0.05
PIECES_FRACTION = 1.0
# Parity: a net solved n-bit parity when it classifies at least 99% of the test inputs (all 2^n by default) right.
PARITY_SOLVED_ERROR = 0.01
# Nets at one budget have parameter counts within this fraction of it (nearest integer width; the largest gaps are
# the narrow deep nets at 200 parameters, where one unit of width is a large step: resx.studies.depth.shapes).
PARAM_TOLERANCE = 0.25

# --- defaults ------------------------------------------------------------------------------------------------------
DEFAULT_K = {"sawtooth": "1..8", "parity": "2..10"}
DEFAULT_PARAMS = "200,1000,5000"
DEFAULT_DEPTHS = "1,2,4,8"
DEFAULT_SEEDS = 5
DEFAULT_STEPS = 3000
DEFAULT_LR = 3e-3
DEFAULT_TRAIN_FRACTION = 1.0  # parity: train and test on all 2^n inputs (a fit); below 1, a seeded split per seed
CONSTRUCTED_K = 12  # the constructed sawtooth nets counted, k = 1..12
MAX_K = {"sawtooth": 14, "parity": 16}  # training inputs grow as 2^k (2^n)
TEST_POINTS = 4096  # sawtooth: the midpoints of 4096 equal cells of [0, 1], none a training input


def sawtooth_train_points(k: int) -> int:
    """Training inputs of the k-fold sawtooth: the grid i / 2^(k+1), which holds every kink (multiples of 2^-k) and
    every piece's midpoint; at least 129 points."""
    return max(129, 2 ** (k + 1) + 1)


@dataclass
class DepthSettings:
    """The `depth:` section of a reproduce profile: the stage runs each of `targets`, into one folder."""

    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    sawtooth_k: str = DEFAULT_K["sawtooth"]
    parity_n: str = DEFAULT_K["parity"]
    params: str = DEFAULT_PARAMS
    depths: str = DEFAULT_DEPTHS
    seeds: int = DEFAULT_SEEDS
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    train_fraction: float = DEFAULT_TRAIN_FRACTION
