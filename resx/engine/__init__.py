"""Training engine: the step (step.py), evaluation (evaluate.py), a run (run.py, run_checkpoint.py), its folder
(run_folder.py), training runs to the end (driver.py).

A run is ready to train once built: `TrainingRun(config, run_dir, ...)`; `train` trains one to the end."""

from resx.engine.checkpoint import find_checkpoint, load_model, read_checkpoint
from resx.engine.device import autocast, resolve_device, resolve_precision
from resx.engine.evaluate import Evaluator
from resx.engine.driver import train, train_many
from resx.engine.run import TrainingRun
from resx.engine.run_folder import METRIC_COLUMNS, epoch_checkpoint_path

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
