"""`train.time_limit` (minutes): the run's length planned in steps from the measured speed.

    budget = TimeBudget(6.0, steps_per_epoch=62, validation_cost_in_steps=1.5)
    budget.start_epoch(step=0)                     # at every epoch start
    plan, stop = budget.after_step(41, plan)       # after every optimizer step
    plan = budget.end_epoch(62, plan)              # an epoch's training ended
    plan = budget.after_validation(6.0, 62, plan, finished=False)   # its validation + checkpoint

With a time limit the length of training comes from measurement, not from
`train.epochs` (which only shapes the plan until the first steps are timed).
The plan is in optimizer steps, so a budget shorter than one epoch still gets a
complete warmup + cosine and stops mid-epoch: k more steps cost
`k * seconds_per_step`, plus the after-epoch overhead (validation, checkpoint) of
every epoch end they cross, plus one final validation.

The plan is made once, after the first PLAN_AFTER_STEPS timed steps, and corrected
only at epoch ends (`correction_needed`: always when it no longer fits, only beyond
PLAN_TOLERANCE when more would fit); each move of the end is `optim.move_end`, which
keeps the cosine's progress, so between corrections the lr is a pure function of the
step. The run also stops inside an epoch when the next step and the final
validation would no longer fit (`next_step_fits`). Under DDP rank 0 decides the plan
and the stop and every rank follows (one small broadcast per step).
docs/internals.md ("Time budget") says why this and not lr(fraction of time).

Under `train.progressive` steps differ in cost: each epoch starts with its relative
step cost (`start_epoch(step, step_cost=...)`, ~ the input area), the measured times
are kept in full-size units, and the plan costs the remaining steps with
`mean_step_cost(first, total)`, the mean relative cost of those steps under a plan
of `total` (which moves the ramp's end with it), so cheaper early epochs buy more.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

from detector.training import distributed as ddp
from detector.training.optim import LrPlan, move_end

PLAN_AFTER_STEPS = (
    5  # the first plan waits for this many timed steps (the first one includes worker start-up)
)
PLAN_COST_ROUNDS = 8  # rounds that settle a plan's length and its mean step cost
PLAN_TOLERANCE = 0.01  # at an epoch end, a plan that would still fit is lengthened only beyond 1%
MAX_WARMUP_FRACTION = 0.2  # a budget shorter than the warmup caps it at this share of the plan
SINGLE_PROCESS, CPU = ddp.DistInfo(), torch.device("cpu")  # the defaults: one process, no broadcast


def plan_extra_steps(
    *,
    remaining_s: float,
    step_in_epoch: int,
    steps_per_epoch: int,
    seconds_per_step: float,
    epoch_overhead_s: float,
    final_validation_s: float,
    max_epochs: int = 100_000,
) -> int:
    """How many more optimizer steps fit in the remaining time.

    Args:
        remaining_s: budget left, seconds (may be negative: over budget).
        step_in_epoch: steps already taken in the current epoch (0..steps_per_epoch).
        steps_per_epoch: optimizer steps per epoch (> 0).
        seconds_per_step: measured training time per step (> 0).
        epoch_overhead_s: time spent after each epoch (validation, checkpoint, plots).
        final_validation_s: time of the validation that always ends training.
        max_epochs: bound on the epoch ends considered.

    Returns:
        The largest k >= 0 with k * seconds_per_step + (epoch ends crossed before the
        last step) * epoch_overhead_s + final_validation_s <= remaining_s.
    """
    if seconds_per_step <= 0 or steps_per_epoch <= 0:
        raise ValueError(
            "need positive step time and steps per epoch, "
            f"got {seconds_per_step}, {steps_per_epoch}"
        )
    best = 0
    # With k steps ending inside the e-th epoch from now (e = 0: the current one),
    # e epoch ends are crossed before the last step; each costs the overhead.
    for crossed in range(max_epochs):
        first_k = crossed * steps_per_epoch - step_in_epoch + 1 if crossed else 1
        last_k = (crossed + 1) * steps_per_epoch - step_in_epoch
        budget_for_steps = remaining_s - final_validation_s - crossed * epoch_overhead_s
        k = min(last_k, int(budget_for_steps // seconds_per_step))
        if k < first_k:
            break
        best = k
    return best


class TimeBudget:
    """The clock of a time-limited run, the speed measured so far, and the plan they give."""

    def __init__(
        self,
        limit_minutes: float,
        *,
        steps_per_epoch: int,
        eval_interval: int = 1,
        validation_cost_in_steps: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        elapsed_before_s: float = 0.0,
        planned: bool = False,
        dist: ddp.DistInfo = SINGLE_PROCESS,
        device: torch.device = CPU,
        mean_step_cost: Callable[[int, int], float] | None = None,
    ) -> None:
        """Args:
        limit_minutes: the budget (`train.time_limit`), > 0.
        steps_per_epoch: optimizer steps per epoch.
        eval_interval: validate every this many epochs (`train.eval_interval`).
        validation_cost_in_steps: one validation's cost in training steps until one is
            timed (validation images / batch size / 3: inference is ~3x cheaper per image).
        clock: seconds, monotonic (injectable for tests).
        elapsed_before_s: time already spent by the run (set-up, before a resume).
        planned: the first plan is made (a resumed run's is in its last.pt).
        dist, device: under DDP rank 0 plans and decides the stop; the others follow.
        mean_step_cost: (first_step, total_steps) -> the mean cost of those steps relative
            to a step at model.image_size, under a plan of `total_steps`
            (`ProgressiveSizes.mean_step_cost`); None: every step costs the same.
        """
        if limit_minutes <= 0:
            raise ValueError(f"train.time_limit: {limit_minutes} must be positive (minutes)")
        self.limit_s = limit_minutes * 60.0
        self.steps_per_epoch, self.eval_interval = steps_per_epoch, eval_interval
        self.validation_cost_in_steps = validation_cost_in_steps
        self.clock = clock
        self.start = clock() - elapsed_before_s
        self.planned = planned
        self.dist, self.device = dist, device
        self.train_s = 0.0  # training time of finished epochs (this session)
        self.train_steps = 0
        self.overhead_s: list[float] = []
        self._epoch_start: tuple[float, int] | None = None
        self._epoch_cost = 1.0  # the running epoch's step cost relative to a full-size step
        self.mean_step_cost = mean_step_cost or (lambda first_step, total_steps: 1.0)
        self._last_epoch: tuple[float, int] | None = (
            None  # (seconds, steps) of the last finished epoch
        )

    # ------------------------------------------------------------- what the trainer calls

    def after_step(self, step: int, plan: LrPlan) -> tuple[LrPlan, bool]:
        """After optimizer step `step`: the plan (the first one once enough steps are timed)
        and whether to stop here (the plan's end reached, or the next step would not fit)."""
        if not self.planned and self.steps_timed(step) >= PLAN_AFTER_STEPS:
            # Every rank counts the same steps, so under DDP all of them plan here together.
            plan = self._plan(step, plan, broadcast=self.dist.distributed)
        stop = step >= plan.total_steps or (
            self.dist.is_main
            and not self.next_step_fits(
                current_step=step, validation_estimate_s=self.validation_estimate(step)
            )
        )
        if self.dist.distributed:  # rank 0's clock decides, so every rank stops after the same step
            (stop,) = ddp.broadcast_numbers([float(stop)], self.dist, self.device)
        return plan, bool(stop)

    def end_epoch(self, step: int, plan: LrPlan) -> LrPlan:
        """Training of the epoch ended at optimizer step `step` (before validation): time it
        and correct the plan with its speed, the validation still due."""
        started, first_step = self._epoch_start
        seconds = (self.clock() - started) / self._epoch_cost  # in full-size steps' time
        self.train_s += seconds
        self.train_steps += step - first_step
        if step > first_step:
            self._last_epoch = (seconds, step - first_step)
        self._epoch_start = None
        return self._plan(step, plan, broadcast=True)

    def after_validation(
        self, seconds: float, step: int, plan: LrPlan, *, finished: bool
    ) -> LrPlan:
        """An epoch end's validation, checkpoint and plots took `seconds`; unless the run is
        finished, correct the plan again now that their cost is known."""
        self.record_overhead(seconds)
        return plan if finished else self._plan(step, plan, broadcast=True, overhead_due=False)

    def _plan(
        self, step: int, plan: LrPlan, *, broadcast: bool, overhead_due: bool = True
    ) -> LrPlan:
        """The plan from the measured speed: the first one, or an epoch end's correction
        (only when `correction_needed` says so). Under DDP (`broadcast`) rank 0 decides."""
        total = plan.total_steps
        if self.dist.is_main:
            total = (
                self.plan_steps(
                    current_step=step,
                    validation_estimate_s=self.validation_estimate(step),
                    overhead_due=overhead_due,
                )
                or total
            )
        if broadcast:
            (total,) = ddp.broadcast_numbers([total], self.dist, self.device)
        total = max(int(total), step)
        if not self.planned or correction_needed(plan.total_steps, total):
            plan = move_end(
                plan, step=step, total_steps=total, max_warmup_fraction=MAX_WARMUP_FRACTION
            )
        self.planned = True
        return plan

    def planned_epochs(self, plan: LrPlan, epoch: int) -> int:
        """The epochs `plan` needs (never fewer than the `epoch` epochs done)."""
        return max(math.ceil(plan.total_steps / self.steps_per_epoch), epoch)

    def validation_estimate(self, step: int) -> float:
        """One validation's cost until one was timed, from the training speed."""
        return (self.seconds_per_step(step) or 0.0) * self.validation_cost_in_steps

    # ------------------------------------------------------------- measurements and arithmetic

    def elapsed(self) -> float:
        """Seconds since the run started (including before a resume)."""
        return self.clock() - self.start

    def start_epoch(self, step: int, *, step_cost: float = 1.0) -> None:
        """Training of an epoch begins at optimizer step `step`; its steps cost `step_cost`
        of a step at model.image_size (train.progressive)."""
        self._epoch_start = (self.clock(), step)
        self._epoch_cost = step_cost

    def record_overhead(self, seconds: float) -> None:
        """Time spent after an epoch's training: validation, checkpoint, plots."""
        self.overhead_s.append(seconds)

    def seconds_per_step(self, current_step: int) -> float | None:
        """Mean training time per optimizer step at model.image_size so far (None before any
        step)."""
        seconds, steps = self.train_s, self.train_steps
        if self._epoch_start is not None:
            seconds += (self.clock() - self._epoch_start[0]) / self._epoch_cost
            steps += current_step - self._epoch_start[1]
        return seconds / steps if steps > 0 else None

    def recent_seconds_per_step(self, current_step: int) -> float | None:
        """Time per step of the last finished epoch (of the running one before any finished).

        The plan uses the recent speed rather than the run's mean, so a machine that
        slows down or speeds up is followed within an epoch.
        """
        if self._last_epoch is not None:
            seconds, steps = self._last_epoch
            if steps > 0:
                return seconds / steps
        return self.seconds_per_step(current_step)

    def steps_timed(self, current_step: int) -> int:
        """Optimizer steps timed in this session so far."""
        running = current_step - self._epoch_start[1] if self._epoch_start is not None else 0
        return self.train_steps + running

    def validation_s(self, validation_estimate_s: float, *, final: bool = False) -> float:
        """The cost planned for one epoch end's validation (+ checkpoint), else the estimate.

        The smaller of the median of those timed and the latest, so one slow
        validation (often the first: cold caches) does not shorten the plans after
        it. `final`: what the stop inside an epoch reserves for the last
        validation, the larger of the two.
        """
        if not self.overhead_s:
            return validation_estimate_s
        median, latest = statistics.median(self.overhead_s), self.overhead_s[-1]
        return max(median, latest) if final else min(median, latest)

    def next_step_fits(self, *, current_step: int, validation_estimate_s: float) -> bool:
        """Whether one more step and the final validation still fit in the budget.

        The step is costed at the slower of the running epoch's and the last epoch's
        speed, so a slowdown inside the last epoch still ends inside the budget.
        """
        speeds = [
            speed
            for speed in (
                self.seconds_per_step(current_step),
                self.recent_seconds_per_step(current_step),
            )
            if speed is not None
        ]
        if not speeds:
            return (
                self.elapsed() + self.validation_s(validation_estimate_s, final=True)
                <= self.limit_s
            )
        step_s = max(speeds) * self._epoch_cost  # the next step is one of the running epoch's
        if self._epoch_start is not None and current_step > self._epoch_start[1]:
            step_s = max(
                step_s,
                (self.clock() - self._epoch_start[0]) / (current_step - self._epoch_start[1]),
            )
        return (
            self.elapsed() + step_s + self.validation_s(validation_estimate_s, final=True)
            <= self.limit_s
        )

    def plan_steps(
        self, *, current_step: int, validation_estimate_s: float, overhead_due: bool = True
    ) -> int | None:
        """Total optimizer steps (from the run's start) that fit in the budget.

        Args:
            current_step: optimizer steps taken so far.
            validation_estimate_s: one validation's cost until one has been timed.
            overhead_due: at an epoch end, whether its validation is still to come
                (False when planning right after it).

        Returns:
            The planned total, or None before any step was timed.
        """
        seconds_per_step = self.recent_seconds_per_step(current_step)
        if seconds_per_step is None:
            return None
        validation_s = self.validation_s(validation_estimate_s)
        steps_per_epoch = self.steps_per_epoch
        epoch_overhead_s = validation_s / max(self.eval_interval, 1)
        remaining_s = self.limit_s - self.elapsed()
        at_epoch_end = overhead_due and current_step > 0 and current_step % steps_per_epoch == 0
        # Steps of unequal cost (train.progressive): plan at the mean cost of the steps the
        # plan itself holds, which moves with its length; a few rounds settle it.
        extras, cost = [], self.mean_step_cost(current_step, current_step + 1)
        for _ in range(PLAN_COST_ROUNDS):
            extra = plan_extra_steps(
                # At an epoch end its overhead is still to come, unless training stops here
                # (then the final validation takes its place).
                remaining_s=remaining_s - epoch_overhead_s if at_epoch_end else remaining_s,
                step_in_epoch=current_step % steps_per_epoch,
                steps_per_epoch=steps_per_epoch,
                seconds_per_step=seconds_per_step * cost,
                epoch_overhead_s=epoch_overhead_s,
                final_validation_s=validation_s,
            )
            extras.append(extra)
            settled = self.mean_step_cost(current_step, current_step + extra) if extra else cost
            if abs(settled - cost) < 1e-3:
                return current_step + extra
            cost = settled
        return current_step + min(extras[-2:])  # not settled: the shorter of the last two


def correction_needed(
    current_total: int, new_total: int, *, tolerance: float = PLAN_TOLERANCE
) -> bool:
    """Whether an epoch-end plan replaces the current one.

    Always when the current plan no longer fits (`new_total` smaller: the run must
    end inside the budget); when more steps would fit, only beyond `tolerance` of
    the current total, so timing noise does not bend the schedule at every epoch.
    """
    if new_total < current_total:
        return True
    return new_total - current_total > max(1.0, tolerance * current_total)
