"""`python -m detector train` stopped by SIGTERM mid-epoch, resumed: same steps, same weights.

The straight run and the stopped-then-resumed runs (0 and 2 DataLoader workers;
the signal goes to the whole process group, workers included) are subprocesses on
the tiny config (tests/conftest.py): 8 images of 64 px, batch 2, 2 epochs = 8
optimizer steps, deterministic CPU kernels.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from detector.checkpoint import load_checkpoint
from detector.training.run_files import read_steps

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "detector", "train", *args]


def _wait_for_steps(
    path: Path, count: int, process: subprocess.Popen, timeout_s: float = 180.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if len(read_steps(path)) >= count:
            return
        time.sleep(0.005)
    raise AssertionError(
        f"{path}: {len(read_steps(path))} steps logged, waited for {count} "
        f"(process exit code {process.poll()})"
    )


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "weights/last.pt", require_training_state=True)


def test_sigterm_mid_epoch_then_resume_equals_straight_run(
    tmp_path: Path, tiny_training_yaml
) -> None:
    settings = {"num_train": 8, "epochs": 2, "deterministic": True}
    data = tmp_path / "data"
    straight = tmp_path / "straight"
    result = subprocess.run(
        _train(str(tiny_training_yaml("straight.yaml", data, straight, **settings))),
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected_steps = read_steps(straight / "steps.csv")
    assert [int(row["step"]) for row in expected_steps] == list(range(1, 9))
    expected = _weights(straight)

    chooser = random.Random()  # a different step each time; printed on failure
    for workers in (0, 2):
        stop_after = chooser.choice([1, 2, 3, 5, 6])  # mid-epoch steps
        run = tmp_path / f"stopped{workers}"
        config = tiny_training_yaml(f"w{workers}.yaml", data, run, workers=workers, **settings)
        # Own process group: with workers, SIGTERM goes to the whole group (main and its workers),
        # as SLURM and torchrun send it.
        process = subprocess.Popen(
            _train(str(config)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            _wait_for_steps(run / "steps.csv", stop_after, process)
            os.killpg(process.pid, signal.SIGTERM)
            out, err = process.communicate(timeout=120)
        finally:
            process.kill()
        context = f"workers={workers}, SIGTERM after step {stop_after}: {err[-2000:]}"
        assert process.returncode == 128 + signal.SIGTERM, context
        saved = _weights(run)
        step, batches = saved["step"], saved["epoch_progress"]["batches_done"]
        assert not saved["finished"] and stop_after <= step < 8, context
        assert step == saved["epoch"] * 4 + batches, context
        # Mid-epoch, or (when the signal came during the epoch's validation) at its end.
        where = (
            f"step {step} (epoch {saved['epoch'] + 1}, batch {batches}/4)"
            if batches
            else f"epoch {saved['epoch']} (step {step})"
        )
        assert err.strip().splitlines()[-1] == (
            f"SIGTERM: stopped after {where}; last.pt saved; "
            f"continue with: detector train --resume {run}"
        ), context
        assert out == "", context  # the run directory is printed only when a run completes
        assert [p.name for p in (run / "weights").iterdir() if p.name.endswith(".tmp")] == [], (
            context
        )

        resumed = subprocess.run(
            _train("--resume", str(run)),
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
            cwd=REPO,
        )
        assert resumed.returncode == 0, context + resumed.stderr[-3000:]
        assert resumed.stdout.strip().splitlines()[-1] == str(run)
        assert read_steps(run / "steps.csv") == expected_steps, context
        final = _weights(run)
        assert final["finished"] and final["step"] == 8
        for key in ("train_model", "model"):  # trained and EMA weights, bit for bit
            for name, value in expected[key].items():
                assert torch.equal(final[key][name], value), f"{context}: {key}.{name} differs"
        assert final["optimizer"]["state"].keys() == expected["optimizer"]["state"].keys()
        for index, slot in expected["optimizer"]["state"].items():
            assert torch.equal(
                final["optimizer"]["state"][index]["momentum_buffer"], slot["momentum_buffer"]
            )
