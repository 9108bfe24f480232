"""Vanishing and exploding signals, and residual blocks whose Jacobian stays near the identity.

The classic argument (Bengio, Simard, Frasconi 1994; Glorot and Bengio 2010). A deep linear net y = W_l ... W_1 x with every W_i = aI computes a^l x: with a = 0.5 and
l = 50 that is 8.9e-16 x (the signal vanishes), with a = 1.5 it is 6.4e8 x (it explodes); the gradient flowing back,
W_1^T ... W_l^T g, carries the same factor (Saxe et al. 2014, deep linear nets). A residual block h + F(h) has the
Jacobian I + dF/dh, so while the branches' Jacobians are small the product of the block Jacobians stays near the
identity and well conditioned, whatever the depth (He et al. 2016, "Identity mappings in deep residual networks",
§3, Eqs. 4-5: the gradient at any block is the gradient at the top plus terms through the branches, so it does not
vanish); a plain block's Jacobian is dF/dh alone. Veit et al. 2016 qualify this: trained residual nets do not keep
gradient alive through the whole depth, they shorten the paths the gradient takes (`resx paths` shows that side).
He et al. 2015 (§4.1) add that their plain nets, trained with BatchNorm, do not suffer from vanishing gradients at
all ("the backward propagated gradients exhibit healthy norms with BN"); this study measures both.

What is measured, for each net (a run's trained checkpoint, each checkpoint it saved, and the run's model and its
plain or residual twin freshly initialised with the same seed, so with the same weights where the twins share them):
  * per weighted layer (every Conv2d and Linear) and per block output, on a batch of `samples` training images:
    activation_rms, the RMS of the layer's output (input_rms: of its input); grad_input_rms, the RMS of the gradient
    of the loss at the layer's input (grad_output_rms: at its output); grad_weight_rms, the RMS of the gradient at
    its weights (empty for blocks). Loss: the mean cross-entropy over the batch. RMS = sqrt(mean of squares) over
    every element (examples x features).
  * per block: the singular values of its input-output Jacobian J, estimated WITHOUT building it, per example
    (BatchNorm in eval mode makes the examples independent, so the Jacobian of the whole batch is block diagonal;
    each of `jacobian_examples` examples gets its own estimate, computed side by side, and the CSV holds the mean
    over them). sigma_max and sigma_min_est come from `lanczos_steps` steps of Lanczos with full reorthogonalisation
    on the Gram matrix J^T J (or J J^T when the block has fewer outputs than inputs, so that the Gram matrix has no
    structural zeros), each step one forward-mode product (torch.func.jvp) and one reverse-mode product (torch.func.vjp).
    The extreme Ritz values converge to the extreme eigenvalues: sqrt of the largest converges fast and from below to
    sigma_max; sqrt of the smallest converges from ABOVE to sigma_min, and slowly when small singular values are
    crowded, so sigma_min_est is an upper bound (exact once the steps reach the Gram matrix's size, as in the tests).
  * dist_identity = ||J - I||_F / ||I||_F = sqrt(||J - I||_F^2 / dim), for blocks whose input and output shapes match
    (downsampling blocks: empty). Hutchinson's estimate ||A||_F^2 = E||A v||^2 for v ~ N(0, I) with `probes` probes
    per example (relative error about sqrt(2 / (probes x examples)) on the square at worst); exact (the basis vectors
    as probes) when the block's dimension is at most `probes`. The mean of the squares over the examples, then sqrt.
  * the whole block stack: sigma_max (and the sigma_min estimate) of the Jacobian of the map from the stem's output
    (the first block's input) to the last block's output, the product of the block Jacobians, the same way; in
    signal_info.json. For a linear net that map is W_l ... W_1 itself. (The stem and head are the same in both
    twins; the image-to-logits map adds the head's 10 outputs, which would cap the rank at 10.)

Decisions:
  * BatchNorm in eval mode (as `resx paths`): trained nets with their running statistics; fresh nets with statistics
    estimated on the analysed batch first (`calibrate_batchnorm`), so their eval-mode forward pass is the
    training-mode one at initialisation. The backward pass differs from training's: training-mode BN also
    back-propagates through the batch statistics (subtracting the gradient's batch mean and its projection); eval
    mode treats them as constants, which is also what makes the per-example Jacobians well defined.
  * fp32 (strict: no TF32 on CUDA, never bf16), as the paths study's gradient norms; the deep linear nets in float64,
    so that the measured a^l (down to 8.9e-16, and 1.5^50 after 50 roundings) matches to about 1e-15 relative.
  * Linear nets (resx/models/linear.py) analysed without --data get Gaussian inputs N(0, I) of size `width` and
    uniform random labels over 10 classes: no dataset needed, and the product W_l ... W_1 acts on the inputs directly.
  * Original (post-activation) blocks end with a ReLU after the addition, so their Jacobian is D (I + dF/dh) with D
    the ReLU's 0/1 mask: about half the coordinates are zeroed, sigma_min is 0 and ||J - I||_F / ||I||_F cannot
    fall much below sqrt(1/2) however small dF/dh is. Pre-activation blocks (preresnet*, He et al. 2016 §4) and the
    linear nets have J = I + dF/dh exactly: that is the near-identity claim's own setting.
  * At initialisation deep plain nets with BatchNorm may show gradients that GROW towards the input (measured here
    for plain-56 in eval mode; cf. Yang et al. 2019, "A mean field theory of batch normalization", for training mode):
    the study reports what it measures, the report says whether it is vanishing, exploding or neither.
  * --depths: a CIFAR family (resnet, plain, preresnet, or a full name whose digits are replaced) becomes
    resnet20, resnet56, ...; the MLPs and linear nets take the depth as their `depth` option (for a linear net the
    number of blocks, i.e. of matrices in the product).
  * A run folder: its checkpoint.pt (the trained net), and every checkpoint it saved on the way,
    RUN/checkpoints/*.pt or RUN/checkpoint-epoch*.pt, in epoch order (one of the same epoch as checkpoint.pt skipped).

Shared with the paths and landscape studies (one implementation each, resx.studies.common): the seeded fresh nets,
the twins, the BN calibration, the eval-mode measuring context, the strict-fp32 context and the training batch;
the --out check is resx.studies.guards' with the files the study declares (resx.plugins.signal).

Outputs (tidy CSV, written atomically): signal_layers.csv (run, residual, trained, checkpoint, layer, kind,
activation_rms, grad_input_rms, grad_weight_rms, then model, depth, index, block, epoch, final, input_rms,
grad_output_rms, init_scheme, scale), block_jacobians.csv (run, residual, trained, block, sigma_max, sigma_min_est,
dist_identity, then the extras of resx.plots.signal.JACOBIAN_EXTRA), signal_info.json; the figures of
resx/plots/signal.py.
"""

from __future__ import annotations

import functools
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from resx.errors import ResxError
from resx.labels import run_label, unique_label
from resx.models.net import BlockNet
from resx.plots.signal import JACOBIAN_EXTRA, LAYER_EXTRA
from resx.plugins.signal import INFO_NAME, JACOBIAN_COLUMNS, LAYER_COLUMNS  # declared with the study
from resx.studies import guards
from resx.studies.common import (MIN_BN_BATCH, analysis_batch, analysis_mode, calibrate_batchnorm, fresh_net,
                                 model_has_batchnorm, precision, twin_of)

SignalProgress = Callable[[str, int, int], None]  # (stage, done, total)

DEFAULT_LINEAR_SCALES = (0.5, 1.0, 1.5)  # a: vanishing, preserved, exploding
GAUSSIAN_CLASSES = 10
BN_NOTE = ("eval mode: trained nets with their running statistics, fresh nets with statistics estimated on the "
           "analysed batch (nothing learnt); the backward pass treats the statistics as constants")
JACOBIAN_NOTE = ("per example (eval-mode BN: the batch Jacobian is block diagonal), mean over the examples; "
                 "sigma_max and sigma_min_est: extreme Ritz values of Lanczos (full reorthogonalisation) on J^T J, or "
                 "J J^T when the block has fewer outputs than inputs, via torch.func.jvp/vjp; sigma_min_est is an upper "
                 "bound on sigma_min; dist_identity = ||J - I||_F / sqrt(dim) by Hutchinson's estimate (exact with basis "
                 "probes when dim <= probes), only where input and output shapes match")
WHOLE_NET_MAP = "stem output (first block's input) -> last block's output: the product of the block Jacobians"


# --- per-layer signal ---------------------------------------------------------------------------------------------
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
    cross-entropy over `images` at its input, its output and its weights (see the module docstring). Eval-mode BN;
    the batch is processed in chunks of `batch_size` (memory), which changes no number."""
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


# --- Jacobian spectra without the Jacobian --------------------------------------------------------------------------
@functools.cache
def _load_forward_ad() -> None:
    """Load forward-mode AD's decompositions once, without the FutureWarning about torch.jit.script that torch
    2.x emits while doing so (it is torch's own use, nothing resx can change)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        x = torch.zeros(1)
        torch.func.jvp(torch.sin, (x,), (x,))


class LinearisedMap:
    """The Jacobian J of `f` at `x` ([k, ...], k independent examples) as products: J v by forward mode
    (torch.func.jvp), J^T u by reverse mode (torch.func.vjp, the forward pass kept once)."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
        _load_forward_ad()
        self.f, self.x = f, x.detach()
        out, self._vjp = torch.func.vjp(f, self.x)
        self.out_shape = out.shape
        self.in_dim, self.out_dim = self.x[0].numel(), out[0].numel()

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(self.f, (self.x,), (v,))[1]

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        return self._vjp(u)[0]

    def gram(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Size, str]:
        """(G, the shape G acts on, 'input' or 'output'): G = J^T J on the input side, or J J^T on the output side
        when the map has fewer outputs than inputs; either way its eigenvalues are the squared singular values."""
        if self.in_dim <= self.out_dim:
            return (lambda v: self.vjp(self.jvp(v))), self.x.shape, "input"
        return (lambda u: self.jvp(self.vjp(u))), self.out_shape, "output"


def lanczos_extremes(apply: Callable[[torch.Tensor], torch.Tensor], shape: torch.Size, steps: int,
                     generator: torch.Generator, dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, int]:
    """Largest and smallest Ritz values of `steps` Lanczos steps on the symmetric positive semi-definite map `apply`,
    for each of the shape[0] independent examples side by side (each with its own Krylov space). Full
    reorthogonalisation (twice, "twice is enough": Parlett); an example whose Krylov space closes (beta ~ 0) stops
    there, its Ritz values then exact. Returns (largest [k], smallest [k], steps taken at most)."""
    k, dim = shape[0], math.prod(shape[1:])
    steps = max(1, min(steps, dim))
    v = torch.randn(k, dim, generator=generator, dtype=dtype).to(device)
    v = v / v.norm(dim=1, keepdim=True)
    basis = torch.zeros(steps, k, dim, device=device, dtype=v.dtype)
    alphas = torch.zeros(steps, k, dtype=torch.float64)
    betas = torch.zeros(steps, k, dtype=torch.float64)
    length = torch.full((k,), steps, dtype=torch.long)
    active = torch.ones(k, dtype=torch.bool)
    tol = 100 * torch.finfo(v.dtype).eps
    taken = 0
    for j in range(steps):
        basis[j] = v
        w = apply(v.view(shape)).reshape(k, dim)
        alpha = (w * v).sum(1)
        for _ in range(2):  # orthogonalise against every earlier basis vector (includes the three-term recurrence)
            w = w - torch.einsum("jk,jkd->kd", torch.einsum("jkd,kd->jk", basis[:j + 1], w), basis[:j + 1])
        beta = w.norm(dim=1)
        alphas[j], betas[j] = alpha.double().cpu(), beta.double().cpu()
        taken = j + 1
        size = alphas[:j + 1].abs().max(0).values.clamp_min(1e-300)
        closed = active & (betas[j] <= tol * size)
        length[closed] = j + 1
        active &= ~closed
        if not active.any():
            break
        v = w / torch.where(beta > 0, beta, torch.ones_like(beta))[:, None]
    largest, smallest = np.empty(k), np.empty(k)
    for i in range(k):
        n = int(min(length[i], taken))
        tridiagonal = torch.diag(alphas[:n, i]) + torch.diag(betas[:n - 1, i], 1) + torch.diag(betas[:n - 1, i], -1)
        ritz = torch.linalg.eigvalsh(tridiagonal)
        largest[i], smallest[i] = float(ritz[-1]), float(ritz[0])
    return largest, smallest, taken


def identity_distance(linear: LinearisedMap, probes: int, generator: torch.Generator) -> tuple[float, bool]:
    """sqrt(mean over the examples of ||J - I||_F^2 / dim) by Hutchinson's estimate E||(J - I) v||^2 with `probes`
    Gaussian probes per example; exact (the basis vectors as probes) when dim <= probes. Returns (distance, exact)."""
    x = linear.x
    k, dim = x.shape[0], linear.in_dim
    exact = dim <= probes
    if exact:
        vectors = torch.eye(dim, dtype=x.dtype, device=x.device).expand(k, dim, dim)
    else:
        vectors = torch.randn(k, probes, dim, generator=generator, dtype=x.dtype).to(x.device)
    count = vectors.shape[1]
    squares = torch.zeros(k, dtype=torch.float64, device=x.device)
    per_pass = max(1, (1 << 22) // max(1, dim * k))  # probes per jvp: bounded memory (k x probes x dim elements)
    for start in range(0, count, per_pass):
        v = vectors[:, start:start + per_pass]  # [k, p, dim]
        p = v.shape[1]
        xs = x.repeat_interleave(p, dim=0)
        jv = torch.func.jvp(linear.f, (xs,), (v.reshape(k * p, *x.shape[1:]),))[1]
        diff = (jv.reshape(k, p, dim) - v).double()
        squares += diff.pow(2).sum(dim=(1, 2))
    frobenius = squares if exact else squares / count  # ||J - I||_F^2 per example
    return float((frobenius / dim).mean().sqrt()), exact


def jacobian_spectrum(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, steps: int = 20, probes: int = 8,
                      generator: torch.Generator | None = None, identity: bool = True) -> dict[str, Any]:
    """Singular-value estimates of the Jacobian of `f` at each example of `x` ([k, ...]), meaned over the examples:
    sigma_max, sigma_min_est (see `lanczos_extremes`), and dist_identity = ||J - I||_F / ||I||_F when input and output
    shapes match and `identity` (else NaN). `f` must treat the examples independently (eval-mode BN)."""
    generator = generator or torch.Generator().manual_seed(0)
    linear = LinearisedMap(f, x)
    apply, shape, side = linear.gram()
    largest, smallest, taken = lanczos_extremes(apply, shape, steps, generator, x.dtype, x.device)
    same_shape = tuple(linear.out_shape) == tuple(x.shape)
    dist, exact = (identity_distance(linear, probes, generator) if (identity and same_shape)
                   else (float("nan"), False))
    return dict(sigma_max=float(np.sqrt(np.clip(largest, 0, None)).mean()),
                sigma_min_est=float(np.sqrt(np.clip(smallest, 0, None)).mean()),
                dist_identity=dist, in_dim=linear.in_dim, out_dim=linear.out_dim, gram_side=side,
                examples=int(x.shape[0]), lanczos_steps=taken, probes=linear.in_dim if exact else probes,
                dist_exact=exact, downsampling=not same_shape)


def block_jacobians(net: BlockNet, images: torch.Tensor, *, steps: int = 20, probes: int = 8,
                    generator: torch.Generator | None = None, progress: Callable[[int, int], None] | None = None
                    ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each block's Jacobian spectrum at the examples `images` ([k, ...]), and the whole block stack's (stem output ->
    last block output). Eval-mode BN. Returns (one row per block, the stack's estimates)."""
    generator = generator or torch.Generator().manual_seed(0)
    rows = []
    with analysis_mode(net):
        with torch.no_grad():
            h0 = net.stem(images)
        h = h0
        for i, block in enumerate(net.blocks):
            rows.append(dict(block=i, **jacobian_spectrum(block, h, steps=steps, probes=probes, generator=generator)))
            with torch.no_grad():
                h = block(h)
            if progress:
                progress(i + 1, len(net.blocks) + 1)

        def stack(z: torch.Tensor) -> torch.Tensor:
            for block in net.blocks:
                z = block(z)
            return z

        whole = jacobian_spectrum(stack, h0, steps=steps, probes=probes, generator=generator, identity=False)
        if progress:
            progress(len(net.blocks) + 1, len(net.blocks) + 1)
    frame = pd.DataFrame(rows)
    frame.loc[frame["downsampling"], "dist_identity"] = float("nan")
    return frame, {k: whole[k] for k in ("sigma_max", "sigma_min_est", "in_dim", "out_dim", "gram_side", "lanczos_steps")}


# --- which nets ------------------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """One net to measure."""

    run: str  # the `run` column
    name: str  # registry name
    options: dict  # model options (no data options)
    trained: bool
    checkpoint: str  # "init", or the checkpoint's path relative to its run folder
    final: bool  # a fresh net, or a run's last checkpoint
    epoch: int | None = None
    path: Path | None = None  # the checkpoint file
    ckpt: dict | None = field(default=None, repr=False)


_CIFAR = re.compile(r"^(resnet|plain|preresnet)(\d*)$")


def models_for_depths(model: str, depths: Sequence[int] | None) -> list[tuple[str, dict]]:
    """(name, options) per depth: resnet/plain/preresnet (or such a name with digits) -> resnet20, resnet56, ...;
    MLPs and linear nets (whose depth is an option) -> the same name with depth=d. No depths: the model itself."""
    from resx.models import get_model_spec

    if not depths:
        if _CIFAR.match(model) and not _CIFAR.match(model).group(2):
            raise ResxError(f"--model {model} needs --depths (e.g. --depths 20,56), or give a full name such as {model}56")
        get_model_spec(model)
        return [(model, {})]
    bad = [d for d in depths if d < 1]
    if bad:
        raise ResxError(f"--depths must be positive integers, got {bad[0]}")
    cifar = _CIFAR.match(model)
    if cifar:
        names = [f"{cifar.group(1)}{d}" for d in depths]
        for name in names:
            get_model_spec(name)  # a depth that is not 6n+2 (9n+2): one line saying what is allowed
        return [(name, {}) for name in names]
    spec = get_model_spec(model)
    if "depth" not in spec.options:
        raise ResxError(f"--depths needs a model whose depth can change: resnet, plain, preresnet (6n+2), mlp_res, "
                        f"mlp_plain, linear_plain or linear_res; {model} has a fixed depth")
    return [(model, {"depth": d}) for d in depths]


def _fresh_label(name: str, options: dict) -> str:
    label = name
    if "depth" in options:
        label += str(options["depth"])
    if "scale" in options:
        label += f"-a{options['scale']:g}"
    if "init" in options:
        label += f"-{options['init']}"
    return label + "-init"


def run_checkpoints(path: Path) -> list[Path]:
    """A checkpoint file itself, or a run folder's saved checkpoints (checkpoints/*.pt, checkpoint-epoch*.pt, in the
    order of the numbers in their names) followed by its checkpoint.pt."""
    from resx.engine import find_checkpoint

    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise ResxError(f"run folder {path} not found")
    final = find_checkpoint(path)
    saved = set(path.glob("checkpoints/*.pt")) | set(path.glob("checkpoint-epoch*.pt"))

    def order(p: Path) -> tuple:
        numbers = [int(n) for n in re.findall(r"\d+", p.stem)]
        return (numbers[-1] if numbers else -1, p.name)

    return sorted(saved - {final}, key=order) + [final]


def _trained_entries(runs: Sequence[str | Path], data: str | None, force: bool) -> list[_Entry]:
    """Every checkpoint of every run given, each read and checked (finished, same dataset) before anything runs."""
    from resx.engine import read_checkpoint
    from resx.models.registry import DATA_OPTIONS

    entries: list[_Entry] = []
    taken: set[str] = set()
    for run in runs:
        run = Path(run)
        files = run_checkpoints(run)
        label = unique_label(run_label(run), taken)
        folder = run if run.is_dir() else run.parent
        final_ckpt = read_checkpoint(files[-1])
        guards.check_run(str(run), run, (final_ckpt.get("config") or {}).get("data"), data, force=force,
                         what="analyse")
        for file in files:
            ckpt = final_ckpt if file == files[-1] else read_checkpoint(file)
            if file != files[-1] and ckpt.get("epoch") is not None and ckpt.get("epoch") == final_ckpt.get("epoch"):
                continue  # a saved copy of the final checkpoint
            options = {k: v for k, v in ckpt["model_options"].items() if k not in DATA_OPTIONS}
            try:
                relative = file.relative_to(folder).as_posix()
            except ValueError:
                relative = file.name
            entries.append(_Entry(label, ckpt["model_name"], options, True, relative, file == files[-1],
                                  ckpt.get("epoch"), file, ckpt))
    return entries


def _fresh_entries(bases: Sequence[tuple[str, dict]], taken: set[str]) -> list[_Entry]:
    """Each base model and its twin, freshly initialised (one entry per distinct name and options)."""
    entries, planned = [], set()
    for name, options in bases:
        for fresh in (name, twin_of(name)):
            if fresh is None:
                continue
            key = (fresh, tuple(sorted(options.items())))
            if key in planned:
                continue
            planned.add(key)
            label = unique_label(_fresh_label(fresh, options), taken)
            entries.append(_Entry(label, fresh, dict(options), False, "init", True, 0))
    return entries


def _linear_options(name: str, scale: float | Sequence[float] | None, init_scheme: str | None) -> list[dict]:
    """The linear-net options to sweep: one per scale (default: 0.5, 1, 1.5), with the init scheme."""
    from resx.models import get_model_spec

    if get_model_spec(name).family != "linear":
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


# --- the batch ----------------------------------------------------------------------------------------------------------
@dataclass
class _Batch:
    images: torch.Tensor
    labels: torch.Tensor
    source: str


def _dataset_batch(dataset, samples: int, seed: int, device: torch.device) -> _Batch:
    """`samples` un-augmented training images drawn with `seed` (resx.studies.common.analysis_batch)."""
    images, labels = analysis_batch(dataset, samples, torch.Generator().manual_seed(seed), device)
    return _Batch(images, labels, f"{len(images)} un-augmented training images of {dataset.name}")


def gaussian_batch(width: int, samples: int, seed: int, device: torch.device, classes: int = GAUSSIAN_CLASSES) -> _Batch:
    """N(0, I) vectors of size `width` and uniform labels: the deep linear nets' inputs without a dataset."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(samples, width, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    return _Batch(images.to(device), labels.to(device), f"{samples} Gaussian vectors N(0, I) of size {width}")


# --- one net ------------------------------------------------------------------------------------------------------------
def _build(entry: _Entry, data_options: dict, seed: int) -> BlockNet:
    """The trained net from its checkpoint, or a seeded fresh one (resx.studies.common.fresh_net: the caller's RNG
    untouched, the same seed gives twins the same weights where they share parameters; deep linear nets built in
    float64, so that W = (a/l) I is a/l to 1e-16, not to fp32's 1e-8)."""
    from resx.engine import load_model

    if entry.ckpt is not None:
        net, _ = load_model(entry.ckpt)
        return net
    dtype = torch.float64 if _is_linear(entry.name) else None
    return fresh_net(entry.name, {**entry.options, **data_options}, seed, dtype=dtype)


def _is_linear(name: str) -> bool:
    from resx.models import get_model_spec

    return get_model_spec(name).family == "linear"


def _depth(net: BlockNet, name: str) -> int:
    from resx.models import get_model_spec

    spec = get_model_spec(name)
    if spec.depth:
        return spec.depth
    if spec.family == "linear":
        return len(net.blocks)
    return sum(1 for layer in signal_layers(net) if layer.kind != "block" and layer.index is not None)


@dataclass
class _Settings:
    samples: int
    batch_size: int | None
    jacobian_examples: int
    lanczos_steps: int
    probes: int
    seed: int


def measure_net(entry: _Entry, net: BlockNet, batch: _Batch, settings: _Settings, device: torch.device,
                progress: SignalProgress | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """signal_layers and block_jacobians rows of one net, and its whole-stack estimates and timings."""
    dtype = torch.float64 if _is_linear(entry.name) else torch.float32
    net = net.to(device=device, dtype=dtype)
    images, labels = batch.images.to(dtype), batch.labels
    if not entry.trained:
        calibrate_batchnorm(net, images, settings.batch_size or len(images))
    t0 = time.perf_counter()
    layers = layer_signals(net, images, labels, settings.batch_size)
    t1 = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed)
    examples = images[: settings.jacobian_examples]
    report = (lambda done, total: progress(f"{entry.run} {entry.checkpoint} blocks", done, total)) if progress else None
    jacobians, whole = block_jacobians(net, examples, steps=settings.lanczos_steps, probes=settings.probes,
                                       generator=generator, progress=report)
    t2 = time.perf_counter()
    common = dict(run=entry.run, residual=net.residual, trained=entry.trained, checkpoint=entry.checkpoint,
                  model=entry.name, depth=_depth(net, entry.name), epoch=entry.epoch, final=entry.final,
                  init_scheme=(net.model_options.get("init", "scaled-identity") if _is_linear(entry.name) else None),
                  scale=(float(net.model_options.get("scale", 1.0)) if _is_linear(entry.name) else float("nan")))
    layers = layers.assign(**common)
    jacobians = jacobians.assign(**common)
    whole.update(run=entry.run, checkpoint=entry.checkpoint, residual=net.residual, trained=entry.trained,
                 map=WHOLE_NET_MAP, post_activation=net.residual and any(b.post_activation for b in net.blocks),
                 seconds_layers=round(t1 - t0, 3), seconds_jacobians=round(t2 - t1, 3),
                 precision="fp64" if dtype == torch.float64 else "fp32")
    return layers, jacobians, whole


def linear_comparison(layers: pd.DataFrame, whole: list[dict]) -> pd.DataFrame:
    """For each deep linear net: the forward gain (last block's output RMS / first block's input RMS), the gradient
    gain (gradient RMS at the first block's input / at the last block's output) and the stack's singular values,
    beside the exact factor where there is one (resx.models.linear.expected_gain: a^l, (1 + a/l)^l)."""
    from resx.models.linear import expected_gain

    sigma = {(w["run"], w["checkpoint"]): w for w in whole}
    rows = []
    linear = layers[layers["model"].isin(["linear_plain", "linear_res"])]
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


# --- the whole study --------------------------------------------------------------------------------------------------
@dataclass
class SignalResult:
    layers: pd.DataFrame  # signal_layers.csv
    jacobians: pd.DataFrame  # block_jacobians.csv
    info: dict[str, Any]  # signal_info.json
    linear: pd.DataFrame  # the deep linear nets against a^l (empty when none was analysed)
    out: Path | None = None
    figures: list[Path] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """One row per net and checkpoint (resx.plots.signal.summarise)."""
        from resx.plots.signal import summarise

        return summarise(self.layers, self.jacobians, self.info)


def _check_settings(samples: int, batch_size: int | None, jacobian_examples: int, lanczos_steps: int,
                    probes: int) -> None:
    for option, value, low in (("--samples", samples, 1), ("--batch-size", batch_size, 1),
                               ("--jacobian-examples", jacobian_examples, 1), ("--lanczos-steps", lanczos_steps, 1),
                               ("--probes", probes, 1)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < low):
            raise ResxError(f"{option} must be an integer of at least {low}, got {value}")


def _check_batchnorm_batch(fresh: Sequence[_Entry], samples: int, batch_size: int | None) -> None:
    """A fresh net's BN statistics are estimated on the analysed batch (`calibrate_batchnorm`): where a fresh net
    has BatchNorm, the batch needs 2 images or more, and so does each chunk of --batch-size."""
    with_bn = next((e for e in fresh if model_has_batchnorm(e.name)), None)
    if with_bn is None:
        return
    for option, value in (("--samples", samples), ("--batch-size", batch_size)):
        if value is not None and value < MIN_BN_BATCH:
            raise ResxError(f"{option} must be at least {MIN_BN_BATCH} for {with_bn.name} (got {value}): the BatchNorm "
                            "statistics of its fresh net are estimated on the analysed images; linear nets take 1")


def _plan(runs: Sequence[str | Path], model: str | None, depths: Sequence[int] | None, data: str | None,
          force: bool, scale, init_scheme: str | None, model_options: dict) -> tuple[list[_Entry], list[_Entry]]:
    """(the runs' checkpoints, fresh entries), every name and option checked before any data is loaded."""
    from resx.models import get_model_spec

    if not runs and not model:
        raise ResxError("give run folders or checkpoints to analyse, or --model NAME for freshly initialised nets")
    if runs and model:
        raise ResxError("give run folders or --model, not both (use --init to analyse the runs' models at initialisation)")
    if runs and (depths or scale is not None or init_scheme is not None or model_options):
        raise ResxError("--depths, --scale, --init-scheme and model options go with --model; a run's net is as trained")
    if model:
        bases = []
        for name, options in models_for_depths(model, depths):
            spec = get_model_spec(name)
            unknown = sorted(set(model_options) - set(spec.options))
            if unknown:
                raise ResxError(f"model {name!r} has no option {unknown[0]!r}; allowed: {', '.join(spec.options) or 'none'}")
            for linear in _linear_options(name, scale, init_scheme):
                bases.append((name, {**options, **model_options, **linear}))
        return [], _fresh_entries(bases, set())
    trained = _trained_entries(runs, data, force)
    taken = {e.run for e in trained}
    bases = list(dict.fromkeys((e.name, tuple(sorted(e.options.items()))) for e in trained if e.final))
    fresh = _fresh_entries([(name, dict(options)) for name, options in bases], taken)
    return trained, fresh


def _data_for(entries: list[_Entry], trained: list[_Entry], data: str | None, data_dir) -> tuple[str | None, Any]:
    """(data spec, data dir): --data, else the first run's dataset, else none for linear nets alone, else cifar10."""
    if data:
        return data, data_dir
    for entry in trained:
        config = (entry.ckpt or {}).get("config") or {}
        if config.get("data"):
            return config["data"], data_dir or config.get("data_dir")
    if all(_is_linear(e.name) for e in entries):
        return None, data_dir
    return "cifar10", data_dir


def run_signal(
    runs: Sequence[str | Path] = (),
    model: str | None = None,
    *,
    init: bool = False,
    depths: Sequence[int] | None = None,
    samples: int = 256,
    data: str | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    seed: int | None = 0,
    out: str | Path | None = "results/signal",
    overwrite: bool = False,
    force: bool = False,
    progress: SignalProgress | None = None,
    say: Callable[[str], None] = print,
    batch_size: int | None = None,
    jacobian_examples: int = 8,
    lanczos_steps: int = 20,
    probes: int = 8,
    scale: float | Sequence[float] | None = None,
    init_scheme: str | None = None,
    **model_options: Any,
) -> SignalResult:
    """The signal study (library entry point of `resx signal`; see the module docstring for what is measured).

    Nets: the runs given (run folders or checkpoint files: each saved checkpoint and the final one), plus each run's
    model and its twin freshly initialised with `seed`; or, with `model`, that model (for each of `depths`) and its
    twin freshly initialised. `init` with runs: only the fresh nets. Linear nets: `scale` (a number or a list,
    default 0.5, 1, 1.5) and `init_scheme` (scaled-identity | he | orthogonal); `model_options` (width=..., ...) go
    to the fresh nets. Data: `data`, else the first run's dataset, else Gaussian vectors for linear nets alone, else
    cifar10; `samples` un-augmented training images drawn with `seed`, processed `batch_size` at a time (default 128
    on the CPU, 500 on CUDA); the Jacobians at the first `jacobian_examples` of them. Writes the CSVs, signal_info.json
    and the figures into `out` (None: nothing written); an earlier signal study there is replaced with `overwrite`,
    refused without it. Runs that are not finished, or `data` other than a run's own, are refused unless `force`.
    """
    from resx.data import load_dataset
    from resx.engine import resolve_device

    started = time.perf_counter()
    _check_settings(samples, batch_size, jacobian_examples, lanczos_steps, probes)
    seed = 0 if seed is None else int(seed)
    model_options = {k: v for k, v in model_options.items() if v is not None}
    runs_read, fresh = _plan(runs, model, depths, data, force, scale, init_scheme, model_options)
    trained = [] if init else runs_read  # --init: the runs only name the models (and their data)
    entries = trained + fresh
    _check_batchnorm_batch(fresh, samples, batch_size)
    dev = resolve_device(device)
    earlier = guards.check_study_folder(out, "signal", overwrite) if out is not None else []
    data, data_dir = _data_for(entries, runs_read, data, data_dir)
    dataset = load_dataset(data, data_dir) if data else None
    data_options = dataset.model_options if dataset is not None else {}
    if dataset is not None:
        for entry in runs_read:
            guards.check_data_fits(entry.run, entry.name, (entry.ckpt or {}).get("model_options"), dataset,
                                   what="analyse")
        _check_batchnorm_batch(fresh, min(samples, len(dataset.train_images)), batch_size)
    guards.remove_files(earlier)  # every check passed: the earlier study goes
    settings = _Settings(samples, batch_size or (500 if dev.type == "cuda" else 128), jacobian_examples,
                         lanczos_steps, probes, seed)
    shared = _dataset_batch(dataset, samples, seed, dev) if dataset is not None else None
    say(f"signal: {len(entries)} nets ({len(trained)} trained checkpoints, {len(fresh)} at initialisation) on "
        + (shared.source if shared else "Gaussian vectors"))

    layer_frames, jacobian_frames, whole = [], [], []
    with precision(dev, tf32=False):  # strict fp32: gradients spanning many orders of magnitude
        for i, entry in enumerate(entries):
            net = _build(entry, data_options, seed)
            batch = shared or gaussian_batch(_input_width(net), samples, seed, dev)
            layers, jacobians, stack = measure_net(entry, net, batch, settings, dev, progress)
            layer_frames.append(layers)
            jacobian_frames.append(jacobians)
            whole.append(stack)
            del net
            if progress:
                progress("nets", i + 1, len(entries))
    layers = _integers(pd.concat(layer_frames, ignore_index=True)[list(LAYER_COLUMNS + LAYER_EXTRA)])
    jacobians = _integers(pd.concat(jacobian_frames, ignore_index=True)[list(JACOBIAN_COLUMNS + JACOBIAN_EXTRA)])
    linear = linear_comparison(layers, whole)
    info = _info(entries, whole, linear, settings, dev, data, shared, started)
    result = SignalResult(layers, jacobians, info, linear)
    if out is not None:
        write_signal_results(result, out)
    return result


def _integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers in the CSV (3, not 3.0), missing ones empty."""
    for column in ("index", "block", "epoch", "depth", "in_dim", "out_dim", "examples", "lanczos_steps", "probes"):
        if column in frame.columns:
            frame[column] = pd.array(frame[column].astype("Float64").round(), dtype="Int64")
    return frame


def _input_width(net: BlockNet) -> int:
    """The size of the vectors a linear net without an input projection takes (its width)."""
    first = net.blocks[0].branch[0]
    return first.in_features


def _info(entries: list[_Entry], whole: list[dict], linear: pd.DataFrame, settings: _Settings, dev: torch.device,
          data: str | None, batch: _Batch | None, started: float) -> dict[str, Any]:
    precisions = sorted({w["precision"] for w in whole})
    return {
        "data": data or "gaussian",
        "batch": batch.source if batch else f"{settings.samples} Gaussian vectors N(0, I) of the net's width, "
                                              f"labels uniform over {GAUSSIAN_CLASSES} classes",
        "samples": settings.samples,
        "batch_size": settings.batch_size,
        "jacobian_examples": settings.jacobian_examples,
        "lanczos_steps": settings.lanczos_steps,
        "probes": settings.probes,
        "seed": settings.seed,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": "fp32" if precisions == ["fp32"] else "fp32 (linear nets fp64)" if "fp32" in precisions else "fp64",
        "loss": "mean cross-entropy over the batch",
        "batchnorm": BN_NOTE,
        "jacobian": JACOBIAN_NOTE,
        "whole_net_map": WHOLE_NET_MAP,
        "whole_net": whole,
        "linear": linear.replace({np.nan: None}).to_dict("records") if len(linear) else [],
        "nets": [dict(run=e.run, model=e.name, options=e.options, trained=e.trained, checkpoint=e.checkpoint,
                      epoch=e.epoch, final=e.final, source=str(e.path) if e.path else f"fresh, seed {settings.seed}")
                 for e in entries],
        "seconds": round(time.perf_counter() - started, 3),
    }


def write_signal_results(result: SignalResult, out: str | Path) -> Path:
    """The two CSVs and signal_info.json into `out`, atomically, then the figures."""
    from resx.atomic import write_csv_atomic, write_json_atomic
    from resx.plots.signal import plot_signal

    out = Path(out)
    write_csv_atomic(out / "signal_layers.csv", result.layers)
    write_csv_atomic(out / "block_jacobians.csv", result.jacobians)
    write_json_atomic(out / INFO_NAME, result.info)
    result.out = out
    result.figures = list(plot_signal(out))
    return out
