"""Optimizer groups, the warmup + cosine schedule, the time budget and EMA, by hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detector.config import TrainConfig
from detector.training.ema import ModelEMA
from detector.training.optim import WarmupCosineSchedule, build_optimizer, parameter_groups
from detector.training.time_budget import TimeBudget, plan_extra_steps


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.norm = nn.BatchNorm2d(4)
        self.linear = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = _Tiny()
    decay, no_decay = parameter_groups(model, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.conv.weight), id(model.linear.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model.norm.weight), id(model.norm.bias), id(model.linear.bias)}
    # Frozen parameters are in neither group.
    all_ids = {id(p) for g in (decay, no_decay) for p in g["params"]}
    assert id(model.frozen.weight) not in all_ids


def test_build_optimizer_sgd_nesterov_and_adamw() -> None:
    sgd = build_optimizer(_Tiny(), TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 0.0]
    adamw = build_optimizer(_Tiny(), TrainConfig(optimizer="adamw", lr=0.002, momentum=0.9, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.9, 0.999)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.05, 0.0]


def test_schedule_values_by_hand() -> None:
    schedule = WarmupCosineSchedule(base_lr=0.1, warmup_steps=4, total_steps=14, final_lr_fraction=0.1)
    # Warmup: 0.1 * (step + 1) / 4.
    assert [schedule.lr_at(s) for s in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    # Cosine over 10 steps from 0.1 to 0.01: at p = 0, 0.5, 1 -> 0.1, 0.055, 0.01.
    assert schedule.lr_at(4) == pytest.approx(0.1)
    assert schedule.lr_at(9) == pytest.approx(0.055)
    assert schedule.lr_at(14) == pytest.approx(0.01)
    assert schedule.lr_at(6) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert schedule.lr_at(100) == pytest.approx(0.01)  # past the end: stays at the floor
    lrs = [schedule.lr_at(s) for s in range(4, 15)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_schedule_without_warmup_starts_at_base_lr() -> None:
    schedule = WarmupCosineSchedule(base_lr=1.0, warmup_steps=0, total_steps=2, final_lr_fraction=0.0)
    assert [schedule.lr_at(s) for s in range(3)] == pytest.approx([1.0, 0.5, 0.0])


def test_replan_is_continuous_and_ends_at_the_new_total() -> None:
    schedule = WarmupCosineSchedule(base_lr=0.1, warmup_steps=2, total_steps=12, final_lr_fraction=0.0)
    before = schedule.lr_at(7)  # p = 0.5 -> 0.05
    assert before == pytest.approx(0.05)
    schedule.replan(current_step=7, total_steps=17)
    assert schedule.lr_at(7) == pytest.approx(before)
    assert schedule.lr_at(12) == pytest.approx(0.025)  # half way from 0.05 to 0
    assert schedule.lr_at(17) == pytest.approx(0.0)
    # The state dict carries the re-plan.
    copy = WarmupCosineSchedule(base_lr=1, warmup_steps=0, total_steps=1, final_lr_fraction=0)
    copy.load_state_dict(schedule.state_dict())
    assert [copy.lr_at(s) for s in range(20)] == [schedule.lr_at(s) for s in range(20)]


def test_replan_inside_warmup_only_moves_the_end() -> None:
    schedule = WarmupCosineSchedule(base_lr=0.1, warmup_steps=4, total_steps=14, final_lr_fraction=0.0)
    schedule.replan(current_step=2, total_steps=24)
    assert schedule.lr_at(3) == pytest.approx(0.1) and schedule.lr_at(4) == pytest.approx(0.1)
    assert schedule.lr_at(14) == pytest.approx(0.05)  # now the midpoint of 4..24


def test_plan_extra_steps_by_hand() -> None:
    plan = dict(steps_per_epoch=10, seconds_per_step=1.0, epoch_overhead_s=5.0, final_validation_s=5.0)
    # 30 s left at step 3 of a 10-step epoch: 7 steps to the epoch end, its 5 s validation,
    # 10 more steps, the final 5 s validation: 17 + 5 + 5 = 27 s. 18 steps would cross a
    # second epoch end: 18 + 10 + 5 = 33 s.
    assert plan_extra_steps(remaining_s=30, step_in_epoch=3, **plan) == 17
    # 12 s left: exactly the rest of this epoch plus the final validation.
    assert plan_extra_steps(remaining_s=12, step_in_epoch=3, **plan) == 7
    # 16 s: crossing the epoch end (5 s) would leave 6 s for steps, fewer than the 8 needed
    # to get past it, so the plan stops at the epoch end: 7 steps.
    assert plan_extra_steps(remaining_s=16, step_in_epoch=3, **plan) == 7
    # Over budget, or only the final validation fits: no more steps.
    assert plan_extra_steps(remaining_s=-1, step_in_epoch=0, **plan) == 0
    assert plan_extra_steps(remaining_s=5.5, step_in_epoch=0, **plan) == 0
    with pytest.raises(ValueError):
        plan_extra_steps(remaining_s=10, step_in_epoch=0, steps_per_epoch=10, seconds_per_step=0,
                         epoch_overhead_s=0, final_validation_s=0)


def test_time_budget_with_a_fake_clock() -> None:
    now = [1000.0]
    budget = TimeBudget(limit_minutes=1.0, clock=lambda: now[0], elapsed_before_s=4.0)  # 60 s, 4 s of set-up
    assert budget.plan_steps(current_step=0, steps_per_epoch=10, eval_interval=1, validation_estimate_s=2.0) is None
    budget.start_epoch(step=0)
    now[0] += 4.0  # 4 steps of 1 s
    assert budget.seconds_per_step(4) == pytest.approx(1.0)
    # 52 s left at step 4: epoch ends after 6, 16, 26, 36 more steps cost 2 s each and the
    # final validation 2 s: 42 steps + 4 crossings x 2 s + 2 s = 52 s.
    expected = 4 + plan_extra_steps(remaining_s=52.0, step_in_epoch=4, steps_per_epoch=10, seconds_per_step=1.0,
                                    epoch_overhead_s=2.0, final_validation_s=2.0)
    assert budget.plan_steps(current_step=4, steps_per_epoch=10, eval_interval=1, validation_estimate_s=2.0) == expected
    assert expected == 4 + 42
    now[0] += 6.0  # the epoch ends at step 10 after 10 s; then 3 s of validation and checkpoint
    budget.end_epoch(step=10)
    now[0] += 3.0
    budget.record_overhead(3.0)
    # 60 - 4 - 13 = 43 s left, 1 s/step, the measured 3 s replaces the estimate; at an epoch end its
    # overhead is still due if training continues: 43 - 3 = 40 s, then 10 + 3 + 10 + 3 + 10 = 36 s, +3 final.
    assert budget.plan_steps(current_step=10, steps_per_epoch=10, eval_interval=1, validation_estimate_s=99.0) == 10 + 30
    with pytest.raises(ValueError):
        TimeBudget(limit_minutes=0)


def test_ema_decay_warmup_and_average() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.9, warmup_steps=1.0)
    expected_decay = 0.9 * (1 - math.exp(-1.0))
    assert ema.current_decay() == pytest.approx(expected_decay)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    # average = d * 0 + (1 - d) * 1
    assert ema.module.weight.item() == pytest.approx(1 - expected_decay)
    assert ema.updates == 1 and not ema.module.weight.requires_grad
    restored = ModelEMA(model, decay=0.5)
    restored.load_state_dict(ema.state_dict(), weights=ema.module.state_dict())
    assert restored.module.weight.item() == pytest.approx(1 - expected_decay) and restored.decay == 0.9


def test_replan_caps_a_warmup_longer_than_the_budget() -> None:
    schedule = WarmupCosineSchedule(base_lr=0.1, warmup_steps=60, total_steps=600, final_lr_fraction=0.0)
    schedule.replan(current_step=5, total_steps=40, max_warmup_fraction=0.2)
    assert schedule.warmup_steps == 8  # 20% of 40
    assert schedule.lr_at(7) == pytest.approx(0.1) and schedule.lr_at(40) == pytest.approx(0.0)
    # Never before the current step: at step 12 of the warmup the cap stops at 12.
    late = WarmupCosineSchedule(base_lr=0.1, warmup_steps=60, total_steps=600, final_lr_fraction=0.0)
    late.replan(current_step=12, total_steps=40, max_warmup_fraction=0.2)
    assert late.warmup_steps == 12 and late.lr_at(11) == pytest.approx(0.1 * 12 / 12)
