"""Optimizer with decay only on weights, and a warmup + cosine learning rate per step.

    optimizer = build_optimizer(model, cfg.train)
    schedule = WarmupCosineSchedule(base_lr=0.01, warmup_steps=100, total_steps=5000,
                                    final_lr_fraction=0.05)
    for step in range(5000):
        set_learning_rate(optimizer, schedule.lr_at(step))
        ...
    schedule.retarget(current_step=1200, total_steps=8000)  # time budget: same cosine, new end
    schedule.replan(current_step=1200, total_steps=8000)    # more epochs on resume: new segment

The schedule is a plain function of the optimizer-step index plus a few numbers,
so it is saved as a dict and re-planned without a torch scheduler object.
`retarget` keeps ONE cosine: it moves only the step where the cosine's progress
reaches 1, keeping the progress (and so the lr) reached so far, so the curve
stays continuous and keeps its shape (the time budget's epoch-end corrections).
`replan` starts a new cosine segment from the current lr (a resumed run given
more `train.epochs`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from detector.config import OPTIMIZERS, TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into decayed weights and undecayed norms/biases.

    Weight decay on normalisation scales and shifts and on biases only pulls them
    towards zero without regularising anything useful, so they get none. A
    parameter counts as "norm or bias" when it is 1-D (BatchNorm/GroupNorm/
    LayerNorm weights and biases, conv/linear biases).

    Args:
        model: the (unwrapped) model.
        weight_decay: decay for the weight group.

    Returns:
        [{"params": weights, "weight_decay": weight_decay, "name": "decay"},
         {"params": norms and biases, "weight_decay": 0.0, "name": "no_decay"}]
    """
    decay, no_decay = [], []
    for _, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue  # frozen stages
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW over `parameter_groups`, from the train config.

    Args:
        model: the (unwrapped) model.
        train_cfg: uses optimizer, lr, momentum, weight_decay.

    Returns:
        The optimizer; its lr is overwritten every step by the schedule.
    """
    groups = parameter_groups(model, train_cfg.weight_decay)
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum, nesterov=True)
    if train_cfg.optimizer == "adamw":
        # momentum maps onto beta1 so one key tunes both optimizers.
        return torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.momentum, 0.999))
    raise ValueError(f"train.optimizer: {train_cfg.optimizer!r} is not one of {list(OPTIMIZERS)}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the same learning rate on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


class WarmupCosineSchedule:
    """Linear warmup to `base_lr`, then a half cosine down to `base_lr * final_lr_fraction`.

    lr(step), for optimizer step `step` (0-based):
        step <  warmup_steps: base_lr * (step + 1) / warmup_steps
        otherwise:            end_lr + (start_lr - end_lr) * (1 + cos(pi * p)) / 2,
    with the cosine's progress p running linearly from `anchor_progress` at
    `anchor_step` to 1 at `total_steps` (clamped to [0, 1]):
        p = anchor_progress + (1 - anchor_progress) * (step - anchor_step) / (total_steps - anchor_step)
    (start_step, start_lr) = (warmup_steps, base_lr) and the anchor = (start_step, 0)
    until `retarget` moves the anchor (same cosine, new end) or `replan`/`restart`
    begin a new segment there. Before the anchor, p is interpolated from
    (start_step, 0): exact for a schedule never retargeted, and the steps before
    a retarget were already taken.
    """

    def __init__(self, *, base_lr: float, warmup_steps: int, total_steps: int, final_lr_fraction: float) -> None:
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"schedule needs total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
        self.base_lr = float(base_lr)
        self.end_lr = float(base_lr) * float(final_lr_fraction)
        self.warmup_steps = int(min(warmup_steps, total_steps))
        self.total_steps = int(total_steps)
        self.start_step = self.warmup_steps
        self.start_lr = self.base_lr
        self.anchor_step = self.start_step
        self.anchor_progress = 0.0

    def progress_at(self, step: int) -> float:
        """The cosine's progress in [0, 1] at optimizer step `step` (0 inside the warmup)."""
        if step >= self.anchor_step:
            span = max(self.total_steps - self.anchor_step, 1)
            progress = self.anchor_progress + (1.0 - self.anchor_progress) * (step - self.anchor_step) / span
        else:
            progress = self.anchor_progress * (step - self.start_step) / max(self.anchor_step - self.start_step, 1)
        return min(max(progress, 0.0), 1.0)

    def lr_at(self, step: int) -> float:
        """The learning rate for optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        progress = self.progress_at(step)
        return self.end_lr + (self.start_lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def replan(self, *, current_step: int, total_steps: int, max_warmup_fraction: float | None = None) -> None:
        """End the cosine at `total_steps` instead, continuing from the lr at `current_step`.

        Inside the warmup only the end moves, unless `max_warmup_fraction` caps the
        warmup at that share of the new total (a time budget shorter than the planned
        warmup); the cap never moves the warmup's end before `current_step`.
        """
        total_steps = max(int(total_steps), 1)
        if current_step < self.warmup_steps and max_warmup_fraction is not None:
            cap = max(int(current_step), round(max_warmup_fraction * total_steps))
            self.warmup_steps = self.start_step = min(self.warmup_steps, cap)
        if current_step > self.warmup_steps:
            self.start_lr = self.lr_at(current_step)
            self.start_step = int(current_step)
        self.anchor_step, self.anchor_progress = self.start_step, 0.0
        self.total_steps = max(total_steps, self.start_step)

    def retarget(self, *, current_step: int, total_steps: int, max_warmup_fraction: float | None = None) -> None:
        """Make the same cosine end at `total_steps`, keeping the progress reached at `current_step`.

        The lr at `current_step` is unchanged and the rest of the cosine is spread
        over the steps left, so a correction bends the progress rate but never
        restarts the cosine at its flat top (what `replan` does). Inside the warmup
        only the end moves, unless `max_warmup_fraction` caps the warmup at that
        share of the new total (never before `current_step`).
        """
        total_steps = max(int(total_steps), 1)
        current_step = int(current_step)
        if current_step < self.warmup_steps and max_warmup_fraction is not None:
            cap = max(current_step, round(max_warmup_fraction * total_steps))
            self.warmup_steps = min(self.warmup_steps, cap)
            self.start_step = self.anchor_step = self.warmup_steps  # no cosine step taken yet
        if current_step > self.anchor_step:
            self.anchor_progress = self.progress_at(current_step)
            self.anchor_step = current_step
        self.total_steps = max(total_steps, self.anchor_step)

    def restart(self, *, current_step: int, total_steps: int, start_lr: float, end_lr: float) -> None:
        """A new cosine segment from `start_lr` at `current_step` down to `end_lr` at `total_steps`.

        Used to extend a finished run (its cosine had already reached its floor): a
        warm restart without warmup, as in SGDR.
        """
        self.warmup_steps = min(self.warmup_steps, int(current_step))
        self.start_step = int(current_step)
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.anchor_step, self.anchor_progress = self.start_step, 0.0
        self.total_steps = max(int(total_steps), self.start_step + 1)

    def state_dict(self) -> dict[str, float | int]:
        """Plain numbers (saved in last.pt)."""
        return {
            "base_lr": self.base_lr,
            "end_lr": self.end_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "start_step": self.start_step,
            "start_lr": self.start_lr,
            "anchor_step": self.anchor_step,
            "anchor_progress": self.anchor_progress,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        """Restore the numbers saved by `state_dict` (one without an anchor: never retargeted)."""
        self.base_lr = float(state["base_lr"])
        self.end_lr = float(state["end_lr"])
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
        self.start_step = int(state["start_step"])
        self.start_lr = float(state["start_lr"])
        self.anchor_step = int(state.get("anchor_step", self.start_step))
        self.anchor_progress = float(state.get("anchor_progress", 0.0))
