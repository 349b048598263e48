"""One training epoch and one validation pass: the two functions the trainer loops over.

    stats = train_one_epoch(parts, loader, state, cfg.train, epoch=0, planned_epochs=40,
                            nan_guard=NanGuard("skip", 20))
    metrics = validate(parts.eval_model, val_loader, val_split, cfg, device=parts.device)

A step: forward under autocast (CUDA AMP only), loss, backward (scaled for fp16),
and every `train.accumulate` micro-batches: set the scheduled lr, unscale,
clip the global gradient norm, and step optimizer and EMA unless the loss or the
gradients are not finite (the NaN guard).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from detector.config import Config, TrainConfig
from detector.data.record import SplitRecords
from detector.model.precision import autocast
from detector.training.distributed import DistInfo, any_rank_true, unwrap_model
from detector.training.optim import set_learning_rate
from detector.training.state import EpochProgress, TrainParts, TrainState

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
            raise NonFiniteLossError(f"non-finite loss or gradients at {where}; stopping (train.nan_policy=stop)")
        if self.consecutive >= self.max_skips:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive non-finite steps up to {where}; stopping "
                f"(train.max_nan_skips={self.max_skips}); lower train.lr or check the data"
            )


def _to_device(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images = batch["images"].to(device, non_blocking=True)
    targets = [{key: value.to(device, non_blocking=True) for key, value in target.items()} for target in batch["targets"]]
    return images, targets


def _optimizer_step(parts: TrainParts, train_cfg: TrainConfig, step: int, loss_finite: bool, dist: DistInfo) -> bool:
    """Apply the accumulated gradients at the scheduled lr; return False if skipped."""
    set_learning_rate(parts.optimizer, parts.schedule.lr_at(step))
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


def train_one_epoch(
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
    after_step: Callable[[float], bool] | None = None,
) -> dict[str, Any]:
    """Train for one pass over `loader`, advancing `state.step` per optimizer step.

    Args:
        parts: model (maybe DDP-wrapped), loss, optimizer, schedule, scaler, EMA.
        loader: training batches (see docs/internals.md, "Batches"); when resuming
            inside an epoch, already without the `progress.batches_done` consumed ones.
        state: run counters; `state.step` is the schedule position.
        train_cfg: accumulate, grad_clip.
        epoch: 0-based index of this epoch (for the bar and messages).
        planned_epochs: shown in the bar.
        nan_guard: decides skip or stop on non-finite steps.
        dist: this process's rank info (the bar shows on rank 0 only).
        show_progress: draw the tqdm bar (rank 0 only in any case).
        progress: the epoch's counters, updated in place after every optimizer step
            (what a mid-epoch checkpoint saves); a resumed epoch passes the saved ones.
        after_step: called after each optimizer step with that step's mean loss
            (progress already updated); True ends the epoch there (time budget
            spent, a stop signal).

    Returns:
        {"loss": mean, "loss_box": mean, ... (every term the loss returns, over the
        epoch's finite micro-batches), "lr": last lr, "images_per_s": all ranks,
        "data_wait_fraction": share of this call spent waiting for batches,
        "skipped_steps": int, "stopped_early": bool, "step_losses": [float] per
        micro-batch of this call}
    """
    parts.model.train()
    progress = progress if progress is not None else EpochProgress()
    start_batch = progress.batches_done
    num_batches = start_batch + len(loader)
    accumulate = train_cfg.accumulate
    sums = defaultdict(float, progress.sums)
    finite_batches, images_seen, data_wait = progress.finite_batches, 0, 0.0
    images_before = progress.images_seen
    step_losses: list[float] = []
    stopped_early = False
    bar = tqdm(total=num_batches, initial=start_batch, desc=f"epoch {epoch + 1}/{planned_epochs}",
               disable=not (show_progress and dist.is_main), dynamic_ncols=True, leave=True)
    parts.optimizer.zero_grad(set_to_none=True)
    micro_finite = True
    micro_losses: list[float] = []
    start = last = time.perf_counter()
    try:
        for index, batch in enumerate(loader, start=start_batch):
            data_wait += time.perf_counter() - last
            images, targets = _to_device(batch, parts.device)
            boundary = (index + 1) % accumulate == 0 or index + 1 == num_batches
            # Between accumulation boundaries DDP must not all-reduce (it would every backward).
            no_sync = parts.model.no_sync() if dist.distributed and not boundary else contextlib.nullcontext()
            with no_sync:
                with autocast(parts.device, parts.amp_dtype):
                    raw = parts.forward(images)
                terms = parts.loss_fn(raw.float(), targets)  # the loss in fp32: sums of many small terms
                parts.scaler.scale(terms["loss"] / accumulate).backward()
            values = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist(), strict=False))
            step_losses.append(values["loss"])
            micro_losses.append(values["loss"])
            finite = all(math.isfinite(v) for v in values.values())
            micro_finite &= finite
            if finite:
                finite_batches += 1
                for key, value in values.items():
                    sums[key] += value
            images_seen += images.shape[0]
            if boundary:
                stepped = _optimizer_step(parts, train_cfg, state.step, micro_finite, dist)
                nan_guard.record(stepped, where=f"epoch {epoch + 1}, batch {index + 1}")
                micro_finite = True
                if stepped:
                    state.step += 1
                else:
                    progress.skipped_steps += 1
                progress.batches_done, progress.sums, progress.finite_batches = index + 1, dict(sums), finite_batches
                progress.images_seen = images_before + images_seen
                progress.nan_streak = nan_guard.consecutive
                step_loss = sum(micro_losses) / len(micro_losses)
                micro_losses = []
                if after_step is not None and after_step(step_loss):
                    stopped_early = True
                    bar.update(1)
                    break
            elapsed = time.perf_counter() - start
            means = {key.removeprefix("loss_") if key != "loss" else key: sums[key] / max(finite_batches, 1) for key in sums}
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in means.items()},
                             "lr": f"{parts.optimizer.param_groups[0]['lr']:.2e}",
                             "img/s": f"{images_seen * dist.world_size / max(elapsed, 1e-9):.1f}"}, refresh=False)
            bar.update(1)
            last = time.perf_counter()
    finally:
        bar.close()  # also on an error: its message starts on a line of its own
    elapsed = max(time.perf_counter() - start, 1e-9)
    stats: dict[str, Any] = {key: sums[key] / max(finite_batches, 1) for key in sums}
    stats.update(
        lr=parts.optimizer.param_groups[0]["lr"],
        images_per_s=images_seen * dist.world_size / elapsed,
        data_wait_fraction=data_wait / elapsed,
        skipped_steps=progress.skipped_steps,
        stopped_early=stopped_early,
        step_losses=step_losses,
    )
    return stats


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
    `train.amp_dtype`, decode and selection.

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
    from detector.evaluation.dataset_predict import evaluation_detector, predict_loader
    from detector.evaluation.evaluator import evaluate_detections

    was_training = model.training
    try:
        detector = evaluation_detector(model, cfg, split.names, device)
        batches = loader if should_stop is None else _StoppableBatches(loader, should_stop)
        predictions = predict_loader(detector, batches, progress=progress)
    finally:
        model.train(was_training)
    # Only AP drives training decisions: skip the VOC metric here (`detector evaluate` has it).
    result = evaluate_detections(split.records, predictions, split.names, voc_metric="none")
    return {"AP": result.stats["AP"], "AP50": result.stats["AP50"]}
