"""What the optimizer step applies: the optimizer, its learning-rate plan, the EMA of the weights.

    optimizer = build_optimizer(model, cfg.train)
    plan = lr_plan(cfg.train, steps_per_epoch=63)      # warmup, then one cosine to the floor
    for step in range(plan.total_steps):
        set_learning_rate(optimizer, lr_at(step, plan))
        ...
    plan = move_end(plan, step=1200, total_steps=8000)  # time budget, other train.epochs
    plan = restart(plan, step=8000, total_steps=9000, start_lr=0.01, end_lr=0.0005)
    ema = ModelEMA(model, decay=0.9998); ema.update(model)   # after every optimizer step

The learning rate is a pure function of the optimizer-step index and an `LrPlan`
(a frozen record of eight numbers, last.pt's `scheduler`), so it is saved as a dict
and needs no torch scheduler object. The plan's end moves one way, `move_end`: the
cosine keeps the progress (and so the lr) it reached and spreads the rest over the
steps left, so the curve stays continuous and keeps one cosine's shape. A finished
run given more `train.epochs` has no progress left to spread: `restart` begins a
new cosine there (a warm restart without warmup, as in SGDR).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
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


@dataclass(frozen=True)
class LrPlan:
    """Linear warmup to `base_lr`, then a half cosine from `start_lr` down to `end_lr`.

    lr(step), for optimizer step `step` (0-based):
        step <  warmup_steps: base_lr * (step + 1) / warmup_steps
        otherwise:            end_lr + (start_lr - end_lr) * (1 + cos(pi * p)) / 2,
    with the cosine's progress p running linearly from `anchor_progress` at
    `anchor_step` to 1 at `total_steps` (clamped to [0, 1]):
        p = anchor_progress
            + (1 - anchor_progress) * (step - anchor_step) / (total_steps - anchor_step)
    Before the anchor (steps already taken when the end moved) p is interpolated
    from 0 at `start_step`, where the cosine begins (the warmup's end, or a restart).
    The field names are last.pt's `scheduler` keys.
    """

    base_lr: float
    end_lr: float
    warmup_steps: int
    total_steps: int
    start_step: int
    start_lr: float
    anchor_step: int
    anchor_progress: float


def warmup_cosine(
    *, base_lr: float, warmup_steps: int, total_steps: int, final_lr_fraction: float
) -> LrPlan:
    """The plan of a new run: `warmup_steps` of warmup, the cosine ending at `total_steps`.

    Raises:
        ValueError: total_steps < 1 or warmup_steps < 0.
    """
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(
            "schedule needs total_steps >= 1 and warmup_steps >= 0, "
            f"got {total_steps}, {warmup_steps}"
        )
    warmup = int(min(warmup_steps, total_steps))
    return LrPlan(
        base_lr=float(base_lr),
        end_lr=float(base_lr) * float(final_lr_fraction),
        warmup_steps=warmup,
        total_steps=int(total_steps),
        start_step=warmup,
        start_lr=float(base_lr),
        anchor_step=warmup,
        anchor_progress=0.0,
    )


def lr_plan(train_cfg: TrainConfig, *, steps_per_epoch: int) -> LrPlan:
    """`warmup_cosine` over `train.epochs` (train.lr, warmup_epochs, final_lr_fraction)."""
    return warmup_cosine(
        base_lr=train_cfg.lr,
        warmup_steps=round(train_cfg.warmup_epochs * steps_per_epoch),
        total_steps=train_cfg.epochs * steps_per_epoch,
        final_lr_fraction=train_cfg.final_lr_fraction,
    )


def progress_at(step: int, plan: LrPlan) -> float:
    """The cosine's progress in [0, 1] at optimizer step `step` (0 inside the warmup)."""
    if step >= plan.anchor_step:
        span = max(plan.total_steps - plan.anchor_step, 1)
        progress = (
            plan.anchor_progress + (1.0 - plan.anchor_progress) * (step - plan.anchor_step) / span
        )
    else:
        progress = (
            plan.anchor_progress
            * (step - plan.start_step)
            / max(plan.anchor_step - plan.start_step, 1)
        )
    return min(max(progress, 0.0), 1.0)


def lr_at(step: int, plan: LrPlan) -> float:
    """The learning rate for optimizer step `step` (0-based)."""
    if step < plan.warmup_steps:
        return plan.base_lr * (step + 1) / plan.warmup_steps
    progress = progress_at(step, plan)
    return plan.end_lr + (plan.start_lr - plan.end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def move_end(
    plan: LrPlan, *, step: int, total_steps: int, max_warmup_fraction: float | None = None
) -> LrPlan:
    """The same cosine ending at `total_steps`, keeping the progress reached at `step`.

    The lr at `step` is unchanged and the rest of the cosine is spread over the
    steps left, so a move bends the progress rate but never restarts the cosine at
    its flat top. Inside the warmup only the end moves, unless `max_warmup_fraction`
    caps the warmup at that share of the new total (a time budget shorter than the
    planned warmup); the cap never ends the warmup before `step`.
    """
    total_steps, step = max(int(total_steps), 1), int(step)
    if step < plan.warmup_steps and max_warmup_fraction is not None:
        cap = max(step, round(max_warmup_fraction * total_steps))
        warmup = min(plan.warmup_steps, cap)
        # No cosine step taken yet: the cosine begins where the warmup now ends.
        plan = replace(plan, warmup_steps=warmup, start_step=warmup, anchor_step=warmup)
    if step > plan.anchor_step:
        plan = replace(plan, anchor_step=step, anchor_progress=progress_at(step, plan))
    return replace(plan, total_steps=max(total_steps, plan.anchor_step))


def restart(plan: LrPlan, *, step: int, total_steps: int, start_lr: float, end_lr: float) -> LrPlan:
    """A new cosine from `start_lr` at `step` down to `end_lr` at `total_steps`, without warmup.

    What extends a finished run: its cosine already reached the floor, so there is
    no progress left for `move_end` to spread.
    """
    step = int(step)
    return replace(
        plan,
        warmup_steps=min(plan.warmup_steps, step),
        start_step=step,
        start_lr=float(start_lr),
        end_lr=float(end_lr),
        anchor_step=step,
        anchor_progress=0.0,
        total_steps=max(int(total_steps), step + 1),
    )


def plan_to_dict(plan: LrPlan) -> dict[str, float | int]:
    """The plan as last.pt's `scheduler` dict (plain numbers)."""
    return asdict(plan)


def plan_from_dict(saved: dict[str, Any]) -> LrPlan:
    """The plan saved by `plan_to_dict`; a dict without the anchor keys (an older last.pt)
    reads as a cosine whose end never moved (anchor at `start_step`, progress 0)."""
    start_step = int(saved["start_step"])
    return LrPlan(
        base_lr=float(saved["base_lr"]),
        end_lr=float(saved["end_lr"]),
        warmup_steps=int(saved["warmup_steps"]),
        total_steps=int(saved["total_steps"]),
        start_step=start_step,
        start_lr=float(saved["start_lr"]),
        anchor_step=int(saved.get("anchor_step", start_step)),
        anchor_progress=float(saved.get("anchor_progress", 0.0)),
    )


# Exponential moving average of the weights, used for validation and best.pt. The decay
# ramps up as `decay * (1 - exp(-updates / warmup_steps))`: early on the average follows
# the fast-changing weights closely (a fixed 0.9998 would keep the random initialisation
# alive for thousands of steps), later it smooths them.
class ModelEMA:
    """A frozen eval-mode copy of a model whose weights track an EMA of the trained ones.

    Floating-point parameters and buffers (including BatchNorm running statistics)
    are averaged; integer buffers (`num_batches_tracked`) are copied.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        decay: float = 0.9998,
        warmup_steps: float = 2000.0,
        updates: int = 0,
    ) -> None:
        """Args:
        model: the unwrapped model to copy.
        decay: the decay reached after warm-up (0..1).
        warmup_steps: time constant of the decay ramp, in optimizer steps.
        updates: number of updates already made (resume).
        """
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema_decay: {decay} must be in [0, 1)")
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = float(decay)
        self.warmup_steps = float(warmup_steps)
        self.updates = int(updates)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards `model`'s current weights."""
        decay = self.current_decay()
        self.updates += 1
        source = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = source[name].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), 1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, float | int]:
        """The counters; the averaged weights are `self.module.state_dict()` (a
        checkpoint stores them once, as its inference `model`)."""
        return {"updates": self.updates, "decay": self.decay, "warmup_steps": self.warmup_steps}

    def load_state_dict(
        self, state: dict[str, float | int], weights: dict[str, torch.Tensor]
    ) -> None:
        """Restore the counters from `state_dict()` and the averaged `weights`."""
        self.module.load_state_dict(weights)
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.warmup_steps = float(state["warmup_steps"])
