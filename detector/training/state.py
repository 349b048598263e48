"""What a training run holds between steps, and how it goes into last.pt / best.pt and back.

    state = TrainState(planned_epochs=cfg.train.epochs)
    progress = EpochProgress()          # of the current epoch; a mid-epoch last.pt holds it
    parts = build_train_parts(model, loss_fn, cfg.train, device=device,
                              steps_per_epoch=63)          # setup.py
    save_checkpoint(last_checkpoint(parts, state, cfg, names, progress), "weights/last.pt")
    progress = restore_from_checkpoint(parts, state, load_checkpoint(path,
                                                                     require_training_state=True))

Plain data: built by `setup.set_up`, advanced by `epoch.train_one_epoch` and
`trainer.fit`. The file format (keys, types, loading, atomic writes) is
`detector.checkpoint`'s; this module fills it from the run and restores the run from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from detector.config import Config, config_to_dict
from detector.training.distributed import unwrap_model
from detector.training.ema import ModelEMA
from detector.training.optim import WarmupCosineSchedule
from detector.training.rng import capture_rng_state


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


@dataclass
class EpochProgress:
    """How far the current epoch got: saved in a mid-epoch last.pt so a resume continues there.

    Counts cover completed optimizer steps only (a stop always falls on a step
    boundary), so `batches_done` micro-batches are skipped when resuming and the
    epoch's means in results.csv come out as in an uninterrupted run.
    """

    batches_done: int = 0  # micro-batches of this epoch behind completed optimizer steps
    sums: dict[str, float] = field(default_factory=dict)  # loss term -> sum over finite micro-batches
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
    schedule: WarmupCosineSchedule
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


def inference_checkpoint(parts: TrainParts, state: TrainState, cfg: Config,
                         names: list[str]) -> dict[str, Any]:
    """best.pt: what inference needs (`checkpoint.INFERENCE_TYPES`), EMA weights when EMA is on."""
    return {
        "model": parts.eval_model.state_dict(),
        "config": config_to_dict(cfg),
        "names": list(names),
        "image_size": cfg.model.image_size,
        "mean": list(cfg.model.mean),
        "std": list(cfg.model.std),
        "epoch": state.epoch,
        "best_ap": state.best_ap,
    }


def last_checkpoint(parts: TrainParts, state: TrainState, cfg: Config, names: list[str],
                    progress: EpochProgress | None = None) -> dict[str, Any]:
    """last.pt: `inference_checkpoint` plus everything an exact resume needs.

    `progress`: the current epoch's, for a checkpoint written inside an epoch
    (`epoch_progress` key; 0 batches at an epoch end).
    """
    ckpt = inference_checkpoint(parts, state, cfg, names)
    ckpt.update(
        train_model=unwrap_model(parts.model).state_dict(),
        optimizer=parts.optimizer.state_dict(),
        scheduler=parts.schedule.state_dict(),
        scaler=parts.scaler.state_dict(),
        ema=parts.ema.state_dict() if parts.ema is not None else {},
        rng=capture_rng_state(),
        finished=state.finished,
        step=state.step,
        train_state=asdict(state),
        epoch_progress=asdict(progress if progress is not None else EpochProgress()),
    )
    return ckpt


def restore_from_checkpoint(parts: TrainParts, state: TrainState,
                            ckpt: dict[str, Any]) -> EpochProgress:
    """Load model, optimizer, schedule, scaler, EMA and counters from last.pt; return the progress.

    The progress is empty for an epoch-end checkpoint or an older file. The RNG
    states are restored separately (`rng.restore_rng_state`), as the very last
    thing before training continues, so nothing built after this draws from them.
    """
    unwrap_model(parts.model).load_state_dict(ckpt["train_model"])
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    parts.schedule.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"]:
        parts.scaler.load_state_dict(ckpt["scaler"])
    if parts.ema is not None:
        if ckpt["ema"]:
            # `model` holds the EMA weights
            parts.ema.load_state_dict(ckpt["ema"], weights=ckpt["model"])
        else:  # EMA switched on at resume: start the average from the current weights
            parts.ema = ModelEMA(unwrap_model(parts.model), decay=parts.ema.decay)
    saved = ckpt["train_state"]
    for item in fields(TrainState):
        # Fields beyond checkpoint.TRAIN_STATE_KEYS are optional in a file: their default then.
        setattr(state, item.name, saved.get(item.name, item.default))
    progress = ckpt.get("epoch_progress") or {}
    known = {item.name for item in fields(EpochProgress)}
    return EpochProgress(**{key: value for key, value in progress.items() if key in known})
