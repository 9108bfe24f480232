"""Functional SGD with momentum and weight decay, with the learning rate in a device tensor.

Same update as torch.optim.SGD (dampening 0, no Nesterov), which tests/test_engine.py checks step for step:
    d = g + weight_decay * p ;  buf = momentum * buf + d ;  p = p - lr * buf
(buffers start at zero, so the first step gives buf = d, as torch.optim.SGD's clone of d).
Keeping lr in a tensor lets a captured CUDA graph read a new value each replay with no re-capture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def sgd_update(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    momentum_buffers: Sequence[torch.Tensor],
    lr: torch.Tensor,
    momentum: float,
    weight_decay: float,
) -> None:
    params, grads, bufs = list(params), list(grads), list(momentum_buffers)
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        step = bufs
    else:
        step = grads
    torch._foreach_add_(params, torch._foreach_mul(step, -lr))
