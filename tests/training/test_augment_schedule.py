"""train.close_mosaic switches at the right epoch; resume with mosaic and multi-scale equals the straight run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector.checkpoint import load_checkpoint
from detector.config import config_from_dict
from detector.data.loading.sampling import SeededSampler
from detector.training import trainer as trainer_module
from detector.training.resume import prepare_resume
from detector.training.run_controls import CloseMosaic
from detector.training.run_files import read_steps
from detector.training.trainer import fit


@pytest.mark.parametrize("close_mosaic,planned,expected_on", [
    (0, 5, [True] * 5),
    (2, 10, [True] * 8 + [False] * 2),
    (0.25, 10, [True] * 7 + [False] * 3),  # 2.5 epochs, rounded up
    (0.1, 30, [True] * 27 + [False] * 3),  # exactly 3, despite 0.1 * 30 = 3.0000000000000004
    (12, 10, [False] * 10),
])
def test_mosaic_closes_for_the_last_epochs(close_mosaic: float, planned: int, expected_on: list[bool]) -> None:
    assert [CloseMosaic(close_mosaic).enabled(epoch, planned) for epoch in range(planned)] == expected_on


def test_fraction_follows_the_planned_epochs() -> None:
    assert CloseMosaic(0.2).closing_epochs(10) == 2 and CloseMosaic(0.2).closing_epochs(24) == 5
    assert CloseMosaic(3).closing_epochs(24) == 3


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)


def _config(tiny_training, data: Path, run: Path, **train: object):
    raw = tiny_training(data, run, num_train=8, **train)
    raw["augment"] = [{"name": "mosaic", "p": 0.8}, {"name": "hflip"}, {"name": "affine", "p": 0.5}]
    return config_from_dict(raw)


def test_trainer_tells_the_sampler_each_epochs_switch(tiny_training, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = SeededSampler.set_mosaic

    def record(self: SeededSampler, enabled: bool) -> None:
        seen.append(enabled)
        real(self, enabled)

    monkeypatch.setattr(SeededSampler, "set_mosaic", record)
    fit(_config(tiny_training, tmp_path / "data", tmp_path / "run", epochs=3, close_mosaic=1), show_progress=False)
    assert seen == [True, True, False]


class _Interrupt(Exception):
    pass


def _steps(run: Path) -> list[tuple]:
    return [(r["epoch"], r["batch"], r["step"], r["loss"]) for r in read_steps(run / "steps.csv")]


def test_mid_epoch_resume_with_mosaic_and_multi_scale_equals_the_straight_run(
        tiny_training, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deterministic) -> None:
    data = tmp_path / "data"
    settings = {"deterministic": True, "epochs": 3, "close_mosaic": 1, "multi_scale": [32, 96],
                "save_period": "3 steps", "workers": 1}
    straight = fit(_config(tiny_training, data, tmp_path / "straight", **settings), show_progress=False)

    real_append_step = trainer_module.append_step

    def crash_at_step_8(path, **row):
        real_append_step(path, **row)
        if row["step"] == 8:
            raise _Interrupt  # after the period save at step 7, inside epoch 2 (mosaic on)

    monkeypatch.setattr(trainer_module, "append_step", crash_at_step_8)
    with pytest.raises(_Interrupt):
        fit(_config(tiny_training, data, tmp_path / "resumed", **settings), show_progress=False)
    saved = load_checkpoint(tmp_path / "resumed/weights/last.pt", require_training_state=True)
    # 4 steps per epoch; saves at steps 3 (period), 4 (epoch end), 7 (period): epoch 2 after 3 batches.
    assert saved["step"] == 7 and saved["epoch"] == 1 and saved["epoch_progress"]["batches_done"] == 3
    monkeypatch.setattr(trainer_module, "append_step", real_append_step)
    cfg, ckpt, changes = prepare_resume(tmp_path / "resumed")
    assert changes == []
    fit(cfg, resume_checkpoint=ckpt, show_progress=False)

    assert _steps(tmp_path / "resumed") == _steps(straight) and len(_steps(straight)) == 12
    first = load_checkpoint(straight / "weights/last.pt", require_training_state=True)
    second = load_checkpoint(tmp_path / "resumed/weights/last.pt", require_training_state=True)
    for name in first["train_model"]:
        assert torch.equal(first["train_model"][name], second["train_model"][name]), name
