"""The lr under `train.time_limit` follows ONE warmup + cosine over the budget, on a simulated clock.

The simulation drives the trainer's own budget decisions (`trainer._after_step`,
`trainer._plan_budget`) with the real `TimeBudget` and `WarmupCosineSchedule`,
replacing only the model step and the validation by clock advances, so a
600-second budget of ~500 steps runs in well under a second.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from detector.training import trainer
from detector.training.distributed import DistInfo
from detector.training.optim import WarmupCosineSchedule
from detector.training.state import EpochProgress, TrainState
from detector.training.time_budget import TimeBudget, correction_needed

BASE_LR, FINAL_FRACTION = 0.01, 0.05
LIMIT_MIN, SETUP_S, STEPS_PER_EPOCH, WARMUP_STEPS = 10.0, 10.0, 40, 40


def _simulate(step_s: Callable[[float], float], validation_s: Callable[[int], float],
              run_dir: Path) -> tuple[list[tuple[float, float, float]], TimeBudget, WarmupCosineSchedule, TrainState]:
    """Train on a fake clock; returns (start, duration, lr) per step, the budget, schedule and state.

    `step_s(f)`: seconds of a step started at fraction f of the budget;
    `validation_s(epoch)`: seconds of the validation + checkpoint after that (1-based) epoch.
    """
    now = [0.0]

    def clock() -> float:
        return now[0]

    schedule = WarmupCosineSchedule(base_lr=BASE_LR, warmup_steps=WARMUP_STEPS, total_steps=30 * STEPS_PER_EPOCH,
                                    final_lr_fraction=FINAL_FRACTION)
    budget = TimeBudget(LIMIT_MIN, clock=clock, elapsed_before_s=SETUP_S)
    state = TrainState(planned_epochs=30)
    run = SimpleNamespace(
        state=state, budget=budget, dist=DistInfo(), device=torch.device("cpu"), run_dir=run_dir,
        parts=SimpleNamespace(steps_per_epoch=STEPS_PER_EPOCH, schedule=schedule,
                              optimizer=SimpleNamespace(param_groups=[{"lr": 0.0}])),
        cfg=SimpleNamespace(train=SimpleNamespace(batch_size=16, eval_interval=1)),
        val_split=SimpleNamespace(records=[None] * 96),  # estimate before a timed validation: 2 s at 1 s/step
        budget_planned=False, save_period=None, saved_at=(0, 0.0), progress=EpochProgress(),
    )
    after_step = functools.partial(trainer._after_step, run, SimpleNamespace(signum=None), clock)
    steps: list[tuple[float, float, float]] = []
    while state.epoch < state.planned_epochs and not state.finished:  # as trainer.fit
        budget.start_epoch(state.step)
        stopped = False
        for _ in range(STEPS_PER_EPOCH):
            lr = schedule.lr_at(state.step)
            run.parts.optimizer.param_groups[0]["lr"] = lr
            start = budget.elapsed()
            duration = step_s(start / budget.limit_s)
            now[0] += duration
            steps.append((start, duration, lr))
            state.step += 1
            run.progress.batches_done += 1
            if after_step(0.0):
                stopped = True
                break
        state.epoch += 1
        run.progress = EpochProgress()
        budget.end_epoch(state.step)
        trainer._plan_budget(run, broadcast=True)
        state.finished = stopped or state.epoch >= state.planned_epochs or state.step >= schedule.total_steps
        overhead = validation_s(state.epoch)
        now[0] += overhead
        budget.record_overhead(overhead)
        if not state.finished:
            trainer._plan_budget(run, broadcast=True, overhead_due=False)
    return steps, budget, schedule, state


def _ideal_lr(x: float, warmup_share: float) -> float:
    """Warmup + one cosine over the fraction x of the budget's training time."""
    if x < warmup_share:
        return BASE_LR * x / warmup_share
    progress = (x - warmup_share) / (1 - warmup_share)
    end = BASE_LR * FINAL_FRACTION
    return end + (BASE_LR - end) * 0.5 * (1 + math.cos(math.pi * progress))


_NOISE = random.Random(0)
PROFILES = {
    "steady": (lambda f: 1.0 * _NOISE.uniform(0.9, 1.1), lambda epoch: 8.0),
    "slowing down": (lambda f: 1.0 + 1.0 * f, lambda epoch: 8.0),
    "speeding up": (lambda f: 2.0 - 1.0 * f, lambda epoch: 8.0),
    "validation longer than planned": (lambda f: 1.0, lambda epoch: 30.0),  # planned: 2 s until timed
}


def _check_run(name: str, step_s: Callable[[float], float], validation_s: Callable[[int], float], run_dir: Path,
               *, lr_tolerance: float) -> None:
    steps, budget, schedule, state = _simulate(step_s, validation_s, run_dir)
    # Ends inside the budget (final validation included), having used most of it.
    assert budget.elapsed() <= budget.limit_s
    assert budget.elapsed() >= 0.9 * budget.limit_s
    assert state.finished and state.step == len(steps)
    # The last step is at the cosine's end: the lr reached end_lr (within 1% of base_lr).
    assert steps[-1][2] == pytest.approx(BASE_LR * FINAL_FRACTION, abs=0.01 * BASE_LR)
    total_train_s = sum(duration for _, duration, _ in steps)
    # The warmup is `warmup_steps` steps (train.warmup_epochs): its share of the training time.
    warmup_share = sum(duration for _, duration, _ in steps[:schedule.warmup_steps]) / total_train_s
    for tenth in range(1, 11):
        t = tenth / 10 * budget.limit_s
        trained = sum(min(duration, max(t - start, 0.0)) for start, duration, _ in steps)
        actual = [lr for start, _, lr in steps if start <= t][-1]  # the lr in force at t
        ideal = _ideal_lr(trained / total_train_s, warmup_share)
        assert abs(actual - ideal) <= lr_tolerance * BASE_LR, \
            f"{name}: at {tenth * 10}% of the budget lr {actual:.5f}, ideal {ideal:.5f}"


@pytest.mark.parametrize("name", list(PROFILES))
def test_lr_follows_one_cosine_over_the_budget_and_ends_inside_it(name: str, tmp_path: Path) -> None:
    """Within 5% of base_lr of the ideal curve at every 10% of the budget."""
    _check_run(name, *PROFILES[name], tmp_path, lr_tolerance=0.05)


def test_a_slow_first_validation_bends_one_epoch_only(tmp_path: Path) -> None:
    """The first validation takes 60 s, later ones 8 s (cold caches).

    With one timed validation the plan cannot tell a one-off from the norm, so the
    epoch after it runs on a plan that is too short (the lr falls up to ~11% of base_lr
    ahead of the ideal there); the next correction brings it back, the run still
    ends inside the budget at end_lr.
    """
    _check_run("first validation much longer", lambda f: 1.0, lambda epoch: 60.0 if epoch == 1 else 8.0,
               tmp_path, lr_tolerance=0.12)


def test_lr_is_continuous_and_never_restarts() -> None:
    """A correction moves the cosine's end, never the lr reached (no jump back to the peak)."""
    schedule = WarmupCosineSchedule(base_lr=0.1, warmup_steps=10, total_steps=110, final_lr_fraction=0.0)
    before = schedule.lr_at(60)  # progress 0.5 -> 0.05
    assert before == pytest.approx(0.05)
    schedule.retarget(current_step=60, total_steps=160)
    assert schedule.lr_at(60) == pytest.approx(before)
    assert schedule.progress_at(110) == pytest.approx(0.75)  # the other half of the progress over 100 steps
    assert schedule.lr_at(110) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert schedule.lr_at(160) == pytest.approx(0.0)
    # Shorter: the same progress, the rest over 10 steps.
    schedule.retarget(current_step=110, total_steps=120)
    assert schedule.progress_at(115) == pytest.approx(0.875)
    # The state dict carries the anchor; an old one (no anchor keys) means never retargeted.
    copy = WarmupCosineSchedule(base_lr=1, warmup_steps=0, total_steps=1, final_lr_fraction=0)
    copy.load_state_dict(schedule.state_dict())
    assert [copy.lr_at(s) for s in range(110, 125)] == [schedule.lr_at(s) for s in range(110, 125)]
    old = {k: v for k, v in WarmupCosineSchedule(base_lr=0.1, warmup_steps=10, total_steps=110,
                                                 final_lr_fraction=0.0).state_dict().items() if "anchor" not in k}
    copy.load_state_dict(old)
    assert copy.lr_at(60) == pytest.approx(0.05)


def test_retarget_inside_warmup_caps_it() -> None:
    schedule = WarmupCosineSchedule(base_lr=0.1, warmup_steps=60, total_steps=600, final_lr_fraction=0.0)
    schedule.retarget(current_step=5, total_steps=40, max_warmup_fraction=0.2)
    assert schedule.warmup_steps == 8 and schedule.lr_at(7) == pytest.approx(0.1)
    assert schedule.lr_at(8) == pytest.approx(0.1) and schedule.lr_at(40) == pytest.approx(0.0)


def test_correction_only_when_the_plan_no_longer_fits_or_is_clearly_short() -> None:
    assert correction_needed(500, 499)  # over budget: always
    assert not correction_needed(500, 504)  # 0.8% more would fit: noise, keep the curve
    assert correction_needed(500, 506)
    assert not correction_needed(50, 51) and correction_needed(50, 52)  # at least one step


def test_budget_speed_follows_the_last_epoch() -> None:
    now = [0.0]
    budget = TimeBudget(1.0, clock=lambda: now[0])
    budget.start_epoch(step=0)
    now[0] += 10.0
    budget.end_epoch(step=10)  # 1 s/step
    budget.start_epoch(step=10)
    now[0] += 20.0
    budget.end_epoch(step=20)  # 2 s/step
    assert budget.seconds_per_step(20) == pytest.approx(1.5)
    assert budget.recent_seconds_per_step(20) == pytest.approx(2.0)
    assert budget.steps_timed(20) == 20
    # 30 s used of 60: a 2 s step (the last epoch's speed) and a 28 s validation fit; 29 s do not.
    budget.start_epoch(step=20)
    assert budget.next_step_fits(current_step=20, validation_estimate_s=28.0)
    assert not budget.next_step_fits(current_step=20, validation_estimate_s=29.0)
    # Once validations are timed: min(median, latest) plans; the stop inside an epoch reserves the max.
    for seconds in (3.0, 9.0, 4.0, 5.0):
        budget.record_overhead(seconds)
    assert budget.validation_s(99.0) == pytest.approx(4.5)  # median 4.5 < latest 5
    assert budget.validation_s(99.0, final=True) == pytest.approx(5.0)
    budget.record_overhead(2.0)
    assert budget.validation_s(99.0) == 2.0 and budget.validation_s(99.0, final=True) == 4.0


def test_timing_noise_does_not_change_the_curve(tmp_path: Path) -> None:
    """Two runs whose step times differ only by ±15% noise: the same lr at every 10% of the budget (±2%)."""
    marks = []
    for seed in (1, 2):
        noise = random.Random(seed)
        steps, budget, _, _ = _simulate(lambda f, noise=noise: noise.uniform(0.85, 1.15), lambda epoch: 8.0,
                                        tmp_path)
        marks.append([[lr for start, _, lr in steps if start <= k / 10 * budget.limit_s][-1] for k in range(1, 11)])
    assert marks[0] == pytest.approx(marks[1], abs=0.02 * BASE_LR)
