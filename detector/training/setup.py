"""Everything a training run holds, built once: seeds, data, model, loss, optimizer, run directory, resumed state.

    run = set_up(cfg, resume_checkpoint=None, changes=[], log=print, clock=time.monotonic)
    run.train_loader, run.parts, run.state, run.progress, run.run_dir

Resuming (`resume_checkpoint` = last.pt) restores the model, optimizer, schedule,
counters, the epoch's progress (a mid-epoch checkpoint) and, last, the RNG
states. A finished run given more `train.epochs` is extended with a new cosine
segment, stated in the log.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.config import Config, SavePeriod, TrainConfig, parse_save_period
from detector.data.record import SplitRecords
from detector.model.precision import amp_dtype_for
from detector.training import distributed as ddp
from detector.training.ema import ModelEMA
from detector.training.failures import writing
from detector.training.optim import WarmupCosineSchedule, build_optimizer
from detector.training.resume import check_class_names
from detector.training.rng import restore_rng_state, seed_everything
from detector.training.run_dir import (
    create_run_dir,
    truncate_results,
    truncate_steps,
    write_config_yaml,
)
from detector.training.state import EpochProgress, TrainParts, TrainState, restore_from_checkpoint
from detector.training.time_budget import TimeBudget


@dataclass
class Run:
    """Everything one training run holds (built by `set_up`)."""

    cfg: Config
    dist: ddp.DistInfo
    device: torch.device
    run_dir: Path | None  # None on ranks other than 0 for a new run
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None  # rank 0 only
    val_split: SplitRecords | None
    names: list[str]
    parts: TrainParts
    state: TrainState
    budget: TimeBudget | None
    log: Callable[[str], None]
    save_period: SavePeriod | None = None
    progress: EpochProgress = field(default_factory=EpochProgress)  # the current epoch's
    saved_at: tuple[int, float] = (0, 0.0)  # (step, clock) of the last write of last.pt
    saved_position: tuple[int, int] = (-1, 0)  # (epoch, batches_done) that last.pt holds
    epoch_batches: int = 0  # micro-batches in the current epoch (all of it, also when resumed inside)
    budget_planned: bool = False  # the time budget's first plan is made (a resumed run's is in last.pt)
    stop_signum: int = 0  # a stop signal every rank agreed on after a step (0: none)


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
    """Optimizer, schedule, scaler and EMA for an (unwrapped) model already on `device`.

    Args:
        model: the detector, on `device`.
        loss_fn: its loss module.
        train_cfg: the train section.
        device: training device.
        steps_per_epoch: optimizer steps per epoch (batches / accumulate, rounded up).
    """
    amp_dtype = amp_dtype_for(train_cfg, device)
    schedule = WarmupCosineSchedule(
        base_lr=train_cfg.lr,
        warmup_steps=round(train_cfg.warmup_epochs * steps_per_epoch),
        total_steps=train_cfg.epochs * steps_per_epoch,
        final_lr_fraction=train_cfg.final_lr_fraction,
    )
    return TrainParts(
        model=model,
        loss_fn=loss_fn,
        optimizer=build_optimizer(model, train_cfg),
        schedule=schedule,
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        ema=ModelEMA(model, decay=train_cfg.ema_decay) if train_cfg.ema else None,
        device=device,
        amp_dtype=amp_dtype,
        steps_per_epoch=steps_per_epoch,
    )


def _extend_finished(run_parts: TrainParts, state: TrainState, cfg: Config, steps_per_epoch: int,
                     log: Callable[[str], None]) -> None:
    """A finished run asked for more epochs: a new cosine segment from train.lr over the added steps."""
    total = cfg.train.epochs * steps_per_epoch
    start_lr, end_lr = cfg.train.lr, cfg.train.lr * cfg.train.final_lr_fraction
    log(f"resume: the run had finished after {state.epoch} epochs (step {state.step}); extending it to "
        f"{cfg.train.epochs} epochs with a new schedule segment: cosine from lr {start_lr:.3g} to {end_lr:.3g} "
        f"over steps {state.step}..{total}, no warmup; the early-stopping count starts again")
    run_parts.schedule.restart(current_step=state.step, total_steps=total, start_lr=start_lr, end_lr=end_lr)
    state.planned_epochs = cfg.train.epochs
    state.finished = False
    state.epochs_without_improvement = 0
    state.mosaic_closed = False  # a new segment: train.close_mosaic closes its own last epochs


def _restore(parts: TrainParts, state: TrainState, ckpt: dict[str, Any], cfg: Config, steps_per_epoch: int,
             changes: list[str], log: Callable[[str], None]) -> EpochProgress:
    """Load last.pt into parts and state; re-plan or extend the schedule; return the epoch's progress."""
    progress = restore_from_checkpoint(parts, state, ckpt)
    for line in changes:
        log(f"resume: {line}")
    if progress.batches_done:
        log(f"resume: continuing epoch {state.epoch + 1} after its first {progress.batches_done} batches "
            f"(step {state.step}), with the same samples and augmentation an uninterrupted run would see")
    if state.finished:
        _extend_finished(parts, state, cfg, steps_per_epoch, log)
    elif cfg.train.time_limit is None and cfg.train.epochs != state.planned_epochs:
        log(f"resume: re-planning the schedule from {state.planned_epochs} to {cfg.train.epochs} epochs "
            f"(cosine continues from step {state.step} to {cfg.train.epochs * steps_per_epoch})")
        state.planned_epochs = cfg.train.epochs
        parts.schedule.replan(current_step=state.step, total_steps=cfg.train.epochs * steps_per_epoch)
    return progress


def set_up(cfg: Config, resume_checkpoint: dict[str, Any] | None, changes: list[str],
           log: Callable[[str], None], clock: Callable[[], float]) -> Run:
    """Seeds, run directory, data, model, optimizer; the saved state when resuming."""
    from detector.data.loading.dataset import build_dataloader
    from detector.model.build import build_loss, build_model
    from detector.model.imagenet import pretrained_path

    start = clock()  # the time budget counts set-up (data, model) too
    save_period = parse_save_period(cfg.train.save_period)  # a bad value fails before any run dir exists
    device = ddp.local_device(cfg.train.device)
    dist = ddp.setup_distributed(device)
    log = log if dist.is_main else (lambda message: None)
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    resuming = resume_checkpoint is not None
    run_dir = Path(cfg.train.run_dir) if resuming else None
    # Rank 0 first: it may generate the synthetic dataset that the others then read.
    val_loader = val_split = None
    if dist.is_main:
        train_loader, train_split = build_dataloader(cfg, "train", train=True, distributed=dist.distributed)
        val_loader, val_split = build_dataloader(cfg, "val", train=False)
        if cfg.model.pretrained and not resuming:
            # `imagenet` is downloaded here, once, before the other ranks look in the cache.
            pretrained_path(cfg.model.pretrained, cfg.model.backbone)
    ddp.barrier(dist)
    if not dist.is_main:
        train_loader, train_split = build_dataloader(cfg, "train", train=True, distributed=True)
    names = list(train_split.names)
    if resuming:
        check_class_names(run_dir, list(resume_checkpoint["names"]), names)

    # A resumed run takes every weight from its checkpoint: no ImageNet file is read or fetched.
    model_cfg = replace(cfg.model, pretrained=None) if resuming else cfg.model
    model = build_model(model_cfg, len(names)).to(device)
    loss_fn = build_loss(cfg.model, len(names)).to(device)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.train.accumulate)
    parts = build_train_parts(model, loss_fn, cfg.train, device=device, steps_per_epoch=steps_per_epoch)
    state = TrainState(planned_epochs=cfg.train.epochs)
    progress = EpochProgress()
    if dist.is_main and not resuming:
        # Only now, once data and model are known good: a bad config leaves no empty run dir.
        run_dir = create_run_dir(cfg.train.run_dir, exist_ok=cfg.train.exist_ok)
        cfg.train.run_dir = str(run_dir)
    if resuming:
        progress = _restore(parts, state, resume_checkpoint, cfg, steps_per_epoch, changes, log)
        # Last, so that building the model above does not consume the restored streams.
        restore_rng_state(resume_checkpoint["rng"])
        if dist.is_main:
            with writing(run_dir / "results.csv"):
                truncate_results(run_dir / "results.csv", state.epoch)
                truncate_steps(run_dir / "steps.csv", epochs_done=state.epoch, batches_done=progress.batches_done)
    if dist.distributed:
        parts.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        parts.compiled = compile_for_training(parts.model, device, log)
    if dist.is_main:
        with writing(run_dir / "config.yaml"):
            write_config_yaml(cfg, run_dir)
        log(f"{'resuming' if resuming else 'training'} in {run_dir}: {len(train_split.records)} train / "
            f"{len(val_split.records)} val images, {len(names)} classes, {cfg.model.backbone} "
            f"width {cfg.model.width:g} "
            f"{cfg.model.image_size}px on {device} x{dist.world_size}, epoch {state.epoch + 1}/{state.planned_epochs}")
    budget = None
    if cfg.train.time_limit is not None:
        budget = TimeBudget(cfg.train.time_limit, clock=clock, elapsed_before_s=state.elapsed_s + clock() - start)
    return Run(cfg, dist, device, run_dir, train_loader, val_loader, val_split, names, parts, state, budget, log,
               save_period=save_period, progress=progress, saved_at=(state.step, clock()),
               saved_position=(state.epoch, progress.batches_done) if resuming else (-1, 0),
               budget_planned=resuming and state.step > 0)
