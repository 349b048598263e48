"""`fit` with the real model, tiny: the NaN guard, the time budget, never saving NaN."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from detector.checkpoint import load_checkpoint, non_finite_tensors
from detector.config import Config, config_from_dict
from detector.training import trainer as trainer_module
from detector.training.engine import NonFiniteLossError, TrainingEpoch
from detector.training.trainer import fit

# ---------------------------------------------------------------- fit() with the real model, tiny


@pytest.fixture
def tiny_config(tiny_training) -> Callable[..., Config]:
    """The shared tiny run (tests/conftest.py) as a Config."""

    def make(data_root: Path, run_dir: Path, **train: object) -> Config:
        return config_from_dict(tiny_training(data_root, run_dir, **train))

    return make


def test_fit_with_nan_loss_skips_and_saves_only_finite_weights(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        fit(
            tiny_config(tmp_path / "data", tmp_path / "stop", nan_policy="stop"),
            show_progress=False,
        )
    assert not (tmp_path / "stop/weights/last.pt").exists()


def test_non_finite_weights_are_never_saved(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Poisoned(TrainingEpoch):
        def stats(self) -> dict:
            stats = super().stats()
            with torch.no_grad():
                next(self.parts.model.parameters()).fill_(float("inf"))
            return stats

    monkeypatch.setattr(trainer_module, "TrainingEpoch", Poisoned)
    with pytest.raises(NonFiniteLossError, match="not saving"):
        fit(tiny_config(tmp_path / "data", tmp_path / "run", ema=False), show_progress=False)
    assert not (tmp_path / "run/weights/last.pt").exists()


def test_time_limit_stops_and_still_validates(tiny_config, tmp_path: Path) -> None:
    messages: list[str] = []
    # A budget of 0.06 s: over after the first step, whatever the machine.
    run = fit(
        tiny_config(tmp_path / "data", tmp_path / "run", epochs=5, time_limit=0.001),
        show_progress=False,
        log=messages.append,
    )
    last = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert last["finished"] and last["epoch"] == 1 and last["step"] == 1  # stopped mid-epoch
    assert any("time budget: 5 -> 1 epochs" in m for m in messages)
    with (run / "results.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["AP"] != ""  # the final validation ran
    assert load_checkpoint(run / "weights/best.pt")["epoch"] == 1
