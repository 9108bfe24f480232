"""What the approximation study declares (Lin & Jegelka 2018, "ResNet with one-neuron hidden layers is a Universal
Approximator", NeurIPS 2018): its files and their CSV columns, its tasks and their options, the training recipe's
defaults, the claims it checks and its section of a reproduce profile. No torch, no pandas: every layer may import it.
"""

from dataclasses import dataclass

from resx.studies.registry import OutputFile, figure_files

TITLE = "Universal approximation with one neuron per layer (Lin & Jegelka 2018)"

# Far outside the data (every task lies within radius 6): circles on which the share put in class 1 is measured.
# far_class1_share is the share on the largest circle (the one that tells a bounded region from an unbounded one).
RADII = (5.0, 50.0, 500.0)
FAR_ANGLES = 720  # equally spaced points per circle for the share
SEARCH_ANGLES = 3600  # the search for the largest class-1 margin on a circle (then refined around the best angles)


def radius_tag(radius: float) -> str:
    """5.0 -> 'r5', 0.5 -> 'r0.5': the suffix of the per-radius columns."""
    return f"r{radius:g}"


SHARE_COLUMNS = tuple(f"far_class1_share_{radius_tag(r)}" for r in RADII)
MARGIN_COLUMNS = tuple(f"far_margin_max_{radius_tag(r)}" for r in RADII)

CSV_NAME = "approximation.csv"
COLUMNS = ("task", "model", "width", "depth", "seed", "params", "train_accuracy", "test_accuracy", "final_loss",
           "far_class1_share")
# label: the model spec as resolved (mlp_plain:width=2), which tells two specs of one model apart; hidden_layers:
# ReLU layers between input and read-out; train_class1_share: the share of training points the net puts in class 1
# (0 or 1: the net learnt a constant there); loss_half, loss_three_quarters: the training loss at those points of
# training (flattening); majority_share: the share of the larger class in the training set (a constant's accuracy)
EXTRA_COLUMNS = ("label", "residual", "hidden_layers", *SHARE_COLUMNS, *MARGIN_COLUMNS, "train_class1_share",
                 "majority_share", "loss_half", "loss_three_quarters", "steps", "seconds")
# a grid per net (81 x 81 points by default): compressed, since it is tens of thousands of rows of a regular grid
REGIONS_NAME = "approximation_regions.csv.gz"
REGION_COLUMNS = ("task", "model", "depth", "seed", "x", "y", "p_class1")
REGION_EXTRA = ("label",)
POINTS_NAME = "approximation_points.csv"
POINT_COLUMNS = ("task", "seed", "split", "x", "y", "class")
CURVES_NAME = "approximation_curves.csv"
CURVE_COLUMNS = ("task", "label", "depth", "seed", "step", "loss")
INFO_NAME = "approximation_info.json"
FIGURES = ("approximation_regions", "approximation_accuracy", "approximation_far", "approximation_loss")

OUTPUTS = (
    OutputFile(CSV_NAME, COLUMNS, "per task, model, depth and seed: accuracy, loss, far-field class-1 share"),
    OutputFile(REGIONS_NAME, REGION_COLUMNS, "decision regions of the first seed's nets on a grid", marks_study=False),
    OutputFile(POINTS_NAME, POINT_COLUMNS, "the first seed's training and test points", marks_study=False),
    OutputFile(CURVES_NAME, CURVE_COLUMNS, "the training loss along training", marks_study=False),
    OutputFile(INFO_NAME, about="settings, recipe, provenance, timings, what far_class1_share is"),
    *figure_files(*FIGURES),
)

# --- tasks: points in the plane, class 1 and class 0, half of each -------------------------------------------------
# {task: {option: default}}; the generators are resx/studies/approximate/tasks.py
TASKS: dict[str, dict[str, float]] = {
    # Lin & Jegelka 2018's toy example: class 1 in the disc |z| <= radius, class 0 in the ring ring_inner <= |z| <= ring_outer
    "ball": {"radius": 1.0, "ring_inner": 2.0, "ring_outer": 3.0},
    # concentric bands of `width` with `gap` between them, alternating classes from class 1 in the centre disc
    "rings": {"rings": 4, "width": 0.75, "gap": 0.5},  # out to radius 4.5
    # two interleaved Archimedean spirals of `turns` turns out to `radius`, Gaussian noise of std `noise`
    "spiral": {"turns": 1.5, "radius": 3.0, "noise": 0.1},
    # a cells x cells checkerboard on the square [-half, half]^2
    "checkerboard": {"cells": 4, "half": 3.0},
}
TASK_ABOUT = {
    "ball": "class 1 in the unit disc, class 0 in the ring 2 <= |z| <= 3 (Lin & Jegelka 2018)",
    "rings": "concentric rings of alternating classes, class 1 in the centre",
    "spiral": "two interleaved spirals",
    "checkerboard": "a checkerboard of squares",
}
INTEGER_TASK_OPTIONS = ("rings", "cells")

# --- the models and the training recipe --------------------------------------------------------------------------
DEFAULT_MODELS = "onenet_res,mlp_plain:width=2,mlp_plain:width=3"
DEFAULT_DEPTHS = "1,2,5,10,20,40"
# the registry's models that take 2-D points and a number of blocks (depth: blocks; mlp_*: 2 * blocks + 2 layers)
POINT_MODELS = ("onenet_res", "mlp_plain", "mlp_res", "linear_plain", "linear_res")
DEFAULT_STEPS = 3000
DEFAULT_LR = 0.01
LR_MILESTONES = (0.5, 0.75)  # the learning rate is divided by 10 at these fractions of the steps (resx's schedule)
DEFAULT_POINTS = 1000
DEFAULT_GRID = 81

# --- what the papers and the replications claim ------------------------------------------------------------------
CLAIM_THEORY = ("every connected part of the decision region of a ReLU net whose hidden layers are at most d wide is "
                "unbounded (Hanin & Sellke 2017; Lu et al. 2017; cited by Lin & Jegelka 2018), so such a net cannot "
                "enclose the disc; a ResNet of one-neuron blocks can, as its depth grows (Lin & Jegelka 2018's main theorem)")
CLAIM_NARROW = "the width-2 net is stuck at the class ratio (it learns a constant) at every depth"
CLAIM_RESNET_DEPTH = 5
CLAIM_RESNET_ACCURACY = 0.98  # "near 98-99% training accuracy from depth 5 on"
CLAIM_SOURCE = "public replications of Lin & Jegelka's toy, not the authors' numbers"


@dataclass
class ApproximateSettings:
    """The `approximate:` section of a reproduce profile (the options of `resx approximate`)."""

    task: str = "ball"
    models: str = DEFAULT_MODELS
    depths: str = DEFAULT_DEPTHS
    seeds: int = 5
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    batch_size: int | None = None  # None: full-batch Adam
    train_points: int = DEFAULT_POINTS
    test_points: int = DEFAULT_POINTS
    grid: int = DEFAULT_GRID
