"""What the signal study declares (vanishing and exploding signals, and residual blocks whose Jacobian stays near the
identity: He et al. 2016, "Identity mappings in deep residual networks", §3; deep linear nets, Saxe et al. 2014): its
files and their CSV columns, its constants and its section of a reproduce profile. No torch, no pandas: every layer
of the study may import it.
"""

from dataclasses import dataclass, field

from resx.studies.registry import OutputFile, figure_files

TITLE = "Signal propagation and block Jacobians"

# The study's files (users' scripts rely on the CSVs' columns, in this order; the extra columns follow them).
LAYER_COLUMNS = ("run", "residual", "trained", "checkpoint", "layer", "kind", "activation_rms", "grad_input_rms",
                 "grad_weight_rms")
LAYER_EXTRA = ("model", "depth", "index", "block", "epoch", "final", "input_rms", "grad_output_rms", "init_scheme",
               "scale")
JACOBIAN_COLUMNS = ("run", "residual", "trained", "block", "sigma_max", "sigma_min_est", "dist_identity")
JACOBIAN_EXTRA = ("checkpoint", "model", "depth", "epoch", "final", "downsampling", "in_dim", "out_dim", "gram_side",
                  "examples", "lanczos_steps", "probes", "dist_exact", "init_scheme", "scale")
FIGURES = ("signal_layers", "signal_blocks", "block_jacobians")
INFO_NAME = "signal_info.json"

OUTPUTS = (
    OutputFile("signal_layers.csv", LAYER_COLUMNS, "per weighted layer and block: activation and gradient RMS"),
    OutputFile("block_jacobians.csv", JACOBIAN_COLUMNS, "per block: Jacobian singular values, distance from I"),
    OutputFile(INFO_NAME, about="settings, provenance, timings, whole-stack sigma_max, linear nets vs a^l"),
    *figure_files(*FIGURES),
)

# A gradient that changes by more than this factor across the blocks "vanishes" or "explodes"; a block whose
# ||J - I||_F / ||I||_F is below NEAR_IDENTITY is "near the identity". Thresholds of this report, not of a paper.
VANISH_FACTOR = 10.0
NEAR_IDENTITY = 0.5

DEFAULT_LINEAR_SCALES = (0.5, 1.0, 1.5)  # a of the deep linear nets: vanishing, preserved, exploding
GAUSSIAN_CLASSES = 10  # the uniform random labels of the Gaussian inputs of linear nets analysed without data


@dataclass
class SignalSettings:
    """The `signal:` section of a reproduce profile."""

    samples: int = 256
    batch_size: int | None = None
    jacobian_examples: int = 8
    lanczos_steps: int = 20
    probes: int = 8
    # also the deep linear nets whose signal scales as a^l, into signal/linear: seconds on any CPU
    linear: bool = True
    linear_depth: int = 50
    linear_scales: list[float] = field(default_factory=lambda: list(DEFAULT_LINEAR_SCALES))
