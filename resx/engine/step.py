"""The training step: one function over static-shape device tensors, capturable whole as a CUDA graph.

Everything the step reads or writes lives in device tensors that keep their addresses (`StepState`): the epoch's
sample order and a cursor into it, the learning rate, the momentum buffers, and running sums of loss and errors.
So the host never synchronises per step: it replays the graph (or calls the eager step on the CPU) and reads the
sums once per epoch.

Randomness: at the start of each epoch, `start_epoch` draws everything random the epoch needs (sample order, crop
offsets and flips, stochastic-depth masks) from the run's own generator, into `StepState`. The step only indexes
them with the cursor. So a captured graph holds no random-number state: runs sharing one GPU never share or
reseed a generator, a run's draws depend on its seed alone, and a checkpoint holds them, so resuming is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resx.data.augment import crop_flip, draw_crop_flip, normalize
from resx.data.dataset import ImageData
from resx.engine.device import autocast, wants_channels_last
from resx.engine.graphs import capture
from resx.engine.sgd import sgd_update


@dataclass
class StepState:
    """Device tensors the step reads and updates in place."""

    order: torch.Tensor  # int64 [steps_per_epoch * batch]: this epoch's sample order
    crop_offsets: torch.Tensor  # int64 [steps_per_epoch, batch, 2]: this epoch's crop offsets (y, x)
    flips: torch.Tensor  # bool [steps_per_epoch, batch]: this epoch's horizontal flips
    keep: torch.Tensor  # float32 [steps_per_epoch, blocks]: this epoch's stochastic-depth draws (1 keeps a branch)
    cursor: torch.Tensor  # int64 []: index of the next batch within the epoch
    iteration: torch.Tensor  # int64 []: global iteration counter
    lr: torch.Tensor  # float32 []
    loss_sum: torch.Tensor  # float32 []: sum over this epoch's batches of the mean batch loss
    error_sum: torch.Tensor  # int64 []: misclassified training samples this epoch
    batch_losses: torch.Tensor  # float32 [steps_per_epoch]: each batch's mean loss this epoch (He et al. Fig. 6 curves)
    batch_errors: torch.Tensor  # int64 [steps_per_epoch]: each batch's misclassified samples this epoch
    first_bad_iteration: torch.Tensor  # int64 []: first iteration with a non-finite loss, -1 if none
    momentum_buffers: list[torch.Tensor]

    def reset_epoch_sums(self) -> None:
        self.cursor.zero_()
        self.loss_sum.zero_()
        self.error_sum.zero_()

    def tensors(self) -> dict[str, torch.Tensor]:
        names = ("order", "crop_offsets", "flips", "keep", "cursor", "iteration", "lr", "loss_sum", "error_sum",
                 "batch_losses", "batch_errors", "first_bad_iteration")
        return {k: getattr(self, k) for k in names}


class TrainStep:
    """Builds the step for one net on one dataset; `__call__` runs one step (graph replay or eager)."""

    def __init__(
        self,
        net: torch.nn.Module,
        data: ImageData,
        *,
        batch_size: int,
        momentum: float,
        weight_decay: float,
        lr: float,
        precision: str,
        augment: bool,
        device: torch.device,
        seed: int = 0,
    ):
        self.net, self.data, self.device = net, data, device
        self.batch_size, self.momentum, self.weight_decay = batch_size, momentum, weight_decay
        self.precision, self.augment = precision, augment
        self.channels_last = wants_channels_last(net) and data.train_images.dim() == 4
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.steps_per_epoch = data.train_images.shape[0] // batch_size  # the last partial batch is dropped
        if self.steps_per_epoch < 1:
            from resx.errors import ResxError

            raise ResxError(f"batch size {batch_size} is larger than the training set ({data.train_images.shape[0]} images)")
        shape = (1, data.channels, 1, 1)
        self.mean = torch.tensor(data.mean, device=device).view(shape)
        self.std = torch.tensor(data.std, device=device).view(shape)
        # Crops are padded with the mean colour (0 after normalisation), as in He et al. 2015 §4.2 (mean-subtracted
        # images padded with zeros); the common torchvision recipe pads black instead.
        self.pad_fill = torch.tensor([round(255 * m) for m in data.mean], dtype=torch.uint8, device=device)
        zeros = lambda dtype: torch.zeros((), dtype=dtype, device=device)  # noqa: E731
        # The run's own random stream (see the module docstring); its state goes into checkpoints.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        probs = net.survival_probs() if hasattr(net, "survival_probs") else []  # every zoo net is a BlockNet
        self.survival = torch.tensor(probs, dtype=torch.float32, device=device)
        self.stochastic_depth = bool((self.survival < 1.0).any())
        steps = self.steps_per_epoch
        self.state = StepState(
            order=torch.arange(steps * batch_size, device=device),
            crop_offsets=torch.zeros((steps, batch_size, 2), dtype=torch.int64, device=device),
            flips=torch.zeros((steps, batch_size), dtype=torch.bool, device=device),
            keep=torch.ones((steps, len(self.survival)), dtype=torch.float32, device=device),
            cursor=zeros(torch.int64),
            iteration=zeros(torch.int64),
            lr=torch.tensor(lr, dtype=torch.float32, device=device),
            loss_sum=zeros(torch.float32),
            error_sum=zeros(torch.int64),
            batch_losses=torch.zeros(steps, dtype=torch.float32, device=device),
            batch_errors=torch.zeros(steps, dtype=torch.int64, device=device),
            first_bad_iteration=torch.full((), -1, dtype=torch.int64, device=device),
            momentum_buffers=[torch.zeros_like(p) for p in self.params],
        )
        self.graph: torch.cuda.CUDAGraph | None = None

    # --- the step itself ------------------------------------------------------------------------------------
    def _step(self) -> None:
        s = self.state
        at = s.cursor.view(1)  # this step's row of every per-epoch draw
        batch_index = s.order.view(-1, self.batch_size).index_select(0, at).view(-1)
        images = self.data.train_images.index_select(0, batch_index)
        labels = self.data.train_labels.index_select(0, batch_index)
        if self.augment:
            images = crop_flip(images, s.crop_offsets.index_select(0, at)[0], s.flips.index_select(0, at)[0],
                               fill=self.pad_fill)
        x = normalize(images, self.mean, self.std, channels_last=self.channels_last)
        with autocast(self.device, self.precision):
            logits = self.net(x, s.keep.index_select(0, at)[0]) if self.stochastic_depth else self.net(x)
        loss = F.cross_entropy(logits.float(), labels)
        grads = torch.autograd.grad(loss, self.params)
        sgd_update(self.params, grads, s.momentum_buffers, s.lr, self.momentum, self.weight_decay)
        with torch.no_grad():
            loss = loss.detach()
            errors = (logits.argmax(dim=1) != labels).sum()
            s.loss_sum.add_(loss)
            s.error_sum.add_(errors)
            s.batch_losses.index_copy_(0, at, loss.view(1))
            s.batch_errors.index_copy_(0, at, errors.view(1))
            bad = ~torch.isfinite(loss) & (s.first_bad_iteration < 0)
            s.first_bad_iteration.copy_(torch.where(bad, s.iteration, s.first_bad_iteration))
            s.cursor.add_(1)
            s.iteration.add_(1)

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()

    # --- CUDA graph ---------------------------------------------------------------------------------------
    def capture_graph(self) -> None:
        """Capture the step as a CUDA graph. The warm-up steps change weights, BN statistics, momentum and
        counters, so all of them are saved before and restored after: training stays exactly as if eager.
        The warm-up starts from the epoch's first batch: a resumed run's cursor may stand at the end of an epoch,
        and three steps from there would index past the epoch's draws."""
        saved = [t.detach().clone() for t in self._mutable_tensors()]
        self.state.cursor.zero_()
        self.graph = capture(self._step, warmup_steps=min(3, self.steps_per_epoch))  # rows 0..2 of the epoch
        with torch.no_grad():
            for t, copy in zip(self._mutable_tensors(), saved):
                t.copy_(copy)

    def _mutable_tensors(self) -> list[torch.Tensor]:
        s = self.state
        return [
            *self.net.parameters(),
            *self.net.buffers(),
            *s.momentum_buffers,
            *s.tensors().values(),
        ]

    # --- host-side control (a few tiny launches per epoch, no synchronisation) ------------------------------
    def start_epoch(self) -> None:
        """Draw everything random this epoch needs from the run's generator, on the device, and reset the sums."""
        s, g, steps = self.state, self.generator, self.steps_per_epoch
        n = self.data.train_images.shape[0]
        s.order.copy_(torch.randperm(n, generator=g, device=self.device)[: steps * self.batch_size])
        if self.augment:
            offsets, flips = draw_crop_flip(steps, self.batch_size, generator=g, device=self.device)
            s.crop_offsets.copy_(offsets)
            s.flips.copy_(flips)
        if self.stochastic_depth:  # Huang et al. 2016: one Bernoulli draw per block per mini-batch
            s.keep.copy_(torch.rand(s.keep.shape, generator=g, device=self.device) < self.survival)
        s.reset_epoch_sums()

    def set_lr(self, lr: float) -> None:
        self.state.lr.fill_(lr)
