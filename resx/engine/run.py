"""One training run: a model, a dataset on the device, the step, the schedule, checkpoints, and its run folder
(run_folder.py says what the folder holds and the rules for resuming it).

`TrainingRun` is driven step by step (`steps()` is a generator) so that a study can interleave several runs on
one GPU, each on its own CUDA stream (see resx.engine.driver.train_many).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from resx.atomic import FolderLock, write_csv_atomic, write_json_atomic
from resx.config import PAPER_ITERATIONS, TrainConfig, milestone_iterations
from resx.data import ImageData, load_dataset
from resx.engine.device import precision_choice, resolve_device, set_cpu_threads, wants_channels_last
from resx.engine.evaluate import Evaluator
from resx.engine.step import TrainStep
from resx.engine.run_checkpoint import RunCheckpoints
from resx.engine.run_folder import (METRIC_COLUMNS, attempt_entry, check_run_folder, earlier_attempts,
                                    iteration_curve, start_folder, take_lock, update_attempt)
from resx.errors import OutputError, ResxError, TrainingDiverged
from resx.models import create_model
from resx.models.registry import check_model_options, check_training_fits
from resx.provenance import environment, now, provenance

ProgressFn = Callable[["TrainingRun", dict[str, Any] | None], None]


class TrainingRun(RunCheckpoints):
    """One run, ready to train once built: `TrainingRun(config, run_dir, ...)` checks the run folder against the
    resume rules, builds the net, its training step and its evaluator on the device, restores the checkpoint it
    resumes from, takes the folder's lock and writes config.yaml and run_info.json. Then `steps()` and
    `finish_epoch()` train it (or `train_many`), and `release_lock()` frees the folder.

    resume: 'never' (refuse an existing run unless overwrite), 'require' (--resume), 'auto' (studies).
    data: the dataset, already loaded (else it is loaded from config.data); it is moved to the run's device.
    name: the run's name in progress bars and run_info.json (default: the run folder's name).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        resume: str = "never",
        overwrite: bool = False,
        data: ImageData | None = None,
        name: str | None = None,
    ):
        cfg = self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.name = name or self.run_dir.name
        self.resume, self.overwrite = resume, overwrite
        check_model_options(cfg.model, shortcut=cfg.shortcut, block=cfg.block)
        resume_from, stamp = check_run_folder(self.run_dir, cfg, resume=resume, overwrite=overwrite)
        # the attempts that trained this run before (run_info.json's history); this one is added below
        self.history: list[dict[str, Any]] = earlier_attempts(self.run_dir) if resume_from is not None else []

        # --- the training state: a fresh run's, replaced by the checkpoint's when resuming (`_restore`) ---
        self.status = "new"  # new, running, finished, interrupted, diverged, failed (run_info.json's status)
        self.metrics: list[dict[str, Any]] = []  # metrics.csv's rows, one per epoch done
        self.epoch = 0  # completed epochs
        self.host_iteration = 0  # iterations done: mirror of the device counter, kept without synchronising
        self.warmup_done = cfg.warmup_lr is None
        self.elapsed = 0.0  # seconds spent training and evaluating, over every epoch done
        self.resumed_from_device: str | None = None  # the device type a checkpoint from another one was made on
        # every batch's loss and misclassified count so far, and its lr, for iterations.csv (kept in checkpoints)
        self.batch_losses: list[float] = []
        self.batch_errors: list[int] = []
        self.batch_lrs: list[float] = []
        self.length_changes: list[dict[str, Any]] = []  # --epochs/--iterations changed on --resume (recorded)
        self._cursor = 0  # steps done in the current epoch (host copy)
        self._steps_this_epoch = 0  # steps the current epoch has: set by `steps()`, read by `finish_epoch()`
        self._epoch_started: float | None = None  # perf_counter() when this process began the current epoch's steps
        self._resumed_epoch_seconds = 0.0  # seconds of the current epoch trained before a mid-epoch resume
        self._lock: FolderLock | None = None  # the run folder's lock while this run writes there (`release_lock`)

        # --- the device and the data ---
        self.device = resolve_device(cfg.device)
        self.precision, self.precision_reason = precision_choice(cfg.precision, self.device)
        self.threads = set_cpu_threads(cfg.threads) if self.device.type == "cpu" else None  # CPU threads set
        torch.manual_seed(cfg.seed)  # the initial weights; training's own draws come from the step's generator
        self.data = self._data_on_device(data)
        # weights, gradients, momentum and a batch's activations that cannot fit are refused before the net is built
        check_training_fits(cfg.model, {**self.data.model_options, **cfg.model_options()},
                            tuple(self.data.train_images.shape[1:]), cfg.batch_size, self.device)
        # CUDA: this run's own stream (see train_many); None elsewhere
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        memory_before = self._reset_memory_stats()

        # --- the net, its step and its evaluator, on the run's stream ---
        self.total_iterations: int | None = None  # known once the step knows its steps per epoch (just below)
        try:
            with self._on_stream():
                self.net, self.channels_last = self._build_net()
                self.step = self._build_step()
                self.total_iterations = self._total_iterations()
                self.total_epochs = math.ceil(self.total_iterations / self.step.steps_per_epoch)
                self.evaluator = Evaluator(
                    self.net, self.data, batch_size=cfg.eval_batch_size, precision=self.precision,
                    device=self.device, use_graph=cfg.graph,
                )
                if resume_from is not None:
                    self.length_changes = self._length_changes(resume_from)
                    self._lock = take_lock(self.run_dir, stamp)  # before _restore rewrites metrics.csv
                    self._restore(resume_from)
                if self.device.type == "cuda" and cfg.graph and not self.done:  # a finished run needs no graphs
                    self.step.capture_graph()
                    self.evaluator.prepare()
        except torch.OutOfMemoryError:
            raise ResxError(
                f"CUDA out of memory building {cfg.model} at batch size {cfg.batch_size}; "
                "try a smaller --batch-size or fewer concurrent runs (--concurrency)"
            ) from None
        # GPU memory this run took to build and capture (0 on the CPU)
        self.memory_mb = (
            (torch.cuda.max_memory_allocated(self.device) - memory_before) / 2**20 if self.device.type == "cuda" else 0.0
        )
        self.graphed = self.device.type == "cuda" and cfg.graph  # how this run trains (graphs are freed when done)

        # --- every check passed: from here on this process writes the folder, alone ---
        if self._lock is None:
            self._lock = take_lock(self.run_dir, stamp)
        start_folder(self.run_dir, cfg, self.overwrite)
        self.env = environment(self.device)  # versions, device name, git commit: run_info.json's top level
        self.provenance = provenance(self.device, self.precision, self.threads)
        self.history.append(attempt_entry(self.provenance, start=self.provenance["time"],
                                          iterations_at_start=self.host_iteration))
        self.status = "running"
        self._write_info()

    def setup(self) -> "TrainingRun":
        """The run is set up when it is built; kept so that `TrainingRun(...).setup()` still works. Returns self."""
        return self

    def _data_on_device(self, given: ImageData | None) -> ImageData:
        cfg = self.config
        data = given or load_dataset(cfg.data, cfg.data_dir)
        if cfg.batch_size > data.train_images.shape[0]:
            raise ResxError(f"batch size {cfg.batch_size} is larger than the training set ({data.train_images.shape[0]} images)")
        data = data.to(self.device)
        if self.device.type == "cuda":
            # The data was copied on the default stream; this run works on its own stream (see train_many).
            torch.cuda.synchronize(self.device)
            torch.backends.cudnn.benchmark = True  # fixed shapes: autotune once, in the graph's warm-up
        return data

    def _reset_memory_stats(self) -> int:
        """CUDA: the memory allocated now, with the peak statistics reset (0 elsewhere). Peak, not current,
        allocation is what a run costs: a captured graph's memory pool counts as free once capture ends."""
        if self.device.type != "cuda":
            return 0
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def _build_net(self) -> tuple[Any, bool]:
        """The net on the device, in training mode, and whether it is channels-last."""
        cfg = self.config
        net = create_model(cfg.model, **self.data.model_options, **cfg.model_options()).to(self.device)
        channels_last = wants_channels_last(net)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        net.train()
        return net, channels_last

    def _build_step(self) -> TrainStep:
        cfg = self.config
        augment = self.data.augment if cfg.augment is None else cfg.augment
        return TrainStep(
            self.net, self.data, batch_size=cfg.batch_size, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, lr=self.lr_at(0), precision=self.precision,
            augment=augment, device=self.device, seed=cfg.seed,
        )

    def _length_changes(self, ckpt: dict[str, Any]) -> list[dict[str, Any]]:
        """--epochs or --iterations on --resume: no fewer iterations than are done; returns the checkpoint's record
        of length changes, with this one added if the length changed."""
        changes = list(ckpt.get("length_changes", []))
        saved = ckpt["config"]
        spe = self.step.steps_per_epoch
        before = saved.get("iterations") or (saved["epochs"] * spe if saved.get("epochs") else PAPER_ITERATIONS)
        done = ckpt["iteration"]
        if self.total_iterations < done:
            asked = (f"--iterations {self.config.iterations}" if self.config.iterations is not None
                     else f"--epochs {self.config.epochs}" if self.config.epochs is not None
                     else f"the default {PAPER_ITERATIONS} iterations")
            raise ResxError(
                f"{self.run_dir} has trained {done} iterations ({ckpt['epoch']} epochs of {spe}); {asked} is "
                f"{self.total_iterations} iterations, fewer than done: give at least --epochs {math.ceil(done / spe)} "
                f"(or --iterations {done}), or start again with --overwrite"
            )
        if self.total_iterations != before:
            changes.append({"at_iteration": done, "from_iterations": before, "to_iterations": self.total_iterations,
                            "epochs": self.config.epochs, "iterations": self.config.iterations})
        return changes

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _total_iterations(self) -> int:
        cfg = self.config
        if cfg.iterations is not None:
            return cfg.iterations
        if cfg.epochs is not None:
            return cfg.epochs * self.step.steps_per_epoch
        return PAPER_ITERATIONS

    def _on_stream(self):
        import contextlib

        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    # --- schedule --------------------------------------------------------------------------------------
    def lr_at(self, iteration: int) -> float:
        """Step schedule: lr x lr_decay at each milestone (fractions of training), after the optional warm-up."""
        cfg = self.config
        if not self.warmup_done:
            return cfg.warmup_lr  # type: ignore[return-value]
        total = self.total_iterations or self._fallback_total()  # None only while the step is being built
        passed = sum(iteration >= at for at in milestone_iterations(cfg.lr_milestones, total))
        return float(f"{cfg.lr * cfg.lr_decay**passed:.12g}")  # 0.001, not 0.0010000000000000002

    def _fallback_total(self) -> int:
        """The length `lr_at` assumes before the steps per epoch are known (only for the step's initial lr, which
        `steps()` sets again before the first step)."""
        return self.config.iterations or PAPER_ITERATIONS

    def _epoch_seconds_so_far(self) -> float:
        if self._epoch_started is None:
            return 0.0
        return self._resumed_epoch_seconds + time.perf_counter() - self._epoch_started

    # --- files -----------------------------------------------------------------------------------------
    def _write_metrics(self) -> None:
        import pandas as pd

        write_csv_atomic(self.run_dir / "metrics.csv", pd.DataFrame(self.metrics, columns=METRIC_COLUMNS))
        write_csv_atomic(self.run_dir / "iterations.csv", self.iteration_curve())

    def iteration_curve(self):
        """The rows of iterations.csv from the batch history (see the module docstring)."""
        return iteration_curve(self.batch_losses, self.batch_errors, batch_size=self.config.batch_size,
                               every=self.config.curve_every, window=self.config.curve_window,
                               lrs=self.batch_lrs, steps_per_epoch=self.step.steps_per_epoch)

    def _write_info(self, **extra: Any) -> None:
        update_attempt(self.history[-1], end=now(), status=self.status, iterations_done=self.host_iteration)
        info = {
            "name": self.name,
            "status": self.status,
            "seed": self.config.seed,
            "model": self.config.model,
            "parameters": self.net.num_parameters(),
            "residual": self.net.residual,
            "blocks": len(self.net.blocks),
            "dataset": self.data.describe(),
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "channels_last": self.channels_last,
            **({"cpu_threads": self.threads} if self.threads else {}),
            "cuda_graph": self.graphed,
            "iteration_means": f"one batch of {self.config.batch_size} training images",
            "total_iterations": self.total_iterations,
            "steps_per_epoch": self.step.steps_per_epoch,
            "epochs_done": self.epoch,
            "iterations_done": self.host_iteration,
            "memory_mb": round(self.memory_mb, 1),
            "elapsed_seconds": round(self.elapsed, 2),
            **({"resumed_from_device": self.resumed_from_device} if self.resumed_from_device else {}),
            **({"length_changes": self.length_changes} if self.length_changes else {}),
            **self.env,
            "provenance": self.provenance,
            "started": self.history[0].get("start") or self.provenance["time"],  # the run's first attempt
            "history": self.history,  # one entry per attempt (process) that trained this run
            **extra,
        }
        write_json_atomic(self.run_dir / "run_info.json", info)

    # --- training --------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Every step taken AND the last epoch evaluated and logged: a run stopped after its last step but before
        `finish_epoch` (a signal in between) is not done; resumed, it logs that epoch first."""
        return self.host_iteration >= self.total_iterations and self._cursor == 0

    def steps(self) -> Iterator[None]:
        """Enqueue the steps of the current epoch one by one (yielding after each); then `finish_epoch`.

        The CUDA stream is entered around each step, never held across a `yield`: the current stream is global
        state, and `train_many` resumes other runs' generators in between. Nothing here touches a global random
        generator: the step's draws come from the run's own (engine/step.py)."""
        steps_this_epoch = min(self.step.steps_per_epoch, self.total_iterations - (self.host_iteration - self._cursor))
        self._steps_this_epoch = steps_this_epoch
        current_lr = self.lr_at(self.host_iteration)
        with self._on_stream():
            if self._cursor == 0:
                self.step.start_epoch()
            self._epoch_started = time.perf_counter()
            self.step.set_lr(current_lr)
        while self._cursor < steps_this_epoch:
            with self._on_stream():
                lr = self.lr_at(self.host_iteration)
                if lr != current_lr:
                    self.step.set_lr(lr)
                    current_lr = lr
                self.step()
            self._cursor += 1
            self.host_iteration += 1
            yield

    def finish_epoch(self) -> dict[str, Any]:
        """Read the epoch's sums (one synchronisation), evaluate, log, checkpoint."""
        s = self.step.state
        steps = self._steps_this_epoch
        with self._on_stream():
            loss_sum, error_sum, first_bad = (float(s.loss_sum), int(s.error_sum), int(s.first_bad_iteration))
            train_seconds = self._epoch_seconds_so_far()
            if first_bad >= 0 or not math.isfinite(loss_sum):
                self._diverged(first_bad if first_bad >= 0 else self.host_iteration)
            test_loss, test_error = self.evaluator()
            if not math.isfinite(test_loss):  # weights blown up without a NaN in training (e.g. lr 1e30)
                self._diverged(self.host_iteration, what="test loss")
        seconds = self._epoch_seconds_so_far()
        self.elapsed += seconds
        self.epoch += 1
        train_error = error_sum / (steps * self.config.batch_size)
        # the curve of He et al. Fig. 6: every batch's loss and errors, and the lr it trained with (read before
        # the warm-up may end below)
        first = self.host_iteration - steps
        self.batch_losses += [round(v, 5) for v in s.batch_losses[:steps].tolist()]
        self.batch_errors += s.batch_errors[:steps].tolist()
        self.batch_lrs += [self.lr_at(i) for i in range(first, self.host_iteration)]
        lr_start, lr = self.batch_lrs[-steps], self.batch_lrs[-1]  # `lr`: the lr this epoch ended with
        if not self.warmup_done and train_error < self.config.warmup_until_train_error:
            self.warmup_done = True  # He et al. 2015 §4.2: back to lr 0.1 once training error < 80%
        row = {
            "epoch": self.epoch,
            "iteration": self.host_iteration,
            "lr": lr,
            "train_loss": loss_sum / steps,
            "train_error": train_error,
            "test_loss": test_loss,
            "test_error": test_error,
            "seconds": round(seconds, 3),
            "images_per_second": round(steps * self.config.batch_size / max(train_seconds, 1e-9), 1),
            "elapsed_seconds": round(self.elapsed, 3),
            "batch_size": self.config.batch_size,
            "lr_start": lr_start,
            "lr_end": lr,
        }
        self.metrics.append(row)
        self._cursor, self._epoch_started, self._resumed_epoch_seconds = 0, None, 0.0
        if self.done:
            self.status = "finished"
        self._write_metrics()
        self._save_epoch_checkpoint()
        self._write_info()
        return row

    def _diverged(self, iteration: int, what: str = "loss") -> None:
        epoch = self.epoch + 1
        self.status = "diverged"
        last_good = self.epoch
        self._write_info(diverged_at={"epoch": epoch, "iteration": iteration}, last_good_checkpoint_epoch=last_good)
        where = f"checkpoint.pt of epoch {last_good} kept" if last_good else "no checkpoint was written"
        raise TrainingDiverged(
            f"{what} became NaN or infinite at epoch {epoch}, iteration {iteration} (lr {self.lr_at(iteration):g}) "
            f"in {self.run_dir}; {where}; lower --lr and start again with --overwrite"
        )

    def release_graphs(self) -> None:
        """A finished run lets go of its captured graphs, whose memory pools hold most of its GPU memory, so
        the runs queued after it get that memory. Its weights stay (`run.net`) for whoever called train."""
        self.step.graph = None
        self.evaluator.release()

    def mark_failed(self) -> None:
        """A fault outside the run (its folder became unwritable): status `failed` in run_info.json where it can
        still be written; checkpoint.pt stays the last good one."""
        self.status = "failed"
        try:
            self._write_info()
        except OutputError:
            pass

    def stop_after_fault(self) -> None:
        """Another run of the same process hit a fault: checkpoint this one as if interrupted (or mark it failed
        when its own folder cannot be written either)."""
        try:
            self.save_interrupted()
        except OutputError:
            self.mark_failed()

    def save_interrupted(self) -> None:
        """Ctrl-C: wait for the queued steps, then save a mid-epoch checkpoint that resumes exactly."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.status = "interrupted"
        self._save_checkpoint()
        self._write_info()
