"""The paper's argument, measured at initialisation (He et al. 2016, §3, eqs. 4-6): with a shortcut h(x) = lambda x,
x_L = (prod lambda) x_l + (the branches' sum), and the gradient at x_l carries the same product, which vanishes or
explodes with depth; only the identity shortcut leaves a clean path.

For each variant's freshly initialised net (the seed its first run starts from), on one batch of training images in
training mode (BatchNorm on batch statistics, as at the first step): the signal's RMS at each block's output over
that at the first block's input (forward), and the loss gradient's RMS at each block's input over that at the last
block's input (backward: the product over the blocks between, eq. 5; both points lie behind a block, so a
post-addition ReLU masks them alike); then the same with every residual branch removed, so that only the shortcut maps act:
the product of eqs. 4-6, measured (it is lambda^l exactly for scale-lambda, times the zero-padding's dilution where
the CIFAR nets widen). The closed form is given where the shortcut is a constant scale.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F

from resx.config import TrainConfig
from resx.studies.variants.plan import Variant

_SCALE = re.compile(r"^scale-(\d+(?:\.\d+)?)$")
_FROZEN = re.compile(r"^frozen-gate-(\d+(?:\.\d+)?)$")


def constant_scale(variant: Variant) -> float | None:
    """lambda of a shortcut that is a constant scale (scale-L: L; frozen-gate-L: 1 - L), else None."""
    if variant.kind != "shortcut":
        return None
    if variant.is_original:
        return 1.0
    m = _SCALE.match(variant.name)
    if m:
        return float(m.group(1))
    m = _FROZEN.match(variant.name)
    return 1.0 - float(m.group(1)) if m else None


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt())


def _trace(net: Any, images: torch.Tensor, labels: torch.Tensor, deleted: bool) -> tuple[list[float], list[float]]:
    """(forward RMS at the first block's input then at every block's output, gradient RMS at the same points)."""
    points: list[torch.Tensor] = []
    h = net.stem(images)
    h.retain_grad()
    points.append(h)
    for block in net.blocks:
        h = block.forward_deleted(h) if deleted else block(h)
        h.retain_grad()
        points.append(h)
    loss = F.cross_entropy(net.head(h).float(), labels)
    loss.backward()
    forward = [_rms(p) for p in points]
    backward = [_rms(p.grad) if p.grad is not None else 0.0 for p in points]
    return forward, backward


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else float("nan")


def measure_gains(variant: Variant, config: TrainConfig, data: Any, images: torch.Tensor, labels: torch.Tensor,
                  device: torch.device) -> list[dict[str, Any]]:
    """One row per block of `variant`'s net built from `config` with its seed (see the module's docstring)."""
    from resx.models import create_model

    rows: list[dict[str, Any]] = []
    traces = {}
    for deleted in (False, True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # the same initial net as the run's (engine/run.py seeds the same way)
            net = create_model(config.model, **data.model_options, **config.model_options()).to(device).train()
            torch.manual_seed(config.seed)  # dropout's draws, the same for both passes
            traces[deleted] = _trace(net, images, labels, deleted)
    (fwd, bwd), (sfwd, sbwd) = traces[False], traces[True]
    blocks = len(fwd) - 1
    lam = constant_scale(variant)
    for l in range(1, blocks + 1):
        rows.append({
            "variant": variant.name, "kind": variant.kind, "model": config.model, "block": l, "blocks": blocks,
            "forward_gain": _ratio(fwd[l], fwd[0]),
            # the gradient at block l's input is the one at block l-1's output
            "backward_gain": _ratio(bwd[l - 1], bwd[blocks - 1]),
            "shortcut_forward_gain": _ratio(sfwd[l], sfwd[0]),
            "shortcut_backward_gain": _ratio(sbwd[l - 1], sbwd[blocks - 1]),
            "predicted_forward_gain": lam ** l if lam is not None else None,
            "predicted_backward_gain": lam ** (blocks - l) if lam is not None else None,
        })
    return rows
