"""Training engine: the step (step.py), evaluation (evaluate.py), runs and their folders (run.py).

A run is ready to train once built: `TrainingRun(config, run_dir, ...)`; `train` trains one to the end."""

from resx.engine.checkpoint import find_checkpoint, load_model, read_checkpoint
from resx.engine.device import autocast, resolve_device, resolve_precision
from resx.engine.evaluate import Evaluator
from resx.engine.run import METRIC_COLUMNS, TrainingRun, epoch_checkpoint_path, train, train_many

__all__ = [
    "METRIC_COLUMNS",
    "Evaluator",
    "TrainingRun",
    "autocast",
    "epoch_checkpoint_path",
    "find_checkpoint",
    "load_model",
    "read_checkpoint",
    "resolve_device",
    "resolve_precision",
    "train",
    "train_many",
]
