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

DataLoader workers leave the decision to the main process (`worker_signal_setup`):
they ignore SIGINT (a terminal's Ctrl-C reaches the whole process group), and on
SIGTERM (torchrun and SLURM signal the group too) they keep serving batches for a
grace period before exiting, so the main process can finish its step.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WORKER_TERM_GRACE_S = 10.0  # a worker's life after SIGTERM: the main process shuts it down sooner


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


def worker_signal_setup() -> None:
    """In a DataLoader worker: ignore SIGINT; on SIGTERM exit quietly after a grace period.

    A worker that died by a signal would make torch raise in the main process at an
    arbitrary point (its SIGCHLD handler), possibly in the middle of a step; exiting
    with status 0 a little later lets the main process stop at a step boundary.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        if not started.is_set():
            started.set()
            timer = threading.Timer(WORKER_TERM_GRACE_S, os._exit, (0,))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, on_term)
