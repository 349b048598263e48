"""Optimizer groups, the warmup + cosine lr plan and EMA, by hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detector.config import TrainConfig
from detector.training.optim import (
    ModelEMA,
    build_optimizer,
    lr_at,
    lr_plan,
    move_end,
    parameter_groups,
    plan_from_dict,
    plan_to_dict,
    restart,
    warmup_cosine,
)


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
    assert {id(p) for p in no_decay["params"]} == {
        id(model.norm.weight),
        id(model.norm.bias),
        id(model.linear.bias),
    }
    # Frozen parameters are in neither group.
    all_ids = {id(p) for g in (decay, no_decay) for p in g["params"]}
    assert id(model.frozen.weight) not in all_ids


def test_build_optimizer_sgd_nesterov_and_adamw() -> None:
    sgd = build_optimizer(
        _Tiny(), TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    )
    assert (
        isinstance(sgd, torch.optim.SGD)
        and sgd.defaults["nesterov"]
        and sgd.defaults["momentum"] == 0.9
    )
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 0.0]
    adamw = build_optimizer(
        _Tiny(), TrainConfig(optimizer="adamw", lr=0.002, momentum=0.9, weight_decay=0.05)
    )
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.9, 0.999)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.05, 0.0]


def test_schedule_values_by_hand() -> None:
    plan = warmup_cosine(base_lr=0.1, warmup_steps=4, total_steps=14, final_lr_fraction=0.1)
    # Warmup: 0.1 * (step + 1) / 4.
    assert [lr_at(s, plan) for s in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    # Cosine over 10 steps from 0.1 to 0.01: at p = 0, 0.5, 1 -> 0.1, 0.055, 0.01.
    assert lr_at(4, plan) == pytest.approx(0.1)
    assert lr_at(9, plan) == pytest.approx(0.055)
    assert lr_at(14, plan) == pytest.approx(0.01)
    assert lr_at(6, plan) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_at(100, plan) == pytest.approx(0.01)  # past the end: stays at the floor
    lrs = [lr_at(s, plan) for s in range(4, 15)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    with pytest.raises(ValueError, match="total_steps >= 1"):
        warmup_cosine(base_lr=0.1, warmup_steps=0, total_steps=0, final_lr_fraction=0.0)


def test_plan_from_the_train_config() -> None:
    plan = lr_plan(
        TrainConfig(lr=0.02, warmup_epochs=1.5, epochs=10, final_lr_fraction=0.05),
        steps_per_epoch=4,
    )
    assert (plan.warmup_steps, plan.total_steps, plan.base_lr, plan.end_lr) == (
        6,
        40,
        0.02,
        pytest.approx(0.001),
    )


def test_schedule_without_warmup_starts_at_base_lr() -> None:
    plan = warmup_cosine(base_lr=1.0, warmup_steps=0, total_steps=2, final_lr_fraction=0.0)
    assert [lr_at(s, plan) for s in range(3)] == pytest.approx([1.0, 0.5, 0.0])


def test_move_end_is_continuous_keeps_the_progress_and_ends_at_the_new_total() -> None:
    plan = warmup_cosine(base_lr=0.1, warmup_steps=2, total_steps=12, final_lr_fraction=0.0)
    before = lr_at(7, plan)  # p = 0.5 -> 0.05
    assert before == pytest.approx(0.05)
    moved = move_end(plan, step=7, total_steps=17)
    assert lr_at(7, moved) == pytest.approx(before)
    # The other half of the progress over 10 steps: p = 0.75 at step 12.
    assert lr_at(12, moved) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.75)))
    assert lr_at(17, moved) == pytest.approx(0.0)
    assert plan.total_steps == 12  # plans are values: the old one is unchanged
    # The saved dict carries the move.
    copy = plan_from_dict(plan_to_dict(moved))
    assert [lr_at(s, copy) for s in range(20)] == [lr_at(s, moved) for s in range(20)]


def test_move_end_inside_warmup_only_moves_the_end() -> None:
    plan = move_end(
        warmup_cosine(base_lr=0.1, warmup_steps=4, total_steps=14, final_lr_fraction=0.0),
        step=2,
        total_steps=24,
    )
    assert lr_at(3, plan) == pytest.approx(0.1) and lr_at(4, plan) == pytest.approx(0.1)
    assert lr_at(14, plan) == pytest.approx(0.05)  # the midpoint of 4..24


def test_a_saved_new_segment_reads_as_it_was_written() -> None:
    """A last.pt resumed with more epochs by earlier code holds a new cosine from the lr at the
    resume step (start_step 7, start_lr 0.05) and no anchor keys: the lr follows that cosine."""
    saved = {
        "base_lr": 0.1,
        "end_lr": 0.0,
        "warmup_steps": 2,
        "total_steps": 17,
        "start_step": 7,
        "start_lr": 0.05,
    }
    plan = plan_from_dict(saved)
    assert (plan.anchor_step, plan.anchor_progress) == (7, 0.0)
    assert lr_at(1, plan) == pytest.approx(0.1)  # the warmup's last step
    assert lr_at(7, plan) == pytest.approx(0.05)
    assert lr_at(12, plan) == pytest.approx(0.025)  # half way from 0.05 to 0
    assert lr_at(17, plan) == pytest.approx(0.0)
    assert {key: plan_to_dict(plan)[key] for key in saved} == saved


def test_restart_begins_a_new_cosine_without_warmup() -> None:
    """What extends a finished run: from start_lr at the step down to end_lr at the new total."""
    finished = warmup_cosine(base_lr=0.1, warmup_steps=2, total_steps=12, final_lr_fraction=0.0)
    assert lr_at(12, finished) == pytest.approx(0.0)
    plan = restart(finished, step=12, total_steps=22, start_lr=0.04, end_lr=0.002)
    assert lr_at(12, plan) == pytest.approx(0.04) and lr_at(22, plan) == pytest.approx(0.002)
    assert lr_at(17, plan) == pytest.approx(0.021)  # the midpoint
    # A finished run stopped inside its warmup (a tiny time budget): the warmup ends there.
    early = restart(
        warmup_cosine(base_lr=0.1, warmup_steps=10, total_steps=20, final_lr_fraction=0.0),
        step=3,
        total_steps=13,
        start_lr=0.1,
        end_lr=0.0,
    )
    assert early.warmup_steps == 3 and lr_at(3, early) == pytest.approx(0.1)


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
    assert (
        restored.module.weight.item() == pytest.approx(1 - expected_decay) and restored.decay == 0.9
    )
