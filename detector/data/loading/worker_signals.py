"""Signals in a DataLoader worker: the main process decides when a training run stops.

    DataLoader(dataset, num_workers=4, worker_init_fn=init_worker)   # init_worker calls:
    worker_signal_setup()

Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group) and a
SIGTERM sent by anyone but the main process (torchrun and SLURM signal the group
too), so they serve batches for as long as the main process needs to finish its
step (`training.run_controls.StopSignals`); the main process then shuts them down.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from types import FrameType

WORKER_TERM_GRACE_S = 10.0  # a worker's life after SIGTERM where its sender cannot be known


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
    WORKER_TERM_GRACE_S.
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
