"""Exponential moving average of model weights, used for validation and best.pt.

    ema = ModelEMA(model, decay=0.9998)
    ...  # after every optimizer step:
    ema.update(model)
    metrics = validate(ema.module, val_loader, val_split, cfg, device=device)   # training.epoch

The decay ramps up as `decay * (1 - exp(-updates / warmup_steps))`: early on the
average follows the fast-changing weights closely (a fixed 0.9998 would keep the
random initialisation alive for thousands of steps), later it smooths them.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """A frozen eval-mode copy of a model whose weights track an EMA of the trained ones.

    Floating-point parameters and buffers (including BatchNorm running statistics)
    are averaged; integer buffers (`num_batches_tracked`) are copied.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.9998, warmup_steps: float = 2000.0, updates: int = 0) -> None:
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

    def load_state_dict(self, state: dict[str, float | int], weights: dict[str, torch.Tensor]) -> None:
        """Restore the counters from `state_dict()` and the averaged `weights`."""
        self.module.load_state_dict(weights)
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.warmup_steps = float(state["warmup_steps"])
