"""Per-epoch augmentation switches: `train.close_mosaic` turns mosaic off for the end of training.

    from detector.training.augment_schedule import mosaic_enabled, start_epoch_augment
    mosaic_enabled(close_mosaic=2, epoch=8, planned_epochs=10)     # False: epochs 9 and 10 (1-based) close it
    start_epoch_augment(loader.sampler, cfg.train, epoch, planned_epochs)   # at every epoch start

`train.close_mosaic` is an integer N (the last N epochs train without mosaic) or a
number strictly between 0 and 1 (that fraction of the planned epochs, rounded up:
0.1 of 40 epochs closes the last 4). Without `train.time_limit` the planned epochs
are `train.epochs`; under it, the count the time budget plans
(detector/training/time_budget.py), which the trainer corrects at epoch ends, so
the switch follows the current plan until it closes mosaic; once off, mosaic
stays off (also across a resume) even when a later plan grows. Extending a
finished run with more `train.epochs` (a new schedule segment) starts with mosaic
on again. 0 keeps mosaic to the end.

The switch reaches the DataLoader workers through the sampler (each index carries
a `SamplePlan`; detector/data/loading/sampling.py), never by changing the
dataset in the main process, which persistent workers would not see.
"""

from __future__ import annotations

import math
from typing import Any

from detector.config import TrainConfig


def closing_epochs(close_mosaic: int | float, planned_epochs: int) -> int:
    """How many final epochs train without mosaic (integer: as given; fraction: rounded up)."""
    if isinstance(close_mosaic, int):
        return close_mosaic
    return math.ceil(close_mosaic * planned_epochs - 1e-9)  # 0.1 * 30 is 3.0000000000000004


def mosaic_enabled(close_mosaic: int | float, epoch: int, planned_epochs: int) -> bool:
    """Whether 0-based `epoch` trains with mosaic (when the `augment:` list has one)."""
    return epoch < planned_epochs - closing_epochs(close_mosaic, planned_epochs)


def start_epoch_augment(sampler: Any, train_cfg: TrainConfig, epoch: int, planned_epochs: int, *,
                        closed: bool = False) -> bool:
    """Tell the training sampler this epoch's mosaic switch (a no-op for samplers without plans).

    `closed`: mosaic was switched off at an earlier epoch; it stays off, since a plan
    lengthened under `train.time_limit` would otherwise switch it back on. Returns
    whether mosaic is closed from this epoch on (keep it in `TrainState.mosaic_closed`).
    """
    closed = closed or not mosaic_enabled(train_cfg.close_mosaic, epoch, planned_epochs)
    if hasattr(sampler, "set_mosaic"):
        sampler.set_mosaic(not closed)
    return closed
