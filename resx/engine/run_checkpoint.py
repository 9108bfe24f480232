"""What a training run saves and restores: its checkpoint (resx.engine.checkpoint says what one holds), written
after every epoch and on Ctrl-C, and read back on --resume so that the run continues exactly.

`RunCheckpoints` is the part of `TrainingRun` (resx.engine.run) that does this; it uses the run's state
(net, step, counters, metrics, batch history) and writes only checkpoint files.
"""

from __future__ import annotations

from typing import Any

import torch

from resx.atomic import save_torch_atomic
from resx.engine import checkpoint as ckpt_io
from resx.engine.run_folder import epoch_checkpoint_path
from resx.errors import ResxError
from resx.text import reason


class RunCheckpoints:
    """Checkpoints of a TrainingRun (a base class of it: every attribute used here is set by TrainingRun)."""

    def _checkpoint(self) -> dict[str, Any]:
        s = self.step.state
        # the run's own generator (see engine/step.py); its state's format depends on the device type
        rng = {"step": self.step.generator.get_state(), "device": self.device.type}
        return {
            "format": ckpt_io.FORMAT,
            "version": ckpt_io.VERSION,
            "config": self.config.to_dict(),
            "model_name": self.net.model_name,
            "model_options": self.net.model_options,
            "model_state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "momentum_buffers": [b.detach().cpu() for b in s.momentum_buffers],
            "step_state": {k: v.detach().cpu() for k, v in s.tensors().items()},
            "epoch": self.epoch,
            "iteration": self.host_iteration,
            "cursor": self._cursor,
            "epoch_seconds_so_far": self._epoch_seconds_so_far(),
            "elapsed": self.elapsed,
            "warmup_done": self.warmup_done,
            "rng": rng,
            "metrics": self.metrics,
            "batch_losses": self.batch_losses,
            "batch_errors": self.batch_errors,
            "batch_lrs": self.batch_lrs,
            "dataset": self.data.describe(),
            "length_changes": self.length_changes,
        }

    def _save_checkpoint(self) -> None:
        save_torch_atomic(self.run_dir / ckpt_io.CHECKPOINT_NAME, self._checkpoint())

    def _save_epoch_checkpoint(self) -> None:
        """The end of an epoch: checkpoint.pt, and with `save_every` N, every N-th epoch a copy that stays
        (checkpoints/epoch-NNN.pt). The copy is written first: a run killed in between resumes from the epoch
        before and writes the same copy again."""
        ckpt = self._checkpoint()
        every = self.config.save_every
        if every and self.epoch % every == 0:
            save_torch_atomic(epoch_checkpoint_path(self.run_dir, self.epoch), ckpt)
        save_torch_atomic(self.run_dir / ckpt_io.CHECKPOINT_NAME, ckpt)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        try:
            self.net.load_state_dict(ckpt["model_state"])
            with torch.no_grad():
                for buf, saved in zip(self.step.state.momentum_buffers, ckpt["momentum_buffers"], strict=True):
                    buf.copy_(saved)
                for key, tensor in self.step.state.tensors().items():
                    if key in ("batch_losses", "batch_errors") and key not in ckpt["step_state"]:
                        continue  # a checkpoint from before iterations.csv: the curve starts at the resume
                    tensor.copy_(ckpt["step_state"][key])
        except (KeyError, RuntimeError, ValueError) as e:
            raise ResxError(f"checkpoint in {self.run_dir} does not fit this run ({reason(e)})") from None
        self.epoch, self.host_iteration = ckpt["epoch"], ckpt["iteration"]
        self._cursor = ckpt["cursor"]
        self._resumed_epoch_seconds = ckpt.get("epoch_seconds_so_far", 0.0)
        self.elapsed = ckpt["elapsed"]
        self.warmup_done = ckpt["warmup_done"]
        self.metrics = list(ckpt["metrics"])
        self.batch_losses = list(ckpt.get("batch_losses", []))
        self.batch_errors = list(ckpt.get("batch_errors", []))
        self.batch_lrs = list(ckpt.get("batch_lrs", []))
        rng = ckpt.get("rng", {})
        if "step" not in rng:
            raise ResxError(f"checkpoint in {self.run_dir} has no random state for its training step; it was written "
                            "by an older resx: start the run again with --overwrite")
        if rng.get("device") == self.device.type:
            self.step.generator.set_state(rng["step"])
        else:
            # Started on another device type (CPU and CUDA generators keep different states): the current epoch's
            # draws are restored above; later epochs draw from a generator seeded from (seed, iteration).
            self.step.generator.manual_seed(self.config.seed * 1_000_003 + self.host_iteration)
            self.resumed_from_device = rng.get("device", "unknown")
        # metrics.csv may hold a row written after this checkpoint's epoch (killed in between): rewrite it.
        self._write_metrics()

