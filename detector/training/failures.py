"""Errors that end a training run, each turned into one line that ends with the resume hint.

    try:
        ...  # the training loop
    except (RuntimeError, OSError) as exc:
        reason = describe_failure(exc)
        if reason is None:
            raise                      # a bug: keep its traceback
        raise TrainingError(f"{reason}; {resume_hint(run_dir)}") from exc

Known causes: a DataLoader worker that died (the out-of-memory killer, a crash),
one that hangs past `train.worker_timeout`, too many undecodable images in a row,
running out of memory, and a write that failed (disk full, quota, read-only
filesystem; see `run_files.writing`). The previous last.pt is never touched by a failure:
checkpoints are replaced atomically (detector/checkpoint.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from detector.data.loading import UndecodableImagesError
from detector.training.run_files import WriteError


class TrainingError(RuntimeError):
    """A run ended by a known cause; the message is one line with the reason and the resume hint."""


def resume_hint(run_dir: Path | None) -> str:
    """`continue with: detector train --resume RUN`, or why there is nothing to resume yet."""
    if run_dir is not None and (Path(run_dir) / "weights" / "last.pt").is_file():
        return f"continue with: detector train --resume {run_dir}"
    return "no checkpoint was written yet, so start the run again"


def shut_down_workers(loader: torch.utils.data.DataLoader) -> None:
    """Stop a loader's persistent workers now, and SIGKILL any that do not exit.

    Workers ignore a SIGTERM from outside (data.loading.worker_signals), so this is
    how they end after a stop; a worker stuck in C code (after a DataLoader timeout)
    would never exit by itself at all.
    """
    iterator = getattr(loader, "_iterator", None)  # persistent workers keep theirs here
    workers = list(getattr(iterator, "_workers", []))
    if iterator is None or not workers:
        return
    iterator._shutdown_workers()  # torch's own: stops watching their exits, joins briefly, SIGTERMs
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)
    loader._iterator = None


def _last_line(message: str) -> str:
    """The original message of an exception torch re-raised from a DataLoader worker."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else message
    # "detector.data.loading.dataset.UndecodableImagesError: 50 images ..." -> the message part
    return re.sub(r"^[\w.]+Error: ", "", line)


def describe_failure(exc: BaseException) -> str | None:
    """A one-line reason for an error that ends a run, or None for an unexpected one (a bug)."""
    text = str(exc)
    if isinstance(exc, WriteError):
        return f"{exc.strerror}; the previous last.pt is kept"
    if isinstance(exc, UndecodableImagesError):
        return _last_line(text)
    if isinstance(exc, torch.OutOfMemoryError):
        return "out of memory on the training device; lower train.batch_size or model.image_size"
    if isinstance(exc, RuntimeError) and "DataLoader timed out after" in text:
        seconds = re.search(r"after (\d+(?:\.\d+)?) seconds", text)
        waited = f" for {seconds.group(1)} s" if seconds else ""
        return (
            f"no batch from the DataLoader workers{waited} (train.worker_timeout): a worker hangs, "
            "e.g. on a stalled network filesystem"
        )
    if (
        isinstance(exc, RuntimeError)
        and "DataLoader worker" in text
        and ("killed by signal" in text or "exited unexpectedly" in text)
    ):
        pid = re.search(r"\(pid(?:\(s\))? ([\d, ]+)\)", text)
        signal_name = re.search(r"killed by signal: ([^.]+)", text)
        how = (
            f"was killed by signal: {signal_name.group(1)}"
            if signal_name
            else "exited unexpectedly"
        )
        return (
            f"a DataLoader worker (pid {pid.group(1) if pid else '?'}) {how}; "
            "often the out-of-memory "
            "killer: lower train.workers or train.batch_size"
        )
    return None
