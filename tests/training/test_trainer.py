"""The training loop: accumulation, clipping, the NaN guard, the time budget, never saving NaN."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from detector.checkpoint import load_checkpoint, non_finite_tensors
from detector.config import Config, TrainConfig, config_from_dict
from detector.training import trainer as trainer_module
from detector.training.epoch import NanGuard, NonFiniteLossError, train_one_epoch
from detector.training.optim import WarmupCosineSchedule
from detector.training.state import TrainParts, TrainState
from detector.training.trainer import fit

# ---------------------------------------------------------------- train_one_epoch on a linear toy


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
    return [{"images": torch.rand(2, 1, 1, 2, generator=generator), "targets": [{}, {}]} for _ in range(count)]


def _toy_parts(model: nn.Module, loss_fn=_toy_loss, lr: float = 0.1) -> TrainParts:
    return TrainParts(
        model=model, loss_fn=loss_fn, optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        # Constant lr (final fraction 1, no warmup) so updates can be computed by hand.
        schedule=WarmupCosineSchedule(base_lr=lr, warmup_steps=0, total_steps=100, final_lr_fraction=1.0),
        scaler=torch.amp.GradScaler("cpu", enabled=False), ema=None, device=torch.device("cpu"),
        amp_dtype=None, steps_per_epoch=1,
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
    stats = train_one_epoch(_toy_parts(model), batches, state, TrainConfig(accumulate=2, grad_clip=None),
                            epoch=0, planned_epochs=1, nan_guard=NanGuard("skip", 3), show_progress=False)
    assert state.step == 2 and stats["skipped_steps"] == 0 and len(stats["step_losses"]) == 4
    assert torch.allclose(model.weight, expected, atol=1e-6)
    assert stats["loss"] == pytest.approx(stats["loss_a"] + stats["loss_b"], rel=1e-5)
    assert 0.0 <= stats["data_wait_fraction"] <= 1.0 and stats["images_per_s"] > 0


def test_gradient_clipping_bounds_the_update() -> None:
    model = _Linear()
    before = model.weight.detach().clone()
    train_one_epoch(_toy_parts(model, lr=1.0), _toy_batches(1), TrainState(planned_epochs=1),
                    TrainConfig(grad_clip=1e-3), epoch=0, planned_epochs=1, nan_guard=NanGuard("skip", 3),
                    show_progress=False)
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
    stats = train_one_epoch(_toy_parts(model, _loss_nan_on({1})), _toy_batches(3), state, TrainConfig(grad_clip=None),
                            epoch=0, planned_epochs=1, nan_guard=NanGuard("skip", 2), show_progress=False)
    assert stats["skipped_steps"] == 1 and state.step == 2 and not non_finite_tensors(model.state_dict())
    assert math.isnan(stats["step_losses"][0]) and math.isfinite(stats["loss"])
    # Two in a row with max_nan_skips=2 stops; the weights stay finite.
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite"):
        train_one_epoch(_toy_parts(model, _loss_nan_on({1, 2})), _toy_batches(3), TrainState(planned_epochs=1),
                        TrainConfig(grad_clip=None), epoch=0, planned_epochs=1, nan_guard=NanGuard("skip", 2),
                        show_progress=False)
    assert not non_finite_tensors(model.state_dict())
    with pytest.raises(NonFiniteLossError, match="nan_policy=stop"):
        train_one_epoch(_toy_parts(model, _loss_nan_on({2})), _toy_batches(3), TrainState(planned_epochs=1),
                        TrainConfig(grad_clip=None), epoch=0, planned_epochs=1, nan_guard=NanGuard("stop", 20),
                        show_progress=False)
    assert not non_finite_tensors(model.state_dict())


# ---------------------------------------------------------------- fit() with the real model, tiny


@pytest.fixture
def tiny_config(tiny_training) -> Callable[..., Config]:
    """The shared tiny run (tests/conftest.py) as a Config."""
    def make(data_root: Path, run_dir: Path, **train: object) -> Config:
        return config_from_dict(tiny_training(data_root, run_dir, **train))
    return make


def test_fit_with_nan_loss_skips_and_saves_only_finite_weights(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import detector.model.build as build

    real_build_loss = build.build_loss

    def build_nan_once(model_cfg, num_classes):
        loss = real_build_loss(model_cfg, num_classes)
        calls = [0]
        real_forward = loss.forward

        def forward(raw, targets, *args, **kwargs):
            calls[0] += 1
            terms = real_forward(raw, targets, *args, **kwargs)
            if calls[0] == 1:
                terms["loss"] = terms["loss"] * float("nan")
            return terms

        loss.forward = forward
        return loss

    monkeypatch.setattr(build, "build_loss", build_nan_once)
    run = fit(tiny_config(tmp_path / "data", tmp_path / "run"), show_progress=False)
    last = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert last["step"] == 1 and last["ema"]["updates"] == 1
    for key in ("model", "train_model"):
        assert not non_finite_tensors(last[key])
    with (run / "results.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["skipped_steps"] == "1" and math.isfinite(float(row["loss"]))

    # nan_policy=stop: the run stops at once and writes no checkpoint at all.
    with pytest.raises(NonFiniteLossError, match="nan_policy=stop"):
        fit(tiny_config(tmp_path / "data", tmp_path / "stop", nan_policy="stop"), show_progress=False)
    assert not (tmp_path / "stop/weights/last.pt").exists()


def test_non_finite_weights_are_never_saved(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = trainer_module.train_one_epoch

    def poison(parts, *args, **kwargs):
        stats = real(parts, *args, **kwargs)
        with torch.no_grad():
            next(parts.model.parameters()).fill_(float("inf"))
        return stats

    monkeypatch.setattr(trainer_module, "train_one_epoch", poison)
    with pytest.raises(NonFiniteLossError, match="not saving"):
        fit(tiny_config(tmp_path / "data", tmp_path / "run", ema=False), show_progress=False)
    assert not (tmp_path / "run/weights/last.pt").exists()


def test_time_limit_stops_and_still_validates(tiny_config, tmp_path: Path) -> None:
    messages: list[str] = []
    # A budget of 0.06 s: over after the first step, whatever the machine.
    run = fit(tiny_config(tmp_path / "data", tmp_path / "run", epochs=5, time_limit=0.001),
              show_progress=False, log=messages.append)
    last = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert last["finished"] and last["epoch"] == 1 and last["step"] == 1  # stopped mid-epoch
    assert any("time budget: 5 -> 1 epochs" in m for m in messages)
    with (run / "results.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["AP"] != ""  # the final validation ran
    assert load_checkpoint(run / "weights/best.pt")["epoch"] == 1


def test_run_directories_are_numbered_and_not_overwritten(tmp_path: Path) -> None:
    from detector.training.run_dir import append_result, create_run_dir, next_run_dir, read_results

    assert next_run_dir(tmp_path) == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp2").mkdir()
    assert next_run_dir(tmp_path) == tmp_path / "exp3"
    run = create_run_dir(tmp_path / "mine")
    assert (run / "weights").is_dir() and (run / "plots").is_dir()
    append_result(run / "results.csv", {"epoch": 1, "loss": 0.5, "AP": math.nan})
    append_result(run / "results.csv", {"epoch": 2, "loss": 0.25, "AP": 0.125})
    rows = read_results(run / "results.csv")
    assert [r["epoch"] for r in rows] == [1.0, 2.0] and math.isnan(rows[0]["AP"]) and rows[1]["AP"] == 0.125
    with pytest.raises(FileExistsError, match="--resume"):
        create_run_dir(run)
    create_run_dir(run, exist_ok=True)
    assert not (run / "results.csv").exists()  # a fresh run does not inherit old rows
