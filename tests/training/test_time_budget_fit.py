"""`train.time_limit` through `fit` itself on a simulated clock: a mid-epoch resume keeps the plan,
and a mosaic closed under a plan stays closed when the plan grows.

The clock advances only when an optimizer step ends (by `step_s` of that step) and
when the (stubbed) validation runs, so the budget sees the same times on any
machine; the model, loss, optimizer, checkpoints and resume are the real ones.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.config import Config, config_from_dict
from detector.training import engine
from detector.training import trainer as trainer_module
from detector.training.resume import prepare_resume
from detector.training.run_controls import TrainingInterrupted
from detector.training.run_files import read_steps

BASE_LR, FINAL_FRACTION = 0.01, 0.05
VALIDATION_S = 2.0


def _clocked_fit(
    monkeypatch: pytest.MonkeyPatch,
    cfg: Config,
    *,
    step_s: Callable[[int], float],
    start_s: float = 0.0,
    signal_after_step: int | None = None,
    resume_checkpoint: dict | None = None,
) -> float:
    """Run `fit` on a fake clock; return the clock at the end (SIGINT after a step: interrupted)."""
    now = [start_s]
    steps = [0 if resume_checkpoint is None else resume_checkpoint["step"]]
    real_step = engine.optimizer_step

    def optimizer_step(*args, **kwargs):
        stepped = real_step(*args, **kwargs)
        steps[0] += 1
        now[0] += step_s(steps[0])
        if steps[0] == signal_after_step:
            os.kill(os.getpid(), signal.SIGINT)
        return stepped

    def validate(*args, **kwargs):
        now[0] += VALIDATION_S
        return {"AP": 0.5, "AP50": 0.5}

    monkeypatch.setattr(engine, "optimizer_step", optimizer_step)
    monkeypatch.setattr(trainer_module, "validate", validate)
    trainer_module.fit(
        cfg,
        resume_checkpoint=resume_checkpoint,
        show_progress=False,
        log=lambda m: None,
        clock=lambda: now[0],
    )
    return now[0]


def _config(tiny_training, data: Path, run: Path, **train: object) -> Config:
    settings = {
        "epochs": 3,
        "lr": BASE_LR,
        "final_lr_fraction": FINAL_FRACTION,
        "warmup_epochs": 1.0,
        **train,
    }
    return config_from_dict(tiny_training(data, run, num_train=16, **settings))  # 8 steps per epoch


def test_mid_epoch_resume_under_time_limit_keeps_the_plan(
    tiny_training, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_old_layout
) -> None:
    """Stopped at step 12 (epoch 2, batch 4 of 8) and resumed: the lr at every step matches the
    straight run within 2% of base_lr, both end with the lr at its floor, at most one step apart,
    and inside the budget.

    Before, the resumed epoch's timer started at the epoch's first step although the
    steps before the resume took no time in this session: the speed read 2x too fast,
    the plan grew by ~50% and the run ran out of time with the lr far above its floor.
    """
    data, limit_s = tmp_path / "data", 30.0
    one_second = lambda step: 1.0  # noqa: E731
    straight = tmp_path / "straight"
    _clocked_fit(
        monkeypatch,
        _config(tiny_training, data, straight, time_limit=limit_s / 60),
        step_s=one_second,
    )

    run = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted):
        _clocked_fit(
            monkeypatch,
            _config(tiny_training, data, run, time_limit=limit_s / 60),
            step_s=one_second,
            signal_after_step=12,
        )
    cfg, ckpt, _ = prepare_resume(run)
    assert (ckpt["step"], ckpt["epoch_progress"]["batches_done"]) == (12, 4)
    # Resumed from the old layout, key by key: the budget's state (the moved end's anchor,
    # elapsed_s, planned_epochs) is read from the same names.
    assert (
        ckpt["scheduler"]["anchor_step"] > ckpt["scheduler"]["start_step"]
        and ckpt["train_state"]["elapsed_s"] > 0
    )
    ckpt = as_old_layout(ckpt)
    # The resumed session's clock starts elsewhere: only the budget's own record counts.
    _clocked_fit(monkeypatch, cfg, step_s=one_second, start_s=1000.0, resume_checkpoint=ckpt)

    expected, actual = read_steps(straight / "steps.csv"), read_steps(run / "steps.csv")
    assert abs(len(actual) - len(expected)) <= 1, (len(actual), len(expected))
    for before, after in zip(expected, actual, strict=False):
        assert after["lr"] == pytest.approx(before["lr"], abs=0.02 * BASE_LR), (before, after)
    for rows in (expected, actual):
        assert rows[-1]["lr"] == pytest.approx(BASE_LR * FINAL_FRACTION, abs=0.01 * BASE_LR)
    ends = [
        load_checkpoint(path / "weights/last.pt", require_training_state=True)["train_state"][
            "elapsed_s"
        ]
        for path in (straight, run)
    ]
    assert all(end <= limit_s for end in ends) and abs(ends[0] - ends[1]) <= 1.0, ends


def test_closed_mosaic_stays_closed_when_the_plan_grows(
    tiny_training, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mosaic_switches
) -> None:
    """close_mosaic: 2 of a 3-epoch plan closes mosaic for epoch 2; the steps then get 3x faster,
    the plan grows at epoch 2's end, and mosaic stays off (it came back on before)."""
    seen = mosaic_switches
    cfg = _config(
        tiny_training, tmp_path / "data", tmp_path / "run", time_limit=1.25, close_mosaic=2
    )
    end = _clocked_fit(monkeypatch, cfg, step_s=lambda step: 3.0 if step <= 8 else 1.0)
    saved = load_checkpoint(tmp_path / "run/weights/last.pt", require_training_state=True)
    assert saved["train_state"]["planned_epochs"] > 3 and end <= 75.0  # the plan grew
    assert seen[:2] == [True, False] and len(seen) > 3, seen
    assert seen[2:] == [False] * (len(seen) - 2), seen
    assert saved["train_state"]["mosaic_closed"]  # kept in last.pt, so a resume keeps it off too
    del saved["train_state"]["mosaic_closed"]  # a last.pt from before the key still loads
    save_checkpoint(saved, tmp_path / "old.pt")
    assert (
        load_checkpoint(tmp_path / "old.pt", require_training_state=True)["step"] == saved["step"]
    )
