"""How big a net is before it is built: its parameters and the values its layers output per image, without
allocating or initialising anything, and the checks that refuse a net or a training run that cannot fit.

A net is measured on the meta device (shapes only): built there, and run forward on a batch of two with hooks that
add up every leaf module's output. Building takes about 0.4 ms per block even there, so a deep net
(mlp_res --depth 100000: 50,000 blocks, about 20 s) is not built at all: the net is measured at the three smallest
depths of its family and the counts extrapolated to its depth by the parabola through them. That is exact, not an
approximation: every family's parameters and outputs are a polynomial of degree at most 2 in the depth (a stage of
identical blocks is linear in its block count; a DenseNet's concatenated inputs grow linearly, so its sums are
quadratic). tests/test_memory.py holds the extrapolated counts to the built nets'.

Training memory, a documented rough bound (resx.engine.run refuses a run above it):
  weights x TRAIN_COPIES (the weights, their gradients and SGD's momentum)
  + outputs per image x batch size x ACTIVATION_COPIES (each output kept for the backward pass, and its gradient)
in the default dtype's bytes (fp32: 4; bf16 autocast needs less, so this errs on the safe side). An in-place ReLU's
output is counted though it shares its input's memory, which also errs on the safe side. Against the peak memory of
two SGD steps on a CPU: the MLPs within 1% (mlp_res depth 200 width 512 batch 256: 1,258 MB estimated, 1,266 MB
measured), the conv nets 1.4-1.6x over (resnet56 batch 128: 419 MB estimated, 256 MB measured).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

import torch
from torch import nn

from resx.memory import check_fits, format_bytes


TRAIN_COPIES = 3  # weights, gradients, momentum
ACTIVATION_COPIES = 2  # the outputs kept for the backward pass, and their gradients
DEPTH_OPTION = ("mlp", "linear", "onenet")  # families whose depth is an option (--depth); the others' is in the name


@dataclass(frozen=True)
class Footprint:
    """What a net takes: `parameters`, `outputs` (values its leaf modules output per image in a forward pass; None
    when not measured) and `itemsize` (bytes per value: the default dtype's)."""

    parameters: int
    outputs: int | None
    itemsize: int
    extrapolated: bool = False  # measured at the family's smallest depths and extrapolated to the net's

    @property
    def weight_bytes(self) -> int:
        return self.parameters * self.itemsize

    def activation_bytes(self, batch_size: int) -> int:
        return (self.outputs or 0) * self.itemsize * batch_size * ACTIVATION_COPIES

    def training_bytes(self, batch_size: int) -> int:
        return self.weight_bytes * TRAIN_COPIES + self.activation_bytes(batch_size)


def _family_depths(spec: Any, depth: int) -> tuple[int, int] | None:
    """(smallest depth, step between depths) of the family a net of `depth` belongs to; None for fixed nets."""
    if spec.family == "mlp":
        return 4, 2  # 2 * blocks + 2
    if spec.family in ("linear", "onenet"):
        return 1, 1  # blocks
    if spec.family == "resnext":
        return 11, 9  # 9n + 2
    if spec.family == "densenet":
        return (10, 6) if spec.name.startswith("densenet_bc") else (7, 3)  # 6n + 4, 3n + 4
    if spec.family == "preact" and depth >= 164 and (depth - 2) % 9 == 0:
        return 164, 9  # the bottleneck pre-activation nets, 9n + 2 from 164 up
    if spec.family in ("cifar", "preact"):
        return 8, 6  # 6n + 2
    return None  # the ImageNet-style nets: fixed, small


def _depth(spec: Any, kwargs: dict[str, Any]) -> int | None:
    if spec.family in DEPTH_OPTION:
        depth = kwargs.get("depth")
        if depth is None:
            depth = inspect.signature(spec.builder).parameters["depth"].default
        return depth if isinstance(depth, int) else None
    return spec.depth


def _builder_at(spec: Any, depth: int, kwargs: dict[str, Any]) -> Callable[[], nn.Module]:
    """The same net at another depth of its family."""
    if spec.family in DEPTH_OPTION:
        return lambda: spec.builder(**{**kwargs, "depth": depth})
    other = spec.at_depth(depth)  # the registry's spec of the same name at that depth
    return lambda: other.builder(**kwargs)


def measure(build: Callable[[], nn.Module], input_shape: tuple[int, ...] | None) -> tuple[int, int | None]:
    """(parameters, outputs per image) of the net `build` makes, on the meta device."""
    with torch.device("meta"):
        net = build()
    parameters = sum(p.numel() for p in net.parameters())
    if input_shape is None:
        return parameters, None
    total = 0

    def add(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        total += sum(t.numel() for t in (output if isinstance(output, (tuple, list)) else (output,))
                     if isinstance(t, torch.Tensor))

    hooks = [m.register_forward_hook(add) for m in net.modules() if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(2, *input_shape, device="meta"))  # two: BatchNorm shapes need more than one
    finally:
        for hook in hooks:
            hook.remove()
    return parameters, total // 2


def _parabola(xs: tuple[int, ...], ys: list[int], x: int) -> int:
    """The value at `x` of the polynomial of degree len(xs) - 1 through (xs, ys), in exact arithmetic."""
    total = Fraction(0)
    for i, (xi, yi) in enumerate(zip(xs, ys)):
        term = Fraction(yi)
        for j, xj in enumerate(xs):
            if j != i:
                term *= Fraction(x - xj, xi - xj)
        total += term
    return round(total)


_MEASURED: dict[tuple, Footprint] = {}  # a study builds the same net many times (seeds, twins): measured once
_MEASURED_KEEP = 256


def spec_footprint(spec: Any, kwargs: dict[str, Any], input_shape: tuple[int, ...] | None = None) -> Footprint:
    """The footprint of `spec` built with `kwargs` (its builder's keyword arguments); outputs only with an
    `input_shape` (one image's, without the batch). Deep nets are extrapolated (see the module docstring)."""
    key = (spec.name, tuple(sorted(kwargs.items())), input_shape, torch.get_default_dtype())
    try:
        found = _MEASURED.get(key)
    except TypeError:  # an option value that cannot be a key: measured every time
        return _footprint(spec, kwargs, input_shape)
    if found is None:
        found = _MEASURED[key] = _footprint(spec, kwargs, input_shape)
        if len(_MEASURED) > _MEASURED_KEEP:
            _MEASURED.pop(next(iter(_MEASURED)))
    return found


def _footprint(spec: Any, kwargs: dict[str, Any], input_shape: tuple[int, ...] | None) -> Footprint:
    itemsize = torch.get_default_dtype().itemsize
    depth = _depth(spec, kwargs)
    family = _family_depths(spec, depth) if depth is not None else None
    if family is not None:
        first, step = family
        samples = (first, first + step, first + 2 * step)
        # a depth the family does not have is built as asked, so that its builder says what is allowed
        if depth > samples[-1] and (depth - first) % step == 0:
            measured = [measure(_builder_at(spec, d, kwargs), input_shape) for d in samples]
            parameters = _parabola(samples, [m[0] for m in measured], depth)
            outputs = _parabola(samples, [m[1] for m in measured], depth) if input_shape is not None else None
            return Footprint(parameters, outputs, itemsize, extrapolated=True)
    return Footprint(*measure(lambda: spec.builder(**kwargs), input_shape), itemsize)


def describe(spec: Any, kwargs: dict[str, Any], footprint: Footprint) -> str:
    """'mlp_res (depth=100000, width=128: 1,664,025,610 parameters)'."""
    shape = ", ".join(f"{k}={kwargs[k]}" for k in ("depth", "width") if kwargs.get(k) is not None)
    return f"{spec.name} ({shape + ': ' if shape else ''}{footprint.parameters:,} parameters)"


def smaller(spec: Any) -> str:
    """What to change for a smaller net of this family."""
    if spec.family in ("mlp", "linear"):
        return "a smaller --depth or --width"
    if spec.family == "onenet":
        return "a smaller --depth"
    return "a shallower or narrower model"


def check_weights_fit(spec: Any, kwargs: dict[str, Any]) -> None:
    """Refuse to build a net whose weights alone would not fit where it is built (ModelSpec.build: every net)."""
    device = torch.get_default_device()
    if device.type == "meta":
        return  # shapes only: nothing is allocated
    footprint = spec_footprint(spec, kwargs)
    check_fits(f"model {describe(spec, kwargs, footprint)}", footprint.weight_bytes, f"use {smaller(spec)}", device)


def check_training_fits(spec: Any, kwargs: dict[str, Any], input_shape: tuple[int, ...], batch_size: int,
                        device: torch.device) -> Footprint:
    """Refuse a training run of `spec` built with `kwargs` whose weights, gradients, momentum and activations at
    `batch_size` would not fit `device` (resx.models.registry.check_training_fits: the engine, before the net is
    built). Returns the footprint."""
    try:
        footprint = spec_footprint(spec, kwargs, input_shape)
    except ValueError as e:  # builders raise ValueError with what is allowed
        from resx.errors import ResxError

        raise ResxError(f"model {spec.name!r}: {e}") from None
    weights = footprint.weight_bytes * TRAIN_COPIES
    activations = footprint.activation_bytes(batch_size)
    check_fits(f"training {describe(spec, kwargs, footprint)} at batch size {batch_size} (weights, gradients and "
               f"momentum {format_bytes(weights)}, activations {format_bytes(activations)})",
               weights + activations, f"use {smaller(spec)}, or a smaller --batch-size", device)
    return footprint
