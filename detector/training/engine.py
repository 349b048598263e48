"""One training epoch and one validation pass, and the objects an optimizer step touches.

    parts = build_train_parts(model, loss_fn, cfg.train, device=device, steps_per_epoch=63)
    state = TrainState(planned_epochs=cfg.train.epochs)
    stats = train_one_epoch(parts, loader, state, cfg.train, epoch=0, planned_epochs=40,
                            nan_guard=NanGuard("skip", 20))
    metrics = validate(parts.eval_model, val_loader, val_split, cfg, device=parts.device)

    epoch = TrainingEpoch(parts, loader, state, cfg.train, epoch=0, planned_epochs=40,
                          nan_guard=NanGuard("skip", 20))
    for step_loss in epoch:        # the trainer's form: it acts between optimizer steps
        ...
    stats = epoch.stats()

A step: forward under autocast (CUDA AMP only), loss, backward (scaled for fp16),
and every `train.accumulate` micro-batches `optimizer_step`: set the planned lr,
unscale, clip the global gradient norm, and step optimizer and EMA unless the loss
or the gradients are not finite (the NaN guard).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from detector.config import Config, TrainConfig
from detector.data.record import SplitRecords
from detector.model.precision import amp_dtype_for, autocast
from detector.training.distributed import DistInfo, any_rank_true, unwrap_model
from detector.training.optim import (
    LrPlan,
    ModelEMA,
    build_optimizer,
    lr_at,
    lr_plan,
    set_learning_rate,
)

SINGLE_PROCESS = DistInfo()  # the default: no torch.distributed


class NonFiniteLossError(RuntimeError):
    """Training stopped on a non-finite loss or gradient (`train.nan_policy`)."""


class ValidationStopped(Exception):
    """`validate` stopped before its end because `should_stop` said so (a stop signal)."""


class _StoppableBatches:
    """The validation batches, raising ValidationStopped as soon as `should_stop()` is true."""

    def __init__(self, loader: Any, should_stop: Callable[[], bool]) -> None:
        self.loader, self.should_stop = loader, should_stop

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        for batch in self.loader:
            if self.should_stop():
                raise ValidationStopped
            yield batch


class NanGuard:
    """Counts consecutive skipped steps and decides when to give up.

    nan_policy "stop": the first non-finite step raises. "skip": the step is
    dropped (no optimizer or EMA update); `max_skips` in a row raise, because a
    run that keeps diverging will not recover by itself.
    """

    def __init__(self, policy: str, max_skips: int) -> None:
        self.policy = policy
        self.max_skips = max_skips
        self.consecutive = 0
        self.total = 0

    def record(self, finite: bool, where: str) -> None:
        """Note one optimizer step's outcome; raise NonFiniteLossError to stop."""
        if finite:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total += 1
        if self.policy == "stop":
            raise NonFiniteLossError(
                f"non-finite loss or gradients at {where}; stopping (train.nan_policy=stop)"
            )
        if self.consecutive >= self.max_skips:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive non-finite steps up to {where}; stopping "
                f"(train.max_nan_skips={self.max_skips}); lower train.lr or check the data"
            )


def _to_device(
    batch: dict[str, Any], device: torch.device
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images = batch["images"].to(device, non_blocking=True)
    targets = [
        {key: value.to(device, non_blocking=True) for key, value in target.items()}
        for target in batch["targets"]
    ]
    return images, targets


@dataclass
class TrainState:
    """Counters of a run; saved in last.pt so a resume continues exactly."""

    planned_epochs: int  # train.epochs, or what the time budget re-planned
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken (the schedule's x axis)
    best_ap: float = -1.0  # -1: not validated yet
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    elapsed_s: float = 0.0  # wall clock spent, summed over resumes (time budget)
    finished: bool = False
    # train.close_mosaic switched mosaic off: it stays off, whatever a later plan says.
    mosaic_closed: bool = False
    # train.progressive reached model.image_size: it stays there, whatever a later plan says.
    full_size_reached: bool = False


@dataclass
class EpochProgress:
    """How far the current epoch got: saved in a mid-epoch last.pt so a resume continues there.

    Counts cover completed optimizer steps only (a stop always falls on a step
    boundary), so `batches_done` micro-batches are skipped when resuming and the
    epoch's means in results.csv come out as in an uninterrupted run.
    """

    batches_done: int = 0  # micro-batches of this epoch behind completed optimizer steps
    sums: dict[str, float] = field(
        default_factory=dict
    )  # loss term -> sum over finite micro-batches
    finite_batches: int = 0
    skipped_steps: int = 0
    images_seen: int = 0  # by this rank
    nan_streak: int = 0  # consecutive non-finite steps (the NaN guard's count)


@dataclass
class TrainParts:
    """The objects one optimizer step touches."""

    model: nn.Module  # wrapped in DistributedDataParallel under torchrun
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    plan: LrPlan  # the learning rate of every step (`optim.lr_at`)
    scaler: torch.amp.GradScaler  # enabled only for fp16 AMP on CUDA
    ema: ModelEMA | None
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    steps_per_epoch: int
    # `torch.compile(model)` when train.compile is on and a compiler is present; else
    # None and the step calls `model` itself. Weights and state dicts stay `model`'s.
    compiled: Callable[[torch.Tensor], torch.Tensor] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The training forward: the compiled model when there is one."""
        return (self.compiled or self.model)(images)

    @property
    def eval_model(self) -> nn.Module:
        """The weights used for validation and best.pt: EMA when enabled."""
        return self.ema.module if self.ema is not None else unwrap_model(self.model)


def optimizer_step(
    parts: TrainParts,
    train_cfg: TrainConfig,
    step: int,
    loss_finite: bool,
    dist: DistInfo = SINGLE_PROCESS,
) -> bool:
    """Apply the accumulated gradients at the planned lr of `step`; False when skipped.

    Skipped (no optimizer or EMA update, gradients dropped) when the loss on any rank
    or the gradient norm is not finite; an fp16 overflow is the scaler's to skip.
    """
    set_learning_rate(parts.optimizer, lr_at(step, parts.plan))
    parts.scaler.unscale_(parts.optimizer)  # true gradients for clipping (no-op without fp16)
    parameters = [p for p in parts.model.parameters() if p.requires_grad]
    max_norm = train_cfg.grad_clip if train_cfg.grad_clip else math.inf  # inf: measure only
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    # An fp16 overflow with a finite loss is routine: the scaler skips the step and
    # lowers its scale. Anything else non-finite is the guard's business. Gradients
    # are all-reduced, but the loss is per rank: agree on one decision.
    grads_bad = not bool(torch.isfinite(grad_norm)) and not parts.scaler.is_enabled()
    bad = any_rank_true(not loss_finite or grads_bad, dist, parts.device)
    if bad:
        parts.scaler.update()  # resets the scaler's per-step bookkeeping after unscale_
    else:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        if parts.ema is not None:
            parts.ema.update(unwrap_model(parts.model))
    parts.optimizer.zero_grad(set_to_none=True)
    return not bad


def compiler_missing(device: torch.device) -> str | None:
    """Why `torch.compile` cannot run on `device` here, or None when it can."""
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "triton is not installed"
    if device.type != "cpu":
        return f"torch.compile is not used on {device.type}"
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(name and shutil.which(name) for name in compilers):
        return "no C++ compiler (g++, c++, clang++ or $CXX) on PATH"
    return None


def compile_for_training(
    model: nn.Module, device: torch.device, log: Callable[[str], None]
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """`torch.compile(model)` for the training step, or None (eager) with one line saying why."""
    reason = compiler_missing(device)
    if reason is not None:
        log(f"train.compile: off, {reason}; training runs eager")
        return None
    # Each new input size compiles again; dynamic=None lets inductor generalise the
    # batch dimension after the first recompile (the last, smaller batch of an epoch).
    return torch.compile(model)


def build_train_parts(
    model: nn.Module,
    loss_fn: nn.Module,
    train_cfg: TrainConfig,
    *,
    device: torch.device,
    steps_per_epoch: int,
) -> TrainParts:
    """Optimizer, lr plan, scaler and EMA for an (unwrapped) model already on `device`.

    Args:
        model: the detector, on `device`.
        loss_fn: its loss module.
        train_cfg: the train section.
        device: training device.
        steps_per_epoch: optimizer steps per epoch (batches / accumulate, rounded up).
    """
    amp_dtype = amp_dtype_for(train_cfg, device)
    return TrainParts(
        model=model,
        loss_fn=loss_fn,
        optimizer=build_optimizer(model, train_cfg),
        plan=lr_plan(train_cfg, steps_per_epoch=steps_per_epoch),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        ema=ModelEMA(model, decay=train_cfg.ema_decay) if train_cfg.ema else None,
        device=device,
        amp_dtype=amp_dtype,
        steps_per_epoch=steps_per_epoch,
    )


class TrainingEpoch:
    """One pass over `loader`, as an iterator over its optimizer steps.

    Iterating trains; after each optimizer step (weights, `state.step` and
    `progress` updated) it yields that step's mean loss, so the caller can act
    between steps (log it, save, stop on a signal or the time budget) by leaving the
    loop. `stats()` then summarises the micro-batches trained in this call.
    """

    def __init__(
        self,
        parts: TrainParts,
        loader: torch.utils.data.DataLoader,
        state: TrainState,
        train_cfg: TrainConfig,
        *,
        epoch: int,
        planned_epochs: int,
        nan_guard: NanGuard,
        dist: DistInfo = SINGLE_PROCESS,
        show_progress: bool = True,
        progress: EpochProgress | None = None,
    ) -> None:
        """Args:
        parts: model (maybe DDP-wrapped), loss, optimizer, lr plan, scaler, EMA.
        loader: training batches (see docs/internals.md, "Batches"); when resuming
            inside an epoch, already without the `progress.batches_done` consumed ones.
        state: run counters; `state.step` is the lr plan's position.
        train_cfg: accumulate, grad_clip.
        epoch: 0-based index of this epoch (for the bar and messages).
        planned_epochs: shown in the bar.
        nan_guard: decides skip or stop on non-finite steps.
        dist: this process's rank info (the bar shows on rank 0 only).
        show_progress: draw the tqdm bar (rank 0 only in any case).
        progress: the epoch's counters, updated in place after every optimizer step
            (what a mid-epoch checkpoint saves); a resumed epoch passes the saved ones.
        """
        self.parts, self.loader, self.state, self.train_cfg = parts, loader, state, train_cfg
        self.epoch, self.planned_epochs = epoch, planned_epochs
        self.nan_guard, self.dist, self.show_progress = nan_guard, dist, show_progress
        self.progress = progress if progress is not None else EpochProgress()
        self.stopped_early = False  # the caller left the loop before the loader's end
        self._sums: dict[str, float] = defaultdict(float, self.progress.sums)
        self._finite_batches = self.progress.finite_batches
        self._images_seen, self._data_wait, self._elapsed = 0, 0.0, 1e-9
        self._step_losses: list[float] = []
        self._steps: Iterator[float] | None = None

    def __iter__(self) -> Iterator[float]:
        self._steps = self._train()
        return self._steps

    def _train(self) -> Iterator[float]:
        parts, dist, progress, nan_guard = self.parts, self.dist, self.progress, self.nan_guard
        parts.model.train()
        start_batch = progress.batches_done
        num_batches = start_batch + len(self.loader)
        accumulate = self.train_cfg.accumulate
        sums = self._sums
        images_before = progress.images_seen
        bar = tqdm(
            total=num_batches,
            initial=start_batch,
            desc=f"epoch {self.epoch + 1}/{self.planned_epochs}",
            disable=not (self.show_progress and dist.is_main),
            dynamic_ncols=True,
            leave=True,
        )
        parts.optimizer.zero_grad(set_to_none=True)
        micro_finite = True
        micro_losses: list[float] = []
        start = last = time.perf_counter()
        finished = False
        try:
            for index, batch in enumerate(self.loader, start=start_batch):
                self._data_wait += time.perf_counter() - last
                images, targets = _to_device(batch, parts.device)
                boundary = (index + 1) % accumulate == 0 or index + 1 == num_batches
                # Between accumulation boundaries DDP must not all-reduce (it would every backward).
                no_sync = (
                    parts.model.no_sync()
                    if dist.distributed and not boundary
                    else contextlib.nullcontext()
                )
                with no_sync:
                    with autocast(parts.device, parts.amp_dtype):
                        raw = parts.forward(images)
                    # The loss in fp32: sums of many small terms.
                    terms = parts.loss_fn(raw.float(), targets)
                    parts.scaler.scale(terms["loss"] / accumulate).backward()
                values = dict(
                    zip(
                        terms,
                        torch.stack([v.detach().float() for v in terms.values()]).tolist(),
                        strict=False,
                    )
                )
                self._step_losses.append(values["loss"])
                micro_losses.append(values["loss"])
                finite = all(math.isfinite(v) for v in values.values())
                micro_finite &= finite
                if finite:
                    self._finite_batches += 1
                    for key, value in values.items():
                        sums[key] += value
                self._images_seen += images.shape[0]
                if boundary:
                    stepped = optimizer_step(
                        parts, self.train_cfg, self.state.step, micro_finite, dist
                    )
                    nan_guard.record(stepped, where=f"epoch {self.epoch + 1}, batch {index + 1}")
                    micro_finite = True
                    if stepped:
                        self.state.step += 1
                    else:
                        progress.skipped_steps += 1
                    progress.batches_done, progress.sums = index + 1, dict(sums)
                    progress.finite_batches = self._finite_batches
                    progress.images_seen = images_before + self._images_seen
                    progress.nan_streak = nan_guard.consecutive
                    step_loss = sum(micro_losses) / len(micro_losses)
                    micro_losses = []
                    # The caller acts here; leaving the loop ends the epoch after this step.
                    self.stopped_early = True
                    yield step_loss
                    self.stopped_early = False
                elapsed = time.perf_counter() - start
                count = max(self._finite_batches, 1)
                means = {key.removeprefix("loss_"): sums[key] / count for key in sums}
                bar.set_postfix(
                    {
                        **{k: f"{v:.3f}" for k, v in means.items()},
                        "lr": f"{parts.optimizer.param_groups[0]['lr']:.2e}",
                        "img/s": f"{self._images_seen * dist.world_size / max(elapsed, 1e-9):.1f}",
                    },
                    refresh=False,
                )
                bar.update(1)
                last = time.perf_counter()
            finished = True
        finally:
            if not finished and self.stopped_early:
                bar.update(1)  # the batch of the step the caller stopped after
            self._elapsed = max(time.perf_counter() - start, 1e-9)
            bar.close()  # also on an error: its message starts on a line of its own

    def stats(self) -> dict[str, Any]:
        """The pass so far (ends it when the caller left the loop early).

        Returns:
            {"loss": mean, "loss_box": mean, ... (every term the loss returns, over the
            epoch's finite micro-batches), "lr": last lr, "images_per_s": all ranks,
            "data_wait_fraction": share of this call spent waiting for batches,
            "skipped_steps": int, "stopped_early": bool, "step_losses": [float] per
            micro-batch of this call}
        """
        if self._steps is not None:
            self._steps.close()  # a loop left early: end the pass (its bar, its time) here
        stats: dict[str, Any] = {
            key: self._sums[key] / max(self._finite_batches, 1) for key in self._sums
        }
        stats.update(
            lr=self.parts.optimizer.param_groups[0]["lr"],
            images_per_s=self._images_seen * self.dist.world_size / self._elapsed,
            data_wait_fraction=self._data_wait / self._elapsed,
            skipped_steps=self.progress.skipped_steps,
            stopped_early=self.stopped_early,
            step_losses=self._step_losses,
        )
        return stats


def train_one_epoch(
    parts: TrainParts,
    loader: torch.utils.data.DataLoader,
    state: TrainState,
    train_cfg: TrainConfig,
    **options: Any,
) -> dict[str, Any]:
    """Train one whole pass over `loader` and return its `TrainingEpoch.stats()`.

    `options` are `TrainingEpoch`'s keywords (epoch, planned_epochs and nan_guard required).
    """
    training = TrainingEpoch(parts, loader, state, train_cfg, **options)
    for _ in training:
        pass
    return training.stats()


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    split: SplitRecords,
    cfg: Config,
    *,
    device: torch.device,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """COCO AP of `model` on the validation split, through the one prediction path.

    The model is wrapped in the `Detector` that `detector evaluate` and the Python
    API use (`evaluation.dataset_predict`): same letterbox, autocast at
    `train.amp_dtype`, decode and selection. A run trained on tiles (`data.slice`)
    is validated by sliced inference on the full-resolution images
    (`dataset_predict.validation_slicing`); `loader` is then unused.

    Args:
        model: the weights to score (EMA when enabled, unwrapped); put back in
            train mode afterwards when it was training.
        loader: validation batches (deterministic letterbox, no shuffle).
        split: the validation records (ground truth) and class names.
        cfg: eval thresholds, train.amp/amp_dtype, model.image_size.
        device: where to run the model.
        progress: a tqdm bar over the validation batches.
        should_stop: polled before each batch; True raises ValidationStopped (a stop
            signal must not wait for a long validation: the grace before SIGKILL is short).

    Returns:
        {"AP": COCO AP@[.5:.95], "AP50": AP@.5}.
    """
    from detector.evaluation.dataset_predict import (
        evaluation_detector,
        predict_loader,
        predict_records,
        validation_slicing,
    )
    from detector.evaluation.evaluator import evaluate_detections

    was_training = model.training
    try:
        slicing = validation_slicing(cfg)
        detector = evaluation_detector(model, cfg, split.names, device, slicing=slicing)
        if slicing is not None:
            records = split.records
            records = records if should_stop is None else _StoppableBatches(records, should_stop)
            predictions = predict_records(
                detector, records, progress=progress, max_image_pixels=cfg.data.max_image_pixels
            )
        else:
            batches = loader if should_stop is None else _StoppableBatches(loader, should_stop)
            predictions = predict_loader(detector, batches, progress=progress)
    finally:
        model.train(was_training)
    # Only AP drives training decisions: skip the VOC metric here (`detector evaluate` has it).
    result = evaluate_detections(split.records, predictions, split.names, voc_metric="none")
    return {"AP": result.stats["AP"], "AP50": result.stats["AP50"]}
