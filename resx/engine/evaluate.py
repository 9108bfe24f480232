"""Evaluation on the whole test set (every image; the last batch is padded and masked), in eval mode.

On CUDA the forward pass of one batch is captured as a graph and replayed over the test set, so evaluating
ResNet-110 costs a handful of launches, not thousands. `Evaluator` also takes a different forward function
(for lesioned nets: `lambda x: net.forward_with(x, deleted=...)`).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from resx.data.augment import normalize
from resx.data.dataset import ImageData
from resx.engine.device import autocast, wants_channels_last
from resx.engine.graphs import capture


class Evaluator:
    def __init__(
        self,
        net: torch.nn.Module,
        data: ImageData,
        *,
        batch_size: int = 1000,
        precision: str = "fp32",
        device: torch.device,
        use_graph: bool = False,
        split: str = "test",
    ):
        self.net, self.device, self.precision = net, device, precision
        self.images = data.test_images if split == "test" else data.train_images
        self.labels = data.test_labels if split == "test" else data.train_labels
        n = self.images.shape[0]
        self.batch_size = min(batch_size, n)
        self.channels_last = wants_channels_last(net) and self.images.dim() == 4
        shape = (1, data.channels, 1, 1)
        self.mean = torch.tensor(data.mean, device=device).view(shape)
        self.std = torch.tensor(data.std, device=device).view(shape)
        self.use_graph = use_graph and device.type == "cuda"
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        if self.use_graph:
            b = self.batch_size
            self.static_images = torch.zeros((b, *self.images.shape[1:]), dtype=self.images.dtype, device=device)
            self.static_labels = torch.zeros(b, dtype=torch.int64, device=device)
            self.static_valid = torch.zeros(b, dtype=torch.bool, device=device)
            self.static_loss = torch.zeros((), device=device)
            self.static_errors = torch.zeros((), dtype=torch.int64, device=device)

    def _batch_stats(self, forward, images, labels, valid=None):
        x = normalize(images, self.mean, self.std, channels_last=self.channels_last)
        with autocast(self.device, self.precision):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), labels, reduction="none")
        wrong = logits.argmax(dim=1) != labels
        if valid is not None:  # padding rows hold stale images: drop them (where, not *, since inf * 0 is NaN)
            loss, wrong = torch.where(valid, loss, 0.0), wrong & valid
        return loss.sum(), wrong.sum()

    @torch.no_grad()
    def __call__(self, forward: Callable[[torch.Tensor], torch.Tensor] | None = None, key: int = 0) -> tuple[float, float]:
        """(mean loss, error fraction) over the split. `key` names a forward function for graph reuse:
        only pass a new `forward` with a new key."""
        forward = forward or self.net
        with self._eval_mode():
            n = self.images.shape[0]
            total_loss = torch.zeros((), device=self.device)
            total_errors = torch.zeros((), dtype=torch.int64, device=self.device)
            if self.use_graph:
                graph = self._graph_for(key, forward)
            for start in range(0, n, self.batch_size):
                end = min(start + self.batch_size, n)
                if self.use_graph:
                    count = end - start
                    self.static_images[:count].copy_(self.images[start:end])
                    self.static_labels[:count].copy_(self.labels[start:end])
                    self.static_valid.copy_(torch.arange(self.batch_size, device=self.device) < count)
                    graph.replay()
                    total_loss += self.static_loss
                    total_errors += self.static_errors
                else:
                    loss, errors = self._batch_stats(forward, self.images[start:end], self.labels[start:end])
                    total_loss += loss
                    total_errors += errors
            return float(total_loss) / n, int(total_errors) / n

    @torch.no_grad()
    def prepare(self) -> None:
        """Capture the graph of the plain net's evaluation now (else: at the first evaluation), so that the
        memory it takes is counted where the caller measures a run's memory."""
        if self.use_graph:
            with self._eval_mode():
                self._graph_for(0, self.net)

    @contextlib.contextmanager
    def _eval_mode(self):
        """The net in eval mode (BatchNorm running statistics) for the block, then back as it was."""
        was_training = self.net.training
        self.net.eval()
        try:
            yield
        finally:
            self.net.train(was_training)

    def release(self) -> None:
        """Let go of the captured graphs (and their memory pools); they are captured again when needed."""
        self._graphs.clear()

    def _graph_for(self, key: int, forward) -> torch.cuda.CUDAGraph:
        if key not in self._graphs:

            def step() -> None:
                loss, errors = self._batch_stats(forward, self.static_images, self.static_labels, self.static_valid)
                self.static_loss.copy_(loss)
                self.static_errors.copy_(errors)

            self._graphs[key] = capture(step, warmup_steps=2)
        return self._graphs[key]
