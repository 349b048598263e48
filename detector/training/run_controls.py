"""What acts on a run between its steps besides the loop itself: stop signals, periodic saves,
`train.close_mosaic`, `train.progressive`. Each is one object the trainer calls by name where
it matters.

    with StopSignals(log) as signals:
        ...  # after every optimizer step:
        if signals.agreed(dist, device):
            ...  # save last.pt, then raise TrainingInterrupted(signum, ...)
    saves = PeriodicSave(parse_save_period("30 min"), clock=time.monotonic, step=0)
    if saves.due(step): ...; saves.record(step, epoch=0, batches_done=12)
    state.mosaic_closed = CloseMosaic(2).start_epoch(loader.sampler, epoch=8, planned_epochs=10,
                                                     closed=state.mosaic_closed)
    sizes = ProgressiveSizes(ProgressiveResize(scale=0.6, fraction=0.5), image_size=160)
    side, state.full_size_reached = sizes.start_epoch(loader.sampler, epoch=3, planned_epochs=10,
                                                      reached=state.full_size_reached)
    budget.start_epoch(step, step_cost=sizes.step_cost(side))

Stop signals (SIGTERM / SIGINT): the first only sets `signum` (a handler must not
save or raise in the middle of a step or a checkpoint write); the loop polls it
after each optimizer step, saves a mid-epoch last.pt and exits with 128 + signal.
A second signal stops at once: it raises `ImmediateStop` wherever the program is,
and last.pt stays the previous complete file (a checkpoint write in progress
removes its temporary file). Handlers are installed only in the main thread
(Python allows no others), and the previous ones are put back on exit.
DataLoader workers leave the decision to the main process
(`data.loading.worker_signals.worker_signal_setup`): they ignore SIGINT (a
terminal's Ctrl-C reaches the whole process group) and a SIGTERM sent by anyone but
the main process (torchrun and SLURM signal the group too), so they serve batches
for as long as the main process needs to finish its step; the main process then
shuts them down.

`train.save_period` writes the same mid-epoch last.pt every N steps or minutes.

`train.close_mosaic` is an integer N (the last N epochs train without mosaic) or a
number strictly between 0 and 1 (that fraction of the planned epochs, rounded up:
0.1 of 40 epochs closes the last 4). Without `train.time_limit` the planned epochs
are `train.epochs`; under it, the count the time budget plans, which the trainer
corrects at epoch ends, so the switch follows the current plan until it closes
mosaic; once off, mosaic stays off (also across a resume: `TrainState.mosaic_closed`)
even when a later plan grows. Extending a finished run with more `train.epochs`
(a new cosine) starts with mosaic on again. 0 keeps mosaic to the end. The switch
reaches the DataLoader workers through the sampler (each index carries a
`SamplePlan`; detector/data/loading/sampling.py), never by changing the dataset in
the main process, which persistent workers would not see.

`train.progressive` ({scale, fraction}) trains the first `fraction` of the planned
epochs at smaller inputs: the sides from `scale * model.image_size` (rounded down to
a multiple of 32, `start_side`) up to model.image_size in steps of 32, each for an
equal share of those epochs (scale 0.6 at 160 px: 96, then 128), then
model.image_size to the end. Like close_mosaic it follows the current plan and,
once at model.image_size, stays there (`TrainState.full_size_reached`), also when a
later plan grows. A step at side s costs about (s / image_size)^2 of a full one
(`step_cost`, the area: convolutions dominate): the time budget times steps in
full-size units and plans the remaining steps with these costs
(training/time_budget.py), so the cheap early epochs buy more epochs in the
same minutes. Validation always runs at model.image_size.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import torch

from detector.config import ProgressiveResize, SavePeriod
from detector.training import distributed as ddp

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Training stopped on a signal; `exit_code` is the shell's convention (128 + signal number)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class ImmediateStop(BaseException):
    """A second stop signal: raised from the handler wherever the program is.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the
    way swallows it; `fit` turns it into TrainingInterrupted.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


def signal_name(signum: int) -> str:
    """SIGTERM, SIGINT, ... (or the number)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class StopSignals:
    """Context manager: turn SIGTERM/SIGINT into a stop request polled by the training loop."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            self.log(
                f"{signal_name(signum)}: finishing the current step, then saving last.pt "
                "(signal again to stop at once, without saving)"
            )
            return
        raise ImmediateStop(
            signum,
            f"{signal_name(signum)} again: stopped at once, without saving; "
            "last.pt is the previous checkpoint",
        )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def agreed(self, dist: ddp.DistInfo, device: torch.device) -> int:
        """The stop signal any rank received (0: none); every rank gets the same answer."""
        return int(ddp.max_across_ranks(float(self.signum or 0), dist, device))


class PeriodicSave:
    """`train.save_period`: when the next mid-epoch last.pt is due, and what last.pt holds.

    Every write of last.pt is recorded (`record`), also the epoch-end ones, so the
    period counts from the latest file and a stop does not write the same position twice.
    """

    def __init__(
        self,
        period: SavePeriod | None,
        *,
        clock: Callable[[], float],
        step: int,
        position: tuple[int, int] = (-1, 0),
    ) -> None:
        """Args:
        period: the parsed `train.save_period`; None saves only at epoch ends and stops.
        clock: monotonic seconds.
        step: the optimizer step last.pt holds (0 for a new run).
        position: (epoch, batches_done) last.pt holds; (-1, 0) when none was written.
        """
        self.period, self.clock = period, clock
        self.saved_at = (step, clock())
        self.position = position

    def due(self, step: int) -> bool:
        """Whether the period has passed since the last write of last.pt."""
        return self.period is not None and self.period.due(
            steps_since_save=step - self.saved_at[0],
            seconds_since_save=self.clock() - self.saved_at[1],
        )

    def record(self, step: int, *, epoch: int, batches_done: int) -> None:
        """last.pt was just written at `step`: `epoch` epochs, `batches_done` of the next."""
        self.saved_at = (step, self.clock())
        self.position = (epoch, batches_done)

    def holds(self, epoch: int, batches_done: int) -> bool:
        """Whether last.pt already holds this position (a stop need not write it again)."""
        return self.position == (epoch, batches_done)


class CloseMosaic:
    """`train.close_mosaic`: mosaic off for the plan's last epochs (see the module docstring)."""

    def __init__(self, close_mosaic: int | float) -> None:
        self.close_mosaic = close_mosaic

    def closing_epochs(self, planned_epochs: int) -> int:
        """How many final epochs train without mosaic (integer: as given; fraction: rounded up)."""
        if isinstance(self.close_mosaic, int):
            return self.close_mosaic
        return math.ceil(
            self.close_mosaic * planned_epochs - 1e-9
        )  # 0.1 * 30 is 3.0000000000000004

    def enabled(self, epoch: int, planned_epochs: int) -> bool:
        """Whether 0-based `epoch` trains with mosaic (when the `augment:` list has one)."""
        return epoch < planned_epochs - self.closing_epochs(planned_epochs)

    def start_epoch(
        self, sampler: Any, epoch: int, planned_epochs: int, *, closed: bool = False
    ) -> bool:
        """Tell the training sampler this epoch's mosaic switch (a no-op without plans).

        `closed`: mosaic was switched off at an earlier epoch; it stays off, since a plan
        lengthened under `train.time_limit` would otherwise switch it back on. Returns
        whether mosaic is closed from this epoch on (kept in `TrainState.mosaic_closed`).
        """
        closed = closed or not self.enabled(epoch, planned_epochs)
        if hasattr(sampler, "set_mosaic"):
            sampler.set_mosaic(not closed)
        return closed


def start_side(scale: float, image_size: int) -> int:
    """The ramp's first side: `scale * image_size` rounded down to a multiple of 32, >= 32."""
    return max(32, int(scale * image_size) // 32 * 32)


class ProgressiveSizes:
    """`train.progressive`: each epoch's input side (see the module docstring)."""

    def __init__(self, progressive: ProgressiveResize | None, image_size: int) -> None:
        self.image_size = image_size
        self.fraction = progressive.fraction if progressive is not None else 0.0
        # The ramp's sides below model.image_size; empty: every epoch at model.image_size.
        self.sides = (
            list(range(start_side(progressive.scale, image_size), image_size, 32))
            if progressive is not None
            else []
        )

    def side(self, epoch: int, planned_epochs: int) -> int:
        """The input side of 0-based `epoch` when `planned_epochs` are planned."""
        ramp_epochs = round(self.fraction * planned_epochs)
        if not self.sides or epoch >= ramp_epochs:
            return self.image_size
        return self.sides[epoch * len(self.sides) // ramp_epochs]

    def step_cost(self, side: int) -> float:
        """A step's cost at `side` relative to one at model.image_size: the input area."""
        return (side / self.image_size) ** 2

    def mean_step_cost(self, first_step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The mean relative cost of steps [first_step, total_steps) under a plan of
        `total_steps` (1.0 for an empty range)."""
        if total_steps <= first_step:
            return 1.0
        planned_epochs = -(-total_steps // steps_per_epoch)
        cost = 0.0
        for epoch in range(first_step // steps_per_epoch, planned_epochs):
            steps = min(total_steps, (epoch + 1) * steps_per_epoch) - max(
                first_step, epoch * steps_per_epoch
            )
            cost += steps * self.step_cost(self.side(epoch, planned_epochs))
        return cost / (total_steps - first_step)

    def start_epoch(
        self, sampler: Any, epoch: int, planned_epochs: int, *, reached: bool = False
    ) -> tuple[int, bool]:
        """Tell the training sampler this epoch's input side; return it and whether the run
        is at model.image_size from this epoch on (kept in `TrainState.full_size_reached`:
        once there it stays, whatever a later plan says)."""
        side = self.image_size if reached else self.side(epoch, planned_epochs)
        if hasattr(sampler, "set_image_size"):
            sampler.set_image_size(side)
        return side, side == self.image_size
