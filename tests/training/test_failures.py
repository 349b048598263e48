"""Errors that end a run: one line with the reason and the resume hint, last.pt still loadable.

Each case runs `detector train` (click's runner, in process) on the tiny config
(tests/conftest.py: 8 images, batch 2, 2 epochs) and breaks it in epoch 2, after
epoch 1 wrote last.pt, except the hung worker, which hangs in epoch 1.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from detector import checkpoint as checkpoint_module
from detector.checkpoint import load_checkpoint
from detector.cli import main
from detector.data import images as images_module
from detector.data.images import ImageReadError

_REAL_READ = images_module.read_image_rgb


def _train(config: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["train", str(config)])
    return result.exit_code, result.stderr.strip().splitlines()


def _misbehaving_reader(monkeypatch: pytest.MonkeyPatch, *, after: dict[str, int], action) -> None:
    """read_image_rgb that runs `action(path)` once a process
    ("main"/"worker") read `after[...]` images."""
    counts: Counter[str] = Counter()

    def read(path, **kwargs):
        where = "worker" if torch.utils.data.get_worker_info() is not None else "main"
        counts[where] += 1
        if counts[where] > after.get(where, 10**9):
            action(path)
        return _REAL_READ(path, **kwargs)

    monkeypatch.setattr(images_module, "read_image_rgb", read)


def _previous_last_is_epoch_1(run: Path) -> None:
    assert load_checkpoint(run / "weights/last.pt", require_training_state=True)["epoch"] == 1
    assert [p.name for p in (run / "weights").iterdir() if p.name.endswith(".tmp")] == []


def test_disk_full_while_writing_last_pt(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    config = tiny_training_yaml("c.yaml", tmp_path / "data", run, num_train=8, epochs=2)
    real_save, saves = torch.save, Counter()

    def save(obj, handle, *args, **kwargs):
        if "train_model" in obj:  # last.pt (best.pt has no training state)
            saves["last"] += 1
            if saves["last"] == 2:  # epoch 2's last.pt: half written, then the disk is full
                handle.write(b"\0" * 100)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    code, lines = _train(config)
    assert code == 1
    assert lines[-1] == (
        f"Error: cannot write {run}/weights/last.pt: No space left on device; the previous "
        f"last.pt is kept; continue with: detector train --resume {run}"
    )
    assert "Traceback" not in "\n".join(lines)
    _previous_last_is_epoch_1(run)


def test_killed_dataloader_worker(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    config = tiny_training_yaml("c.yaml", tmp_path / "data", run, num_train=8, epochs=2, workers=1)
    # The worker dies by SIGKILL (what the out-of-memory killer sends) at its 10th image: epoch 2.
    _misbehaving_reader(
        monkeypatch, after={"worker": 9}, action=lambda path: os.kill(os.getpid(), signal.SIGKILL)
    )
    code, lines = _train(config)
    assert code == 1
    # Seen by torch's SIGCHLD handler ("killed by signal") or when waiting for its batch ("exited").
    assert re.fullmatch(
        r"Error: a DataLoader worker \(pid \d+\) "
        r"(was killed by signal: Killed|exited unexpectedly); "
        r"often the out-of-memory killer: lower train.workers or train.batch_size; "
        rf"continue with: detector train --resume {re.escape(str(run))}",
        lines[-1],
    ), lines[-1]
    _previous_last_is_epoch_1(run)


@pytest.mark.parametrize("workers", [0, 1])
def test_too_many_undecodable_images_in_a_row(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    run = tmp_path / "run"
    config = tiny_training_yaml(
        "c.yaml", tmp_path / "data", run, num_train=8, epochs=2, workers=workers
    )

    def undecodable(path):
        raise ImageReadError(path, "truncated JPEG")

    # Every image fails from epoch 2 on
    # (workers=0: after 8 train + 2 val reads in the main process).
    _misbehaving_reader(
        monkeypatch, after={"worker": 8} if workers else {"main": 10}, action=undecodable
    )
    with pytest.warns(RuntimeWarning, match="cannot decode") if not workers else _nothing():
        code, lines = _train(config)
    assert code == 1
    assert lines[-1].startswith("Error: 8 images in a row failed to decode (last: ")
    assert lines[-1].endswith(
        ".jpg); run `detector data check --decode` on the dataset; "
        f"continue with: detector train --resume {run}"
    )
    _previous_last_is_epoch_1(run)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_hung_worker_times_out(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    config = tiny_training_yaml(
        "c.yaml", tmp_path / "data", run, num_train=8, epochs=2, workers=1, worker_timeout=1.5
    )
    _misbehaving_reader(monkeypatch, after={"worker": 4}, action=lambda path: time.sleep(60))
    start = time.monotonic()
    code, lines = _train(config)
    assert code == 1 and time.monotonic() - start < 50
    assert lines[-1] == (
        "Error: no batch from the DataLoader workers for 1.5 s (train.worker_timeout): a worker "
        "hangs, e.g. on a stalled network filesystem; no checkpoint was written yet, so start the "
        "run again"
    )
    assert not (run / "weights/last.pt").exists()


def test_out_of_memory_on_the_device(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detector.training import engine

    run = tmp_path / "run"
    config = tiny_training_yaml("c.yaml", tmp_path / "data", run, num_train=8, epochs=2)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine, "optimizer_step", out_of_memory)
    code, lines = _train(config)
    assert code == 1
    assert lines[-1] == (
        "Error: out of memory on the training device; lower train.batch_size or "
        "model.image_size; no checkpoint was written yet, so start the run again"
    )
