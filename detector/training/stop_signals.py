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
they ignore SIGINT (a terminal's Ctrl-C reaches the whole process group) and a
SIGTERM sent by anyone but the main process (torchrun and SLURM signal the group
too), so they serve batches for as long as the main process needs to finish its
step; the main process then shuts them down.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WORKER_TERM_GRACE_S = 10.0  # a worker's life after SIGTERM where its sender cannot be known


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
    """In a DataLoader worker: ignore SIGINT, and SIGTERM unless the main process sends it.

    SIGINT (a terminal's Ctrl-C) and a SIGTERM from elsewhere (torchrun, SLURM and
    `kill -TERM -PGID` signal the whole process group) are the main process's to act
    on: it finishes its step, which may need more batches (`train.accumulate` > 1,
    slow loading), saves, and then shuts the workers down itself
    (`failures.shut_down_workers`). A worker that left earlier would end the run as
    "dead worker" without the save. A SIGTERM from the main process (torch's
    shutdown, multiprocessing at exit) ends the worker at once, and torch's watchdog
    ends it if the main process dies. Where the sender cannot be known (no
    `sigwaitinfo`: macOS, Windows), a SIGTERM ends the worker after
    WORKER_TERM_GRACE_S, as before.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        _exit_after_grace_on_sigterm()
        return
    parent = multiprocessing.parent_process()
    main_pid = parent.pid if parent is not None else os.getppid()
    # Blocked here, in the worker's main thread; threads started later inherit the mask, so
    # the signal waits for the watcher below instead of running the default action.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def watch() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == main_pid:
                os._exit(0)  # 0: torch's main process reads a signal death as a failed worker

    threading.Thread(target=watch, name="sigterm-from-main", daemon=True).start()


def _exit_after_grace_on_sigterm() -> None:
    """On SIGTERM exit quietly after WORKER_TERM_GRACE_S (the fallback of `worker_signal_setup`)."""
    started = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        if not started.is_set():
            started.set()
            timer = threading.Timer(WORKER_TERM_GRACE_S, os._exit, (0,))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, on_term)
