"""`train.progressive`: each epoch's input side, the cost model, and the time budget planning
with steps of unequal cost (a simulated clock, as in test_time_budget.py), then through `fit`."""

from __future__ import annotations

import math
import re

import pytest
import yaml

from detector.config import ConfigError, ProgressiveResize, load_config
from detector.data.loading.sampling import SeededSampler
from detector.training.optim import lr_at, warmup_cosine
from detector.training.run_controls import ProgressiveSizes, start_side
from detector.training.time_budget import TimeBudget


def test_sides_rise_by_32_over_the_fraction_then_stay_at_the_image_size() -> None:
    sizes = ProgressiveSizes(ProgressiveResize(scale=0.6, fraction=0.5), image_size=160)
    assert sizes.sides == [96, 128]
    # 10 planned epochs: the ramp is the first 5, 96 for 5 * 1/2 of them (0..2), then 128.
    assert [sizes.side(e, 10) for e in range(10)] == [96, 96, 96, 128, 128] + [160] * 5
    assert [sizes.side(e, 4) for e in range(4)] == [96, 128, 160, 160]
    # A plan too short for any ramp epoch trains at the image size throughout.
    assert sizes.side(0, 1) == 160


def test_the_first_side_follows_the_image_size_in_multiples_of_32() -> None:
    assert [start_side(0.8, size) for size in (160, 256, 640, 64)] == [128, 192, 512, 32]
    assert start_side(0.1, 160) == 32  # never below 32
    # A first side that is already the image size leaves no ramp: every epoch at 32.
    tiny = ProgressiveSizes(ProgressiveResize(scale=0.5, fraction=0.5), image_size=32)
    assert tiny.sides == [] and [tiny.side(e, 4) for e in range(4)] == [32] * 4


def test_without_progressive_every_epoch_is_full_size_and_costs_one() -> None:
    sizes = ProgressiveSizes(None, image_size=256)
    assert [sizes.side(e, 7) for e in range(7)] == [256] * 7
    assert sizes.mean_step_cost(0, 700, steps_per_epoch=100) == 1.0


def test_step_cost_is_the_input_area() -> None:
    sizes = ProgressiveSizes(ProgressiveResize(scale=0.8, fraction=0.5), image_size=160)
    assert sizes.step_cost(128) == pytest.approx(0.64)
    assert sizes.step_cost(160) == 1.0


@pytest.mark.parametrize(
    ("first", "total", "per_epoch"),
    [(0, 100, 10), (3, 100, 10), (37, 58, 7), (0, 1, 5), (12, 12, 4), (5, 240, 31)],
)
def test_mean_step_cost_against_a_step_by_step_loop(first: int, total: int, per_epoch: int) -> None:
    sizes = ProgressiveSizes(ProgressiveResize(scale=0.4, fraction=0.6), image_size=160)
    planned = math.ceil(total / per_epoch)
    costs = [sizes.step_cost(sizes.side(k // per_epoch, planned)) for k in range(first, total)]
    expected = sum(costs) / len(costs) if costs else 1.0
    assert sizes.mean_step_cost(first, total, steps_per_epoch=per_epoch) == pytest.approx(expected)


class _Sampler:
    def __init__(self) -> None:
        self.sides: list[int | None] = []

    def set_image_size(self, side: int | None) -> None:
        self.sides.append(side)


def test_once_at_full_size_a_longer_plan_does_not_shrink_it_again() -> None:
    sizes, sampler = ProgressiveSizes(ProgressiveResize(scale=0.8, fraction=0.5), 160), _Sampler()
    side, reached = sizes.start_epoch(sampler, epoch=2, planned_epochs=4)
    assert (side, reached) == (160, True)
    # The plan grew to 10 epochs: epoch 3 would be in the ramp again, but it stays at 160.
    side, reached = sizes.start_epoch(sampler, epoch=3, planned_epochs=10, reached=reached)
    assert (side, reached) == (160, True) and sampler.sides == [160, 160]
    # Without the flag it would have gone back to 128 (what the flag is for).
    assert sizes.start_epoch(sampler, epoch=3, planned_epochs=10) == (128, False)


def test_the_sampler_hands_the_epoch_side_to_every_batch() -> None:
    sampler = SeededSampler(range(8), seed=0, batch_size=4, image_size=160)
    sampler.set_epoch(0)
    sampler.set_image_size(96)
    assert {plan.image_size for _, _, plan in sampler} == {96}
    sampler.set_image_size(160)
    assert {plan.image_size for _, _, plan in sampler} == {160}


STEPS_PER_EPOCH, FULL_STEP_S, VALIDATION_S = 20, 1.0, 3.0


def _simulate(
    sizes: ProgressiveSizes, limit_minutes: float, true_cost: float | None = None
) -> tuple[float, list[int], int]:
    """A time-limited run on a fake clock where a step at side s takes FULL_STEP_S x its area
    cost (or `true_cost` for every smaller side: a wrong cost model); returns the elapsed
    seconds at the end, the side of each epoch and the steps taken."""
    now = [0.0]
    budget = TimeBudget(
        limit_minutes,
        steps_per_epoch=STEPS_PER_EPOCH,
        clock=lambda: now[0],
        validation_cost_in_steps=VALIDATION_S / FULL_STEP_S,
        mean_step_cost=lambda first, total: sizes.mean_step_cost(
            first, total, steps_per_epoch=STEPS_PER_EPOCH
        ),
    )
    plan = warmup_cosine(
        base_lr=0.01, warmup_steps=20, total_steps=50 * STEPS_PER_EPOCH, final_lr_fraction=0.05
    )
    epoch, step, planned, reached, finished, sides = 0, 0, 50, False, False, []
    while epoch < planned and not finished:
        side, reached = sizes.start_epoch(None, epoch, planned, reached=reached)
        sides.append(side)
        cost = sizes.step_cost(side)
        budget.start_epoch(step, step_cost=cost)
        stopped = False
        for _ in range(STEPS_PER_EPOCH):
            lr_at(step, plan)
            now[0] += FULL_STEP_S * (true_cost if true_cost is not None and cost < 1 else cost)
            step += 1
            plan, stop = budget.after_step(step, plan)
            planned = budget.planned_epochs(plan, epoch)
            if stop:
                stopped = True
                break
        epoch += 1
        plan = budget.end_epoch(step, plan)
        planned = budget.planned_epochs(plan, epoch)
        finished = stopped or epoch >= planned or step >= plan.total_steps
        now[0] += VALIDATION_S
        plan = budget.after_validation(VALIDATION_S, step, plan, finished=finished)
        planned = budget.planned_epochs(plan, epoch)
    return now[0], sides, step


def test_the_budget_plans_cheap_early_steps_and_still_ends_inside_the_limit() -> None:
    limit_minutes = 10.0
    full_s, full_sides, full_steps = _simulate(ProgressiveSizes(None, 160), limit_minutes)
    sizes = ProgressiveSizes(ProgressiveResize(scale=0.6, fraction=0.5), 160)
    prog_s, sides, prog_steps = _simulate(sizes, limit_minutes)
    for elapsed in (full_s, prog_s):
        assert 0.93 * limit_minutes * 60 <= elapsed <= limit_minutes * 60
    assert sides == sorted(sides) and sides[0] == 96 and sides[-1] == 160
    assert {96, 128, 160} <= set(sides)
    # Half the epochs at a mean cost of ~(0.36 + 0.64) / 2 = 0.5: ~1 / 0.75 = 1.33x the steps.
    assert 1.25 <= prog_steps / full_steps <= 1.4, (prog_steps, full_steps)


@pytest.mark.parametrize("true_cost", [0.5, 0.9])
def test_a_wrong_cost_model_still_ends_inside_the_limit(true_cost: float) -> None:
    sizes = ProgressiveSizes(ProgressiveResize(scale=0.8, fraction=0.5), 160)  # models 0.64
    elapsed, sides, _ = _simulate(sizes, 8.0, true_cost=true_cost)
    assert 0.9 * 8.0 * 60 <= elapsed <= 8.0 * 60
    assert sides[0] == 128 and sides[-1] == 160


@pytest.mark.parametrize(
    ("progressive", "message"),
    [
        (
            {"scale": 1.0, "fraction": 0.5},
            "train.progressive.scale: 1.0 must be strictly between 0 and 1",
        ),
        ({"scale": 0.0, "fraction": 0.5}, "share of model.image_size"),
        ({"scale": -0.5, "fraction": 0.5}, "train.progressive.scale"),
        (
            {"scale": 0.8, "fraction": 1.0},
            "train.progressive.fraction: 1.0 must be strictly between 0 and 1",
        ),
        ({"scale": 0.8, "fraction": 0.0}, "strictly between 0 and 1"),
        ({"scale": 0.8}, "train.progressive: missing key fraction (needs: scale, fraction)"),
    ],
)
def test_bad_progressive_settings_are_one_line_errors(tmp_path, progressive, message) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"image_size": 160}, "train": {"progressive": progressive}})
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_progressive_and_multi_scale_together_are_refused(tmp_path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"image_size": 160},
                "train": {
                    "progressive": {"scale": 0.6, "fraction": 0.5},
                    "multi_scale": [128, 192],
                },
            }
        )
    )
    with pytest.raises(ConfigError, match="cannot be combined with train.multi_scale"):
        load_config(path)


def test_a_progressive_config_loads_and_overrides(tmp_path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"model": {"image_size": 160}}))
    cfg = load_config(path, ["train.progressive={scale: 0.6, fraction: 0.4}"])
    assert cfg.train.progressive == ProgressiveResize(scale=0.6, fraction=0.4)


def test_fit_trains_the_ramp_at_its_sides_and_validates_at_the_image_size(
    tiny_training, tmp_path, monkeypatch
) -> None:
    from detector.config import config_from_dict
    from detector.model.yolo import YOLODetector
    from detector.training.trainer import fit

    real_forward, sides = YOLODetector.forward, []

    def forward(self, images, *args, **kwargs):
        sides.append((self.training, images.shape[-1]))
        return real_forward(self, images, *args, **kwargs)

    monkeypatch.setattr(YOLODetector, "forward", forward)
    raw = tiny_training(
        tmp_path / "data",
        tmp_path / "run",
        epochs=4,
        ema=False,
        progressive={"scale": 0.5, "fraction": 0.5},
    )
    messages: list[str] = []
    fit(config_from_dict(raw), show_progress=False, log=messages.append)
    trained = [side for training, side in sides if training]
    # 4 images at batch 2: 2 steps per epoch; the first 2 epochs at 32 px, the last 2 at 64.
    assert trained == [32] * 4 + [64] * 4
    assert {side for training, side in sides if not training} == {64}
    assert any("input side 32 px" in m for m in messages)
    assert any("input side 64 px" in m for m in messages)
