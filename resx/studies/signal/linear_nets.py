"""The deep linear nets (resx/models/linear.py, Saxe et al. 2014): which scales a and init schemes to sweep, their
inputs' width, and the measured gains of their block stacks against the exact factor a^l (plain) or (1 + a/l)^l
(residual). The nets are built in float64 so that the measurement matches to about 1e-15 relative."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from resx.errors import ResxError
from resx.models.net import BlockNet
from resx.studies.signal.declare import DEFAULT_LINEAR_SCALES

LINEAR_MODELS = ("linear_plain", "linear_res")


def is_linear(name: str) -> bool:
    """Whether the registry's model `name` is a deep linear net."""
    from resx.models import get_model_spec

    return get_model_spec(name).family == "linear"


def linear_options(name: str, scale: float | Sequence[float] | None, init_scheme: str | None) -> list[dict]:
    """The linear-net options to sweep: one per scale (default: 0.5, 1, 1.5), with the init scheme."""
    if not is_linear(name):
        if scale is not None or init_scheme is not None:
            raise ResxError(f"--scale and --init-scheme are for the linear nets (linear_plain, linear_res), not {name}")
        return [{}]
    scales = DEFAULT_LINEAR_SCALES if scale is None else ([scale] if isinstance(scale, (int, float)) else list(scale))
    bad = [a for a in scales if not math.isfinite(float(a))]
    if bad or not scales:
        raise ResxError(f"--scale takes finite numbers (e.g. 0.5,1,1.5), got {bad[0] if bad else 'none'}")
    from resx.models.linear import INITS

    if init_scheme is not None and init_scheme not in INITS:
        raise ResxError(f"unknown init {init_scheme!r} for --init-scheme; allowed: {', '.join(INITS)}")
    extra = {} if init_scheme is None else {"init": init_scheme}
    return [{"scale": float(a), **extra} for a in scales]


def input_width(net: BlockNet) -> int:
    """The size of the vectors a linear net without an input projection takes (its width)."""
    first = net.blocks[0].branch[0]
    return first.in_features


def linear_comparison(layers: pd.DataFrame, whole: list[dict]) -> pd.DataFrame:
    """For each deep linear net: the forward gain (last block's output RMS / first block's input RMS), the gradient
    gain (gradient RMS at the first block's input / at the last block's output) and the stack's singular values,
    beside the exact factor where there is one (resx.models.linear.expected_gain: a^l, (1 + a/l)^l)."""
    from resx.models.linear import expected_gain

    sigma = {(w["run"], w["checkpoint"]): w for w in whole}
    rows = []
    linear = layers[layers["model"].isin(LINEAR_MODELS)]
    for (run, checkpoint), part in linear.groupby(["run", "checkpoint"], sort=False):
        blocks = part[part["kind"] == "block"].sort_values("block")
        first, last = blocks.iloc[0], blocks.iloc[-1]
        residual, depth = bool(first["residual"]), int(first["depth"])
        scale, init = float(first["scale"]), str(first["init_scheme"])
        trained = bool(first["trained"])
        expected = None if trained else expected_gain(scale, depth, residual, init)
        forward = float(last["activation_rms"] / first["input_rms"])
        backward = float(first["grad_input_rms"] / last["grad_output_rms"])
        w = sigma.get((run, checkpoint), {})
        rel = (lambda m: abs(m - expected) / abs(expected) if expected else float("nan"))
        rows.append(dict(run=run, checkpoint=checkpoint, residual=residual, trained=trained, depth=depth, scale=scale,
                         init_scheme=init, expected=expected if expected is not None else float("nan"),
                         forward_gain=forward, gradient_gain=backward, sigma_max=w.get("sigma_max"),
                         sigma_min_est=w.get("sigma_min_est"), rel_error_forward=rel(forward),
                         rel_error_gradient=rel(backward),
                         rel_error_sigma_max=rel(w["sigma_max"]) if "sigma_max" in w else float("nan")))
    return pd.DataFrame(rows)
