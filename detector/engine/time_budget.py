"""Fit training into a wall-clock budget (`train.time_limit`, minutes).

    budget = TimeBudget(limit_minutes=6.0)
    ...  # after each epoch:
    budget.record_epoch(41.0)
    budget.record_validation(6.0)
    planned_epochs = budget.plan(completed_epochs=1, eval_interval=1, validation_estimate_s=6.0)

With a time limit the number of epochs comes from measurement, not from
`train.epochs` (which only shapes the plan until the first epoch is timed): after
every epoch the trainer asks how many epochs fit in what is left, keeping room for
the final validation, and re-plans the cosine schedule to end there.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def plan_total_epochs(
    *,
    remaining_s: float,
    completed_epochs: int,
    epoch_train_s: float,
    validation_s: float,
    eval_interval: int,
    max_extra_epochs: int = 100_000,
) -> int:
    """The total number of epochs that fits in the remaining time.

    k more epochs cost `k * epoch_train_s` plus their validations: one every
    `eval_interval` epochs, and always one at the end (even for k = 0, when the
    epoch just finished was not validated yet), i.e.
    `validation_s * max(1, k / eval_interval)`.

    Args:
        remaining_s: budget left, seconds (may be negative: over budget).
        completed_epochs: epochs finished so far.
        epoch_train_s: measured training time of one epoch, seconds (> 0).
        validation_s: measured or estimated time of one validation, seconds.
        eval_interval: validate every this many epochs.
        max_extra_epochs: upper bound on k (guards against absurd plans).

    Returns:
        completed_epochs + the largest k >= 0 whose cost fits in remaining_s.
    """
    if epoch_train_s <= 0:
        raise ValueError(f"epoch_train_s must be positive, got {epoch_train_s}")
    extra = 0
    while extra < max_extra_epochs:
        k = extra + 1
        cost = k * epoch_train_s + validation_s * max(1.0, k / max(eval_interval, 1))
        if cost > remaining_s:
            break
        extra = k
    return completed_epochs + extra


class TimeBudget:
    """The clock of a time-limited run and the epoch times measured so far."""

    def __init__(
        self,
        limit_minutes: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        elapsed_before_s: float = 0.0,
    ) -> None:
        """Args:
        limit_minutes: the budget (`train.time_limit`), > 0.
        clock: seconds, monotonic (injectable for tests).
        elapsed_before_s: time already spent by the run before a resume.
        """
        if limit_minutes <= 0:
            raise ValueError(f"train.time_limit: {limit_minutes} must be positive (minutes)")
        self.limit_s = limit_minutes * 60.0
        self.clock = clock
        self.start = clock() - elapsed_before_s
        self.epoch_train_s: list[float] = []
        self.validation_s: list[float] = []

    def elapsed(self) -> float:
        """Seconds since the run started (including before a resume)."""
        return self.clock() - self.start

    def record_epoch(self, train_seconds: float) -> None:
        """Add one epoch's measured training time."""
        self.epoch_train_s.append(train_seconds)

    def record_validation(self, seconds: float) -> None:
        """Add one validation's measured time."""
        self.validation_s.append(seconds)

    def validation_reserve(self) -> float:
        """Seconds to keep for the final validation (0 until one was timed)."""
        return self.validation_s[-1] if self.validation_s else 0.0

    def out_of_time(self) -> bool:
        """True once only the final validation still fits (polled after every step)."""
        return self.elapsed() > self.limit_s - self.validation_reserve()

    def plan(self, *, completed_epochs: int, eval_interval: int, validation_estimate_s: float) -> int:
        """Total epochs that fit, from the epochs measured so far.

        The median of the last three epochs ignores a slow first epoch (worker
        start-up, allocator warm-up) once later ones are measured.

        Args:
            completed_epochs: epochs finished so far (>= 1 measured).
            eval_interval: validate every this many epochs.
            validation_estimate_s: used until a validation has been timed.
        """
        if not self.epoch_train_s:
            raise ValueError("plan() needs at least one measured epoch")
        epoch_train_s = statistics.median(self.epoch_train_s[-3:])
        validation_s = self.validation_s[-1] if self.validation_s else validation_estimate_s
        return plan_total_epochs(
            remaining_s=self.limit_s - self.elapsed(),
            completed_epochs=completed_epochs,
            epoch_train_s=epoch_train_s,
            validation_s=validation_s,
            eval_interval=eval_interval,
        )
