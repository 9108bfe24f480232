"""Jacobian spectra without the Jacobian: singular-value estimates of a block's input-output Jacobian J from
products alone (J v by torch.func.jvp, J^T u by torch.func.vjp): the extreme eigenvalues of J^T J by Lanczos, and
||J - I||_F by Hutchinson's estimate (see resx.studies.signal.compute for what is measured and why).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from resx.models.net import BlockNet
from resx.studies.common import analysis_mode

JACOBIAN_NOTE = ("per example (eval-mode BN: the batch Jacobian is block diagonal), mean over the examples; "
                 "sigma_max and sigma_min_est: extreme Ritz values of Lanczos (full reorthogonalisation) on J^T J, or "
                 "J J^T when the block has fewer outputs than inputs, via torch.func.jvp/vjp; sigma_min_est is an upper "
                 "bound on sigma_min; dist_identity = ||J - I||_F / sqrt(dim) by Hutchinson's estimate (exact with basis "
                 "probes when dim <= probes), only where input and output shapes match")
WHOLE_NET_MAP = "stem output (first block's input) -> last block's output: the product of the block Jacobians"


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
