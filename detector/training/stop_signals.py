"""SIGTERM / SIGINT during training: finish the optimizer step, save, exit with 128 + signal.

    with StopSignals(log) as signals:
        ...  # after every optimizer step:
        if signals.signum is not None:
            ...  # save last.pt, then raise TrainingInterrupted(signals.signum, ...)

The first signal only sets `signum` (a handler must not save or raise in the
middle of a step or a checkpoint write); the loop polls it after each optimizer
step. A second signal stops at once: it raises `ImmediateStop` wherever
the program is, and last.pt stays the previous complete file (a checkpoint
write in progress removes its temporary file). Handlers are installed only in
the main thread (Python allows no others), and the previous ones are put back
on exit.

DataLoader workers leave the decision to the main process
(`data.loading.worker_signals.worker_signal_setup`):
they ignore SIGINT (a terminal's Ctrl-C reaches the whole process group) and a
SIGTERM sent by anyone but the main process (torchrun and SLURM signal the group
too), so they serve batches for as long as the main process needs to finish its
step; the main process then shuts them down.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

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
            self.log(f"{signal_name(signum)}: finishing the current step, then saving last.pt "
                     "(signal again to stop at once, without saving)")
            return
        raise ImmediateStop(signum, f"{signal_name(signum)} again: stopped at once, without saving; "
                                    "last.pt is the previous checkpoint")

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
