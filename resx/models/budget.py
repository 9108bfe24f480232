"""Parameter and compute budgets: multiply-accumulates of a net, and ResNeXts of a given parameter count.

`count_macs(net, input_shape)`: the multiply-accumulates of one image's forward pass through the convolutions and
fully connected layers (forward hooks; BN, ReLU, pooling and additions are not counted, as in the papers' FLOP
counts, which are multiply-adds). A KxK conv from c_in to c_out channels in g groups, with an output of HxW, costs
H * W * c_out * (c_in / g) * K * K; a linear layer in -> out costs in * out.

`resnext_for_budget(budget, cardinality)`: the ResNeXt of cardinality C whose parameter count is nearest `budget`,
choosing the group width d (Xie et al. 2017, Table 2: "ResNeXt ... with roughly preserved complexity", there at
ResNet-50's budget for C = 1, 2, 4, 8, 32; here at a CIFAR net's). The layout (resx.models.resnext): 9n+2 layers,
the depth of the budget model where it is 9n+2 (resnet20: n = 2; resnet56: n = 6; resnet110: n = 12), else `depth`;
first-stage output width W = 64 by default (stem 16, stages 64/128/256: He et al. 2016's CIFAR bottleneck layout,
4x the basic ResNet's 16/32/64), so C = 1 is a bottleneck ResNet of that layout. The result's name rebuilds the net:
`resnext_for_budget("resnet56", 4).name` == "resnext56_4x8d_w64" (resnet56: 853,018 parameters; see
tests/test_resnext_densenet.py for the counts at C = 1, 2, 4, 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from resx.errors import ResxError

BUDGET_WIDTH = 64  # first-stage output width of the budget ResNeXts (stem 16; stages 64, 128, 256)
CIFAR_INPUT = (3, 32, 32)


def count_macs(net: nn.Module, input_shape: Sequence[int] = CIFAR_INPUT) -> int:
    """Multiply-accumulates of conv and linear layers for one input of `input_shape` (without the batch), counted
    with forward hooks on a forward pass in eval mode. Works on nets built on the meta device (no memory, no time)."""
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output[0].numel() * (module.in_channels // module.groups) * kernel

    def linear_hook(module: nn.Linear, inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += (output[0].numel() // module.out_features) * module.in_features * module.out_features

    hooks = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    parameter = next(net.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape, device=device))
    finally:
        net.train(training)
        for h in hooks:
            h.remove()
    return int(total)


def model_budget(name: str, num_classes: int = 10, input_shape: Sequence[int] = CIFAR_INPUT) -> tuple[int, int]:
    """(parameters, MACs) of a registered model, built on the meta device."""
    from resx.models.registry import create_model

    with torch.device("meta"):
        net = create_model(name, num_classes=num_classes, in_channels=input_shape[0])
    return net.num_parameters(), count_macs(net, input_shape)


@dataclass(frozen=True)
class BudgetMatch:
    """A ResNeXt matched to a parameter budget: its registry name, C, d, parameters and MACs (32x32 input)."""

    name: str
    cardinality: int
    group_width: int
    params: int
    macs: int
    budget: int

    @property
    def relative_error(self) -> float:
        return self.params / self.budget - 1.0


def _resnext_params(depth: int, cardinality: int, group_width: int, width: int, num_classes: int) -> int:
    from resx.models.resnext import cifar_resnext

    with torch.device("meta"):
        return cifar_resnext(depth, cardinality, group_width, width=width, num_classes=num_classes).num_parameters()


def resnext_for_budget(
    budget: int | str,
    cardinality: int,
    depth: int | None = None,
    *,
    width: int = BUDGET_WIDTH,
    num_classes: int = 10,
) -> BudgetMatch:
    """The ResNeXt of `cardinality` groups whose parameter count is nearest `budget` (a count, or a model name whose
    count is the budget), over group widths d >= 1 (ties: the smaller d). `depth` (9n+2): default the budget model's
    depth when it is 9n+2, else 29. The count grows with d, so d is found by doubling then bisection."""
    from resx.models.registry import get_model_spec
    from resx.models.resnext import check_resnext, resnext_name

    if isinstance(budget, str):
        spec = get_model_spec(budget)
        if depth is None and spec.depth and spec.depth >= 11 and (spec.depth - 2) % 9 == 0:
            depth = spec.depth
        budget = model_budget(budget, num_classes)[0]
    depth = 29 if depth is None else depth
    try:
        check_resnext(depth, cardinality, 1, width)
    except ValueError as e:
        raise ResxError(str(e)) from None
    if budget < 1:
        raise ResxError(f"the parameter budget must be positive, got {budget}")

    def params(d: int) -> int:
        return _resnext_params(depth, cardinality, d, width, num_classes)

    low, high = 1, 1  # find params(high) >= budget, then the largest d with params(d) < budget
    while params(high) < budget:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if params(middle) < budget else (low, middle)
    candidates = sorted({low, high}, key=lambda d: (abs(params(d) - budget), d))
    d = candidates[0]
    name = resnext_name(depth, cardinality, d, width)
    count, macs = model_budget(name, num_classes)
    return BudgetMatch(name, cardinality, d, count, macs, budget)
