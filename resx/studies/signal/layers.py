"""The signal per layer: the RMS of every weighted layer's and every block's input and output, and of the gradient of
the loss at them and at the layer's weights, on one batch (see resx.studies.signal.compute for what is measured)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from resx.models.net import BlockNet
from resx.studies.common import analysis_mode


@dataclass
class _Layer:
    name: str
    module: nn.Module
    kind: str  # conv | linear | block
    index: int | None  # 1-based number among the main path's weighted layers (stem, branches, head); blocks: 1..n
    block: int | None  # the block it belongs to (0-based), None for the stem and head


def signal_layers(net: BlockNet) -> list[_Layer]:
    """The weighted layers (Conv2d, Linear) in module order, and the blocks. Projection shortcuts (option B) are
    weighted layers too but off the main path: no `index`, so that index counts the 6n+2 layers of He et al."""
    layers: list[_Layer] = []
    number = 0
    for name, module in net.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        match = re.match(r"blocks\.(\d+)\.", name)
        on_main_path = ".shortcut." not in name
        if on_main_path:
            number += 1
        layers.append(_Layer(name, module, "conv" if isinstance(module, nn.Conv2d) else "linear",
                             number if on_main_path else None, int(match.group(1)) if match else None))
    layers += [_Layer(f"blocks.{i}", block, "block", i + 1, i) for i, block in enumerate(net.blocks)]
    return layers


class _Sums:
    """Sums of squares (float64) over the batch's chunks, for the RMS of each tensor of one layer."""

    def __init__(self) -> None:
        self.squares: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.weight_grad: torch.Tensor | None = None

    def add(self, what: str, tensor: torch.Tensor | None) -> None:
        if tensor is None:
            return
        self.squares[what] = self.squares.get(what, 0.0) + float(tensor.detach().double().pow(2).sum())
        self.counts[what] = self.counts.get(what, 0) + tensor.numel()

    def rms(self, what: str) -> float:
        if what == "weight":
            if self.weight_grad is None:
                return float("nan")
            return float(self.weight_grad.pow(2).mean().sqrt())
        count = self.counts.get(what, 0)
        return math.sqrt(self.squares[what] / count) if count else float("nan")


def _chunk_gradients(net: BlockNet, layers: list[_Layer], x: torch.Tensor, y: torch.Tensor, total: int,
                     sums: list[_Sums]) -> None:
    """Forward one chunk with hooks on every layer, backward the chunk's share of the mean cross-entropy, and add
    each layer's squares to `sums` (eval-mode BN: the chunks' gradients add up to the whole batch's)."""
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(i: int):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            captured[i] = (args[0], output)
        return record

    handles = [layer.module.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        x = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(net(x), y, reduction="sum") / total
    finally:
        for handle in handles:
            handle.remove()
    order = sorted(captured)
    weights = [i for i in order if layers[i].kind != "block"]
    tensors = ([captured[i][0] for i in order] + [captured[i][1] for i in order]
               + [layers[i].module.weight for i in weights])
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    n = len(order)
    for j, i in enumerate(order):
        inp, out = captured[i]
        sums[i].add("input", inp)
        sums[i].add("output", out)
        sums[i].add("grad_input", grads[j])
        sums[i].add("grad_output", grads[n + j])
    for j, i in enumerate(weights):
        g = grads[2 * n + j]
        if g is not None:
            g = g.detach().double()
            sums[i].weight_grad = g if sums[i].weight_grad is None else sums[i].weight_grad + g


def layer_signals(net: BlockNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None) -> pd.DataFrame:
    """Per weighted layer and per block: the RMS of its input and output, and of the gradient of the mean
    cross-entropy over `images` at its input, its output and its weights (see resx.studies.signal.compute).
    Eval-mode BN; the batch is processed in chunks of `batch_size` (memory), which changes no number."""
    layers = signal_layers(net)
    sums = [_Sums() for _ in layers]
    batch_size = batch_size or len(images)
    with analysis_mode(net, requires_grad=True):  # weight gradients on
        for start in range(0, len(images), batch_size):
            _chunk_gradients(net, layers, images[start:start + batch_size], labels[start:start + batch_size],
                             len(images), sums)
    rows = []
    for layer, s in zip(layers, sums):
        rows.append(dict(layer=layer.name, kind=layer.kind, activation_rms=s.rms("output"),
                         grad_input_rms=s.rms("grad_input"),
                         grad_weight_rms=s.rms("weight") if layer.kind != "block" else float("nan"),
                         index=layer.index, block=layer.block, input_rms=s.rms("input"),
                         grad_output_rms=s.rms("grad_output")))
    return pd.DataFrame(rows)

