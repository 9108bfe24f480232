"""The model zoo by name (in the manner of timm's `register_model` / `create_model`).

Each variant is data (a `ModelSpec`: builder + fixed arguments), not a subclass. Every registered name is
tested by tests/test_models.py, so a new model is tested the moment it is registered.
CIFAR-family names also work for any valid depth that is not registered, e.g. `resnet8`, `plain14`
(6n+2) and `preresnet83` (bottleneck, 9n+2 from 164 up) — handy for tiny tests and depth sweeps.
A name may carry the model's options: `NAME:key=value[,key=value]` (',' or ':' between options), e.g.
`resnet20:shortcut=scale-0.5,block=full-preact` (resx/models/variants.py, split_model_name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from resx.errors import ResxError
from resx.models.cifar import blocks_per_stage, cifar_preresnet_bottleneck, cifar_resnet
from resx.models.imagenet import imagenet_resnet
from resx.models.linear import linear_net
from resx.models.mlp import mlp_net
from resx.models.net import BlockNet
from resx.models.onenet import onenet_res
from resx.models.variants import merge_name_options, split_model_name

# Options every image model accepts; they describe the data, so the data layer sets them.
DATA_OPTIONS = ("num_classes", "in_channels", "input_size")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # cifar | preact | mlp | imagenet | linear | onenet | resnext | densenet
    residual: bool
    depth: int | None
    builder: Callable[..., BlockNet]
    options: tuple[str, ...]  # user-settable options besides DATA_OPTIONS
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def builder_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The builder's keyword arguments for these options (None ones dropped; zero_init_residual, an
        initialisation rather than a shape, left out); an option the model does not have is refused."""
        allowed = set(DATA_OPTIONS) | set(self.options) | {"zero_init_residual"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ResxError(
                f"model {self.name!r} has no option {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
            )
        kwargs = {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}
        kwargs.pop("zero_init_residual", None)
        return kwargs

    def at_depth(self, depth: int) -> "ModelSpec":
        """The spec of the same family at another depth (the name's first number: resnet1202 -> resnet8,
        resnext29_8x64d -> resnext11_8x64d)."""
        return get_model_spec(re.sub(r"\d+", str(depth), self.name, count=1))

    def build(self, **overrides: Any) -> BlockNet:
        from resx.models.footprint import check_weights_fit

        kwargs = self.builder_kwargs(overrides)
        # an initialisation of any net, not a shape: applied after building
        zero_init = bool({**self.defaults, **overrides}.get("zero_init_residual"))
        try:
            check_weights_fit(self, kwargs)  # every net, before it is built: weights that cannot fit are refused
            net = self.builder(**kwargs)
            if zero_init:
                net.zero_init_residual()
        except ValueError as e:  # builders raise ValueError with what is allowed
            raise ResxError(f"model {self.name!r}: {e}") from None
        net.model_name = self.name
        net.model_options = {k: v for k, v in overrides.items() if v is not None}
        return net


_REGISTRY: dict[str, ModelSpec] = {}

CONV_OPTIONS = ("shortcut", "stochastic_depth")
# The basic-block CIFAR nets also take `block` (He et al. 2016, Table 2 / Fig. 4); preresnetN is resnetN with block
# full-preact, so it has no `block` of its own.
CIFAR_OPTIONS = CONV_OPTIONS + ("block",)


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _cifar_spec(name: str, depth: int, residual: bool, preact: bool = False) -> ModelSpec:
    if preact and (depth - 2) % 9 == 0 and depth >= 164:
        builder = partial(cifar_preresnet_bottleneck, depth)
        what = f"pre-activation bottleneck ResNet, {depth} layers (He et al. 2016)"
    else:
        builder = partial(cifar_resnet, depth, preact=preact)
        kind = "pre-activation ResNet" if preact else ("ResNet" if residual else "plain net")
        what = f"CIFAR {kind}, {depth} layers (He et al. {'2016' if preact else '2015 §4.2'})"
    return ModelSpec(name, "preact" if preact else "cifar", residual, depth, partial(builder, residual=residual),
                     CONV_OPTIONS if preact else CIFAR_OPTIONS, what)


for _d in (20, 32, 44, 56, 110, 1202):
    register_model(_cifar_spec(f"resnet{_d}", _d, residual=True))
    register_model(_cifar_spec(f"plain{_d}", _d, residual=False))
for _d in (20, 32, 44, 56, 110, 164, 1001):
    register_model(_cifar_spec(f"preresnet{_d}", _d, residual=True, preact=True))
for _d in (18, 34):
    register_model(
        ModelSpec(f"resnet{_d}", "imagenet", True, _d, partial(imagenet_resnet, _d, residual=True), CONV_OPTIONS,
                  f"ImageNet-style ResNet-{_d} (torchvision structure)")
    )
    register_model(
        ModelSpec(f"plain{_d}", "imagenet", False, _d, partial(imagenet_resnet, _d, residual=False), CONV_OPTIONS,
                  f"ImageNet-style plain-{_d}")
    )
# input_dim: vectors instead of images (2-D points: input_dim=2); by default in_channels * input_size^2
register_model(ModelSpec("mlp_res", "mlp", True, None, partial(mlp_net, residual=True),
                         ("depth", "width", "stochastic_depth", "input_dim", "shortcut", "block"),
                         "fully connected residual net, a[l+2] = relu(z[l+2] + a[l])"))
register_model(ModelSpec("mlp_plain", "mlp", False, None, partial(mlp_net, residual=False),
                         ("depth", "width", "input_dim", "block"),
                         "fully connected plain net, a[l+2] = relu(z[l+2])"))
_LINEAR_OPTIONS = ("depth", "width", "init", "scale", "bias")  # depth = number of blocks (resx/models/linear.py)
register_model(ModelSpec("linear_plain", "linear", False, None, partial(linear_net, residual=False), _LINEAR_OPTIONS,
                         "deep linear net, h = W h per block (W = aI: the product is a^l)"))
register_model(ModelSpec("linear_res", "linear", True, None, partial(linear_net, residual=True), _LINEAR_OPTIONS,
                         "deep linear residual net, h = h + W h per block (branch scaled by 1/depth)"))
register_model(ModelSpec("onenet_res", "onenet", True, None, onenet_res, ("depth", "input_dim"),
                         "one-neuron ResNet, x + V relu(U x + b) per block (Lin & Jegelka 2018); 2-D points by default"))

# --- ResNeXt (Xie et al. 2017) and DenseNet (Huang et al. 2017): resx/models/resnext.py, resx/models/densenet.py ---
# Names: resnextN_CxDd[_wW] (N = 9n+2; C groups of width d; W the first stage's output width, 256 by default, as the
# paper), densenetL (L = 3n+4) and densenet_bcL (L = 6n+4); the registered ones are the papers' CIFAR nets.
from resx.models.densenet import cifar_densenet, densenet_layers  # noqa: E402
from resx.models.resnext import PAPER_WIDTH, check_resnext, cifar_resnext  # noqa: E402

_RESNEXT_PATTERN = re.compile(r"^resnext(\d+)_(\d+)x(\d+)d(?:_w(\d+))?$")
_DENSENET_PATTERN = re.compile(r"^densenet(_bc)?(\d+)$")


def _resnext_spec(name: str, depth: int, cardinality: int, group_width: int, width: int = PAPER_WIDTH) -> ModelSpec:
    check_resnext(depth, cardinality, group_width, width)  # ValueError saying what is allowed
    layout = "" if width == PAPER_WIDTH else f", stages {width}/{2 * width}/{4 * width}"
    return ModelSpec(name, "resnext", True, depth, partial(cifar_resnext, depth, cardinality, group_width, width=width),
                     ("stochastic_depth",),
                     f"CIFAR ResNeXt-{depth} {cardinality}x{group_width}d{layout} (Xie et al. 2017, arXiv 1611.05431)")


def _densenet_spec(name: str, depth: int, bc: bool) -> ModelSpec:
    densenet_layers(depth, bc)
    what = "DenseNet-BC, bottleneck, compression 0.5" if bc else "DenseNet"
    return ModelSpec(name, "densenet", True, depth,
                     partial(cifar_densenet, depth, bottleneck=bc, compression=0.5 if bc else 1.0),
                     ("growth_rate", "dropout"),
                     f"CIFAR {what}, L={depth}, k=12 (Huang et al. 2017, arXiv 1608.06993)")


def _resnext_or_densenet_spec(name: str) -> ModelSpec | None:
    """The spec of any valid ResNeXt or DenseNet name (ValueError for a bad depth), None for other names."""
    m = _RESNEXT_PATTERN.match(name)
    if m:
        depth, cardinality, group_width = (int(g) for g in m.group(1, 2, 3))
        return _resnext_spec(name, depth, cardinality, group_width, int(m.group(4) or PAPER_WIDTH))
    m = _DENSENET_PATTERN.match(name)
    return _densenet_spec(name, int(m.group(2)), bool(m.group(1))) if m else None


for _name in ("resnext29_8x64d", "resnext29_16x64d", "densenet40", "densenet_bc100"):
    register_model(_resnext_or_densenet_spec(_name))

_PATTERN = re.compile(r"^(resnet|plain|preresnet)(\d+)$")


def list_models() -> list[str]:
    return sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].family, re.sub(r"\d+", "", n), _REGISTRY[n].depth or 0, n))


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered name, or of a CIFAR-family name with any valid depth (resnet8, plain14...).
    A name with options (resnet20:block=full-preact) gives its base name's spec; create_model applies the options."""
    name = split_model_name(name)[0]
    if name in _REGISTRY:
        return _REGISTRY[name]
    m = _PATTERN.match(name)
    if m:
        prefix, depth = m.group(1), int(m.group(2))
        preact_bottleneck = prefix == "preresnet" and depth >= 164 and (depth - 2) % 9 == 0
        try:
            blocks_per_stage(depth, 3 if preact_bottleneck else 2)  # validate now, with a clear message
        except ValueError as e:
            raise ResxError(f"unknown model {name!r}: {e}") from None
        spec = _cifar_spec(name, depth, residual=prefix != "plain", preact=prefix == "preresnet")
        return spec
    try:
        spec = _resnext_or_densenet_spec(name)  # resnextN_CxDd[_wW], densenetL, densenet_bcL
    except ValueError as e:
        raise ResxError(f"unknown model {name!r}: {e}") from None
    if spec is not None:
        return spec
    raise ResxError(
        f"unknown model {name!r}; known models: {', '.join(list_models())} "
        "(CIFAR names also take any 6n+2 depth, e.g. resnet8, plain14; resnextN_CxDd[_wW] any 9n+2 depth, "
        "densenetL any 3n+4, densenet_bcL any 6n+4)"
    )


def create_model(name: str, **overrides: Any) -> BlockNet:
    """Build a net by name. `overrides` set data options (num_classes, in_channels, input_size) and the
    model's own options (shortcut, block, stochastic_depth; depth and width for the MLPs). The name may carry options
    too (`resnet20:shortcut=scale-0.5,block=full-preact`); one that contradicts an override is refused. The net's
    model_name is the base name and its model_options hold both, so that a checkpoint rebuilds it."""
    base, options = split_model_name(name)
    return get_model_spec(base).build(**merge_name_options(name, options, overrides))


def check_training_fits(name: str, overrides: dict[str, Any], input_shape: tuple[int, ...], batch_size: int,
                        device: Any) -> Any:
    """Refuse, before the net is built, a training run of `name` (options in the name too) with `overrides` whose
    weights, gradients, momentum and a batch's activations would not fit `device` (resx.models.footprint)."""
    from resx.models.footprint import check_training_fits as check
    from resx.models.variants import merge_name_options, split_model_name

    base, options = split_model_name(name)
    spec = get_model_spec(base)
    return check(spec, spec.builder_kwargs(merge_name_options(name, options, overrides)), input_shape, batch_size,
                 device)


def check_model_options(name: str, *, shortcut: str | None = None, block: str | None = None) -> None:
    """An unknown model name, a shortcut asked of a plain net or a block of a net without that option: one line,
    before any data is loaded or any net is built."""
    spec = get_model_spec(name)
    if shortcut is not None and not spec.residual:
        raise ResxError(f"--shortcut {shortcut} is for residual nets; {name} is a plain net and has no "
                        "shortcuts (leave --shortcut out)")
    if block is not None and "block" not in spec.options:
        depth = spec.depth or 0
        basic_preact = spec.family == "preact" and not (depth >= 164 and (depth - 2) % 9 == 0)
        same = f" (it is resnet{depth} with --block full-preact already)" if basic_preact else ""
        raise ResxError(f"--block {block} is for the CIFAR basic-block nets (resnetN, plainN) and the MLPs; "
                        f"{name} has no block option{same}")


def twin_name(name: str) -> str:
    """The plain twin of a residual name and vice versa: resnet56 <-> plain56, mlp_res <-> mlp_plain (and linear_*)."""
    spec = get_model_spec(name)
    if spec.family == "onenet":
        raise ResxError(f"{name!r} has no plain twin: without its shortcuts a one-neuron net is one unit wide")
    if spec.family in ("resnext", "densenet"):
        raise ResxError(f"{name!r} ({spec.family}) has no plain twin in resx")
    if spec.family in ("mlp", "linear"):
        return f"{spec.family}_plain" if spec.residual else f"{spec.family}_res"
    if spec.family == "preact":
        raise ResxError(f"{name!r} is pre-activation; its plain twin is plain{spec.depth}")
    return f"{'plain' if spec.residual else 'resnet'}{spec.depth}"
