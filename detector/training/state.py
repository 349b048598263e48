"""What a training run holds between steps: counters, the epoch's progress, the objects a step touches.

    state = TrainState(planned_epochs=cfg.train.epochs)
    progress = EpochProgress()          # of the current epoch; a mid-epoch last.pt holds it
    parts = build_train_parts(model, loss_fn, cfg.train, device=device, steps_per_epoch=63)  # setup.py

Plain data: built by `setup.set_up`, advanced by `epoch.train_one_epoch` and
`trainer.fit`, written to and restored from last.pt by checkpoint.py (the format's
one owner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from detector.training.distributed import unwrap_model
from detector.training.ema import ModelEMA
from detector.training.optim import WarmupCosineSchedule


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


# TrainState fields added after last.pt files were written: optional there, with their default.
LATER_STATE_FIELDS = ("mosaic_closed",)


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


