"""One epoch on a linear toy: accumulation, clipping,
the NaN guard, the step-by-step form, by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detector.checkpoint import non_finite_tensors
from detector.config import TrainConfig
from detector.training.engine import (
    NanGuard,
    NonFiniteLossError,
    TrainingEpoch,
    TrainParts,
    TrainState,
    optimizer_step,
    train_one_epoch,
)
from detector.training.optim import warmup_cosine


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, -2.0]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().flatten(1)[:, :2] * self.weight  # [B, 2]


def _toy_loss(raw: torch.Tensor, targets: list) -> dict[str, torch.Tensor]:
    loss_a = (raw[:, 0] ** 2).mean()
    loss_b = (raw[:, 1] ** 2).mean()
    return {"loss": loss_a + loss_b, "loss_a": loss_a, "loss_b": loss_b}


def _toy_batches(count: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"images": torch.rand(2, 1, 1, 2, generator=generator), "targets": [{}, {}]}
        for _ in range(count)
    ]


def _toy_parts(model: nn.Module, loss_fn=_toy_loss, lr: float = 0.1) -> TrainParts:
    return TrainParts(
        model=model,
        loss_fn=loss_fn,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        # Constant lr (final fraction 1, no warmup) so updates can be computed by hand.
        plan=warmup_cosine(base_lr=lr, warmup_steps=0, total_steps=100, final_lr_fraction=1.0),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        ema=None,
        device=torch.device("cpu"),
        amp_dtype=None,
        steps_per_epoch=1,
    )


def _manual_grad(weight: torch.Tensor, batch: dict) -> torch.Tensor:
    w = weight.detach().clone().requires_grad_(True)
    _toy_loss(batch["images"].float().flatten(1)[:, :2] * w, [])["loss"].backward()
    return w.grad


def test_accumulation_averages_micro_batch_gradients() -> None:
    model = _Linear()
    batches = _toy_batches(4)
    expected = model.weight.detach().clone()
    for pair in (batches[:2], batches[2:]):
        grad = sum(_manual_grad(expected, b) for b in pair) / 2
        expected = expected - 0.1 * grad
    state = TrainState(planned_epochs=1)
    stats = train_one_epoch(
        _toy_parts(model),
        batches,
        state,
        TrainConfig(accumulate=2, grad_clip=None),
        epoch=0,
        planned_epochs=1,
        nan_guard=NanGuard("skip", 3),
        show_progress=False,
    )
    assert state.step == 2 and stats["skipped_steps"] == 0 and len(stats["step_losses"]) == 4
    assert torch.allclose(model.weight, expected, atol=1e-6)
    assert stats["loss"] == pytest.approx(stats["loss_a"] + stats["loss_b"], rel=1e-5)
    assert 0.0 <= stats["data_wait_fraction"] <= 1.0 and stats["images_per_s"] > 0


def test_gradient_clipping_bounds_the_update() -> None:
    model = _Linear()
    before = model.weight.detach().clone()
    train_one_epoch(
        _toy_parts(model, lr=1.0),
        _toy_batches(1),
        TrainState(planned_epochs=1),
        TrainConfig(grad_clip=1e-3),
        epoch=0,
        planned_epochs=1,
        nan_guard=NanGuard("skip", 3),
        show_progress=False,
    )
    assert (model.weight - before).norm().item() == pytest.approx(1e-3, rel=1e-4)


def _loss_nan_on(calls: set[int]):
    count = [0]

    def loss_fn(raw, targets):
        count[0] += 1
        terms = _toy_loss(raw, targets)
        if count[0] in calls:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    return loss_fn


def test_nan_guard_skips_the_step_then_gives_up() -> None:
    model = _Linear()
    state = TrainState(planned_epochs=1)
    stats = train_one_epoch(
        _toy_parts(model, _loss_nan_on({1})),
        _toy_batches(3),
        state,
        TrainConfig(grad_clip=None),
        epoch=0,
        planned_epochs=1,
        nan_guard=NanGuard("skip", 2),
        show_progress=False,
    )
    assert (
        stats["skipped_steps"] == 1
        and state.step == 2
        and not non_finite_tensors(model.state_dict())
    )
    assert math.isnan(stats["step_losses"][0]) and math.isfinite(stats["loss"])
    # Two in a row with max_nan_skips=2 stops; the weights stay finite.
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite"):
        train_one_epoch(
            _toy_parts(model, _loss_nan_on({1, 2})),
            _toy_batches(3),
            TrainState(planned_epochs=1),
            TrainConfig(grad_clip=None),
            epoch=0,
            planned_epochs=1,
            nan_guard=NanGuard("skip", 2),
            show_progress=False,
        )
    assert not non_finite_tensors(model.state_dict())
    with pytest.raises(NonFiniteLossError, match="nan_policy=stop"):
        train_one_epoch(
            _toy_parts(model, _loss_nan_on({2})),
            _toy_batches(3),
            TrainState(planned_epochs=1),
            TrainConfig(grad_clip=None),
            epoch=0,
            planned_epochs=1,
            nan_guard=NanGuard("stop", 20),
            show_progress=False,
        )
    assert not non_finite_tensors(model.state_dict())


def test_leaving_the_loop_ends_the_epoch_after_that_step() -> None:
    """The trainer's form: one yield per optimizer step, after the update;
    leaving the loop stops there."""
    model = _Linear()
    batches = _toy_batches(6)
    state = TrainState(planned_epochs=1)
    epoch = TrainingEpoch(
        _toy_parts(model),
        batches,
        state,
        TrainConfig(accumulate=2, grad_clip=None),
        epoch=0,
        planned_epochs=1,
        nan_guard=NanGuard("skip", 3),
        show_progress=False,
    )
    seen = []
    for step_loss in epoch:
        seen.append((state.step, epoch.progress.batches_done, step_loss))
        if state.step == 2:
            break
    stats = epoch.stats()
    assert [(step, done) for step, done, _ in seen] == [(1, 2), (2, 4)]
    assert stats["stopped_early"] and len(stats["step_losses"]) == 4
    # Each yielded loss is the mean of its step's two micro-batches.
    assert seen[1][2] == pytest.approx(sum(stats["step_losses"][2:4]) / 2)
    assert stats["loss"] == pytest.approx(sum(stats["step_losses"]) / 4, rel=1e-6)
    # The same two steps as a whole epoch over those four batches.
    reference = _Linear()
    train_one_epoch(
        _toy_parts(reference),
        batches[:4],
        TrainState(planned_epochs=1),
        TrainConfig(accumulate=2, grad_clip=None),
        epoch=0,
        planned_epochs=1,
        nan_guard=NanGuard("skip", 3),
        show_progress=False,
    )
    assert torch.equal(model.weight, reference.weight)


def test_a_whole_pass_is_not_stopped_early() -> None:
    state = TrainState(planned_epochs=1)
    stats = train_one_epoch(
        _toy_parts(_Linear()),
        _toy_batches(3),
        state,
        TrainConfig(grad_clip=None),
        epoch=0,
        planned_epochs=1,
        nan_guard=NanGuard("skip", 3),
        show_progress=False,
    )
    assert not stats["stopped_early"] and state.step == 3


def test_optimizer_step_uses_the_planned_lr_and_skips_non_finite() -> None:
    model = _Linear()
    parts = _toy_parts(model)
    parts.plan = warmup_cosine(base_lr=0.1, warmup_steps=4, total_steps=10, final_lr_fraction=0.0)
    model.weight.grad = torch.tensor([1.0, 1.0])
    assert optimizer_step(parts, TrainConfig(grad_clip=None), 1, loss_finite=True)
    assert parts.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # 0.1 * 2 / 4
    assert torch.allclose(model.weight, torch.tensor([0.95, -2.05])) and model.weight.grad is None
    # A non-finite loss or gradient: no update, and the gradients are dropped.
    model.weight.grad = torch.tensor([1.0, 1.0])
    assert not optimizer_step(parts, TrainConfig(grad_clip=None), 1, loss_finite=False)
    model.weight.grad = torch.tensor([math.inf, 1.0])
    assert not optimizer_step(parts, TrainConfig(grad_clip=None), 1, loss_finite=True)
    assert torch.allclose(model.weight, torch.tensor([0.95, -2.05])) and model.weight.grad is None
