"""Optimizer groups, the warmup + cosine schedule, the time budget and EMA, by hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detector.config import TrainConfig
from detector.engine.ema import ModelEMA
from detector.engine.optim import WarmupCosineSchedule, build_optimizer, parameter_groups
from detector.engine.time_budget import TimeBudget, plan_total_epochs


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


def test_plan_total_epochs_by_hand() -> None:
    # 100 s left, epochs of 20 s, validation 10 s every epoch: k epochs cost 30k -> k = 3.
    assert plan_total_epochs(remaining_s=100, completed_epochs=1, epoch_train_s=20, validation_s=10, eval_interval=1) == 4
    # Validation every 2 epochs: cost 20k + 10 * max(1, k/2): k=4 -> 100 fits exactly.
    assert plan_total_epochs(remaining_s=100, completed_epochs=1, epoch_train_s=20, validation_s=10, eval_interval=2) == 5
    # Over budget: no more epochs.
    assert plan_total_epochs(remaining_s=-5, completed_epochs=3, epoch_train_s=20, validation_s=10, eval_interval=1) == 3
    with pytest.raises(ValueError):
        plan_total_epochs(remaining_s=10, completed_epochs=0, epoch_train_s=0, validation_s=1, eval_interval=1)


def test_time_budget_with_a_fake_clock() -> None:
    now = [1000.0]
    budget = TimeBudget(limit_minutes=2.0, clock=lambda: now[0])  # 120 s
    now[0] += 25.0  # first epoch: 25 s (slow start-up)
    budget.record_epoch(25.0)
    # 95 s left; estimated validation 5 s: k epochs cost 25k + 5 max(1, k) -> k = 3 (90 s).
    assert budget.plan(completed_epochs=1, eval_interval=1, validation_estimate_s=5.0) == 4
    now[0] += 15.0 + 5.0  # second epoch 15 s, then a measured 5 s validation
    budget.record_epoch(15.0)
    budget.record_validation(5.0)
    # 75 s left; median(25, 15) = 20 s per epoch + 5 s validation -> k = 3 (75 s).
    assert budget.plan(completed_epochs=2, eval_interval=1, validation_estimate_s=99.0) == 5
    # A resumed run counts the time already spent.
    resumed = TimeBudget(limit_minutes=2.0, clock=lambda: now[0], elapsed_before_s=110.0)
    resumed.record_epoch(20.0)
    resumed.record_validation(5.0)
    assert resumed.plan(completed_epochs=2, eval_interval=1, validation_estimate_s=5.0) == 2
    assert resumed.out_of_time() is False  # 110 s used of 120, 5 s reserved
    now[0] += 6.0
    assert resumed.out_of_time() is True
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
