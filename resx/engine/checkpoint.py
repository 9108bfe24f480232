"""Checkpoints: everything needed to continue a run exactly, and to rebuild its model alone.

A checkpoint is a dict saved with torch.save (atomically) holding: the format tag, the resolved config, the model
name and options (so `load_model` rebuilds the net without any other file), the weights, the momentum buffers,
the step-state tensors (epoch order, cursor, counters, sums), the host counters, the RNG states, and the metric
rows so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from resx.errors import ResxError
from resx.text import reason

FORMAT = "resx-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the checkpoint.pt of a run folder."""
    path = Path(path)
    if path.is_dir():
        candidate = path / CHECKPOINT_NAME
        if not candidate.exists():
            raise ResxError(f"run folder {path} has no {CHECKPOINT_NAME}; train it first (resx train ... --out {path})")
        return candidate
    if not path.exists():
        raise ResxError(f"checkpoint {path} not found")
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a resx checkpoint; one-line errors for a missing, truncated or foreign file."""
    path = find_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = reason(e)
        raise ResxError(f"{path} is not a readable resx checkpoint (truncated or another format: {why})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ResxError(f"{path} is not a resx checkpoint (no '{FORMAT}' tag); give a checkpoint.pt written by resx train")
    if ckpt.get("version", 0) > VERSION:
        raise ResxError(f"{path} was written by a newer resx (checkpoint version {ckpt['version']}); upgrade resx")
    return ckpt


def load_model(path_or_ckpt: str | Path | dict, device: str | torch.device = "cpu"):
    """Rebuild a trained net from its checkpoint alone, in eval mode. Returns (net, checkpoint dict)."""
    from resx.models import create_model

    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else read_checkpoint(path_or_ckpt)
    net = create_model(ckpt["model_name"], **ckpt["model_options"])
    net.load_state_dict(ckpt["model_state"])
    return net.to(device).eval(), ckpt
