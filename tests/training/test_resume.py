"""Resume: interrupted + resumed equals uninterrupted;
finished runs and class changes are refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from detector.checkpoint import load_checkpoint
from detector.config import Config, config_from_dict
from detector.training import trainer as trainer_module
from detector.training.engine import TrainingEpoch
from detector.training.resume import ResumeError, prepare_resume
from detector.training.trainer import fit


@pytest.fixture
def tiny_config(tiny_training) -> Callable[..., Config]:
    """The shared tiny run (tests/conftest.py), 2 epochs of plain SGD with one warmup epoch."""

    def make(data_root: Path, run_dir: Path, **train: object) -> Config:
        settings = {"epochs": 2, "optimizer": "sgd", "lr": 0.01, "warmup_epochs": 1.0, **train}
        return config_from_dict(tiny_training(data_root, run_dir, **settings))

    return make


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)  # do not leak the global switch into other tests


class _Interrupt(Exception):
    pass


def _recording_epochs(
    monkeypatch: pytest.MonkeyPatch, losses: list[float], interrupt_at_call: int | None
) -> None:
    """Wrap the trainer's epochs: record per-step losses;
    raise (a "kill") at the given epoch's start."""
    calls = [0]

    class Recording(TrainingEpoch):
        def __init__(self, *args, **kwargs) -> None:
            calls[0] += 1
            if interrupt_at_call is not None and calls[0] == interrupt_at_call:
                raise _Interrupt
            super().__init__(*args, **kwargs)

        def stats(self) -> dict:
            stats = super().stats()
            losses.extend(stats["step_losses"])
            return stats

    monkeypatch.setattr(trainer_module, "TrainingEpoch", Recording)


@pytest.mark.parametrize("workers", [0, 1])
def test_interrupted_and_resumed_equals_uninterrupted(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deterministic, workers: int
) -> None:
    data = tmp_path / "data"
    # Augmentation on (the default pipeline): the resumed epoch must replay the same random
    # crops, also when a (persistent) worker that never saw epoch 1 produces them.
    settings = {"deterministic": True, "ema": True, "epochs": 2, "workers": workers}

    straight_losses: list[float] = []
    _recording_epochs(monkeypatch, straight_losses, interrupt_at_call=None)
    straight_dir = fit(tiny_config(data, tmp_path / "straight", **settings), show_progress=False)

    resumed_losses: list[float] = []
    _recording_epochs(
        monkeypatch, resumed_losses, interrupt_at_call=2
    )  # killed after epoch 1's checkpoint
    with pytest.raises(_Interrupt):
        fit(tiny_config(data, tmp_path / "resumed", **settings), show_progress=False)
    assert load_checkpoint(tmp_path / "resumed/weights/last.pt")["epoch"] == 1
    _recording_epochs(monkeypatch, resumed_losses, interrupt_at_call=None)
    cfg, ckpt, changes = prepare_resume(tmp_path / "resumed")
    assert changes == []
    fit(cfg, resume_checkpoint=ckpt, show_progress=False)

    assert len(straight_losses) == 4 and resumed_losses == straight_losses
    straight = load_checkpoint(straight_dir / "weights/last.pt", require_training_state=True)
    resumed = load_checkpoint(tmp_path / "resumed/weights/last.pt", require_training_state=True)
    for key in ("train_model", "model"):  # trained weights and EMA weights
        assert straight[key].keys() == resumed[key].keys()
        for name in straight[key]:
            assert torch.equal(straight[key][name], resumed[key][name]), f"{key}.{name} differs"
    assert straight["step"] == resumed["step"] == 4 and resumed["finished"]
    assert straight["scheduler"] == resumed["scheduler"]
    # results.csv has one row per epoch, not a duplicate for the epoch around the interruption.
    rows = (tmp_path / "resumed/results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]


def test_more_epochs_on_resume_then_refusals(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    losses: list[float] = []
    _recording_epochs(monkeypatch, losses, interrupt_at_call=2)
    with pytest.raises(_Interrupt):
        fit(tiny_config(tmp_path / "data", run, epochs=2), show_progress=False)
    with pytest.raises(ResumeError, match="model changed"):
        prepare_resume(run, overrides=["model.backbone=resnet34"])

    cfg, ckpt, changes = prepare_resume(run, overrides=["train.epochs=3"])
    assert changes == ["train.epochs: 2 -> 3"]
    messages: list[str] = []
    _recording_epochs(monkeypatch, losses, interrupt_at_call=None)
    fit(cfg, resume_checkpoint=ckpt, changes=changes, show_progress=False, log=messages.append)
    assert any("re-planning the schedule from 2 to 3 epochs" in m for m in messages)
    last = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert last["epoch"] == 3 and last["finished"] and len(losses) == 6
    # 2 steps per epoch, 2 warmup steps: the cosine now runs from step 2 to step 6.
    assert last["scheduler"]["total_steps"] == 6 and last["scheduler"]["start_step"] == 2

    with pytest.raises(
        ResumeError, match=r"the run finished \(3 epochs.*--set train.epochs=N \(N > 3\)"
    ):
        prepare_resume(run)
    with pytest.raises(ResumeError, match="finished"):
        prepare_resume(run, overrides=["train.epochs=3"])  # not larger: refused
    with pytest.raises(ResumeError, match="no such run"):
        prepare_resume(tmp_path / "nowhere")
    (run / "weights/last.pt").write_bytes(b"garbage")
    with pytest.raises(ResumeError, match="corrupt"):
        prepare_resume(run)


def test_other_or_reordered_class_names_are_refused_with_both_lists(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    _recording_epochs(monkeypatch, [], interrupt_at_call=2)
    with pytest.raises(_Interrupt):
        fit(tiny_config(tmp_path / "data", run, epochs=2), show_progress=False)
    cases = {
        "[square, circle]": "[square, circle] (the same names in another order)",
        "[circle, triangle]": "[circle, triangle] (other class names)",
        "[circle]": "[circle] (other class names)",
    }
    for names, now in cases.items():
        with pytest.raises(ResumeError) as info:
            prepare_resume(run, overrides=[f"data.names={names}"])
        assert str(info.value) == (
            f"cannot resume {run}: it was trained on [circle, square] but the data now has "
            f"{now}; every label would change meaning, so start a new run"
        )

    # COCO takes names from its categories (data.names null): fit itself compares them.
    cfg, ckpt, _ = prepare_resume(run)
    ckpt["names"] = ["square", "circle"]  # as if the data's category order had changed since
    with pytest.raises(
        ResumeError, match=r"\[square, circle\] but the data now has \[circle, square\]"
    ):
        fit(cfg, resume_checkpoint=ckpt, show_progress=False)


def test_finished_run_is_extended_with_a_stated_new_segment(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    fit(tiny_config(tmp_path / "data", run, epochs=2, early_stop_patience=2), show_progress=False)
    done = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert done["finished"] and done["step"] == 4
    cfg, ckpt, changes = prepare_resume(run, overrides=["train.epochs=4"])
    assert changes == ["train.epochs: 2 -> 4"]
    messages: list[str] = []
    losses: list[float] = []
    _recording_epochs(monkeypatch, losses, interrupt_at_call=None)
    fit(cfg, resume_checkpoint=ckpt, changes=changes, show_progress=False, log=messages.append)
    assert (
        "resume: the run had finished after 2 epochs (step 4); extending it to 4 epochs "
        "with a new schedule segment: cosine from lr 0.01 to 0.0005 over steps 4..8, "
        "no warmup; the early-stopping count starts again"
    ) in messages
    last = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert last["epoch"] == 4 and last["finished"] and last["step"] == 8 and len(losses) == 4
    assert last["scheduler"]["start_step"] == 4 and last["scheduler"]["start_lr"] == 0.01
    assert last["scheduler"]["total_steps"] == 8
    rows = (run / "results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    with pytest.raises(ResumeError, match=r"N > 4"):
        prepare_resume(run, overrides=["train.epochs=4"])
    with pytest.raises(ResumeError, match="train.time_limit=null"):
        prepare_resume(run, overrides=["train.epochs=6", "train.time_limit=5"])


def _steps(run: Path) -> list[tuple[int, int, int, float]]:
    from detector.training.run_files import read_steps

    return [
        (int(r["epoch"]), int(r["batch"]), int(r["step"]), r["loss"])
        for r in read_steps(run / "steps.csv")
    ]


def _assert_same_weights(a: Path, b: Path) -> None:
    first = load_checkpoint(a / "weights/last.pt", require_training_state=True)
    second = load_checkpoint(b / "weights/last.pt", require_training_state=True)
    for key in ("train_model", "model"):
        assert first[key].keys() == second[key].keys()
        for name in first[key]:
            assert torch.equal(first[key][name], second[key][name]), f"{key}.{name} differs"
    assert first["step"] == second["step"] and first["scheduler"] == second["scheduler"]


def test_save_period_checkpoint_resumes_exactly_mid_epoch(
    tiny_config, tmp_path: Path, deterministic, crash_after_step
) -> None:
    """A crash after a mid-epoch save (and one more logged step): resume equals the straight run."""
    data = tmp_path / "data"
    settings = {"deterministic": True, "epochs": 2, "save_period": "3 steps"}

    def make(run: Path) -> Config:
        return config_from_dict(_eight_image_config(tiny_config, data, run, settings))

    straight = fit(make(tmp_path / "straight"), show_progress=False)

    with crash_after_step(8):
        fit(make(tmp_path / "resumed"), show_progress=False)
    saved = load_checkpoint(tmp_path / "resumed/weights/last.pt", require_training_state=True)
    # 4 steps per epoch; saves at step 3 (period), 4 (epoch end), 7 (period):
    # epoch 2, after 3 batches.
    assert (
        saved["step"] == 7 and saved["epoch"] == 1 and saved["epoch_progress"]["batches_done"] == 3
    )
    assert not saved["finished"]
    cfg, ckpt, changes = prepare_resume(tmp_path / "resumed")
    messages: list[str] = []
    fit(cfg, resume_checkpoint=ckpt, show_progress=False, log=messages.append)
    assert any("continuing epoch 2 after its first 3 batches (step 7)" in m for m in messages)

    assert _steps(tmp_path / "resumed") == _steps(straight) and len(_steps(straight)) == 8
    _assert_same_weights(straight, tmp_path / "resumed")
    # The epoch's mean losses in results.csv cover the whole epoch, not only its resumed part.
    import csv

    rows = {
        name: list(csv.DictReader((run / "results.csv").open()))
        for name, run in (("straight", straight), ("resumed", tmp_path / "resumed"))
    }
    for column in (
        "epoch",
        "loss",
        "loss_box",
        "loss_obj",
        "loss_cls",
        "lr",
        "AP",
        "skipped_steps",
    ):
        assert [r[column] for r in rows["resumed"]] == [r[column] for r in rows["straight"]], column


def _eight_image_config(tiny_config, data: Path, run: Path, settings: dict) -> dict:
    from detector.config import config_to_dict

    raw = config_to_dict(tiny_config(data, run, **settings))
    raw["data"]["synthetic"]["num_train"] = 8
    return raw


def test_mid_epoch_checkpoint_refuses_a_changed_batch_size(tiny_config, tmp_path: Path) -> None:
    from detector.checkpoint import save_checkpoint

    run = tmp_path / "run"
    fit(tiny_config(tmp_path / "data", run, epochs=1), show_progress=False)
    ckpt = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    ckpt["finished"], ckpt["epoch_progress"]["batches_done"] = False, 1
    save_checkpoint(ckpt, run / "weights/last.pt")
    with pytest.raises(ResumeError, match=r"mid-epoch checkpoint with train.batch_size: 2 -> 1"):
        prepare_resume(run, overrides=["train.batch_size=1"])
    prepare_resume(run, overrides=["train.workers=1"])  # anything else is fine


def test_mid_epoch_checkpoint_refuses_changed_augmentation_keys(
    tiny_config, tmp_path: Path
) -> None:
    """augment, multi_scale, close_mosaic and data.slice shape the rest of the epoch: a change
    would make the resume silently inexact, so it is refused naming the key and both values."""
    from detector.checkpoint import save_checkpoint

    run = tmp_path / "run"
    fit(tiny_config(tmp_path / "data", run, epochs=1), show_progress=False)
    ckpt = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    ckpt["finished"], ckpt["epoch_progress"]["batches_done"] = False, 1
    save_checkpoint(ckpt, run / "weights/last.pt")
    for override, change in (
        ("augment=[{name: hflip}]", "augment: None -> [{'name': 'hflip'}]"),
        ("train.multi_scale=[32, 96]", "train.multi_scale: None -> [32, 96]"),
        ("train.close_mosaic=1", "train.close_mosaic: 0 -> 1"),
        (
            "data.slice={size: 64}",
            "data.slice: None -> {'size': 64, 'overlap': 0.2, "
            "'min_area_ratio': 0.5, 'empty_rate': 0.1, 'full_images': 2, "
            "'group_images': 8}",
        ),
    ):
        with pytest.raises(ResumeError) as info:
            prepare_resume(run, overrides=[override])
        assert f"mid-epoch checkpoint with {change}" in str(info.value), str(info.value)
    ckpt["epoch_progress"]["batches_done"] = (
        0  # at an epoch end they may change (stated in the log)
    )
    save_checkpoint(ckpt, run / "weights/last.pt")
    _, _, changes = prepare_resume(
        run, overrides=["train.close_mosaic=1", "train.multi_scale=[32, 96]"]
    )
    assert changes == ["train.close_mosaic: 0 -> 1", "train.multi_scale: None -> [32, 96]"]


def test_a_mid_epoch_last_pt_in_the_old_layout_resumes_exactly(
    tiny_config, tmp_path: Path, deterministic, as_old_layout, crash_after_step
) -> None:
    """A mid-epoch last.pt with only the oldest layout's keys: the resume equals the straight run
    (steps.csv bit for bit, the weights, the lr plan)."""
    from detector.checkpoint import save_checkpoint

    data = tmp_path / "data"
    settings = {"deterministic": True, "epochs": 2, "save_period": "3 steps"}

    def make(run: Path) -> Config:
        return config_from_dict(_eight_image_config(tiny_config, data, run, settings))

    straight = fit(make(tmp_path / "straight"), show_progress=False)
    with crash_after_step(6):
        fit(make(tmp_path / "resumed"), show_progress=False)
    last = tmp_path / "resumed/weights/last.pt"
    saved = load_checkpoint(last, require_training_state=True)
    assert (saved["step"], saved["epoch_progress"]["batches_done"]) == (4, 0)  # the epoch end
    # The epoch-end save as the oldest code wrote it, then a resume that crashes nowhere.
    save_checkpoint(as_old_layout(saved, oldest=True), last)
    cfg, ckpt, _ = prepare_resume(tmp_path / "resumed")
    assert "epoch_progress" not in ckpt and "anchor_step" not in ckpt["scheduler"]
    fit(cfg, resume_checkpoint=ckpt, show_progress=False)
    assert _steps(tmp_path / "resumed") == _steps(straight) and len(_steps(straight)) == 8
    _assert_same_weights(straight, tmp_path / "resumed")

    # Mid-epoch: saved at step 7 (the period), crashed after step 8; resumed from the old layout.
    with crash_after_step(8):
        fit(make(tmp_path / "mid"), show_progress=False)
    last = tmp_path / "mid/weights/last.pt"
    saved = load_checkpoint(last, require_training_state=True)
    assert (saved["step"], saved["epoch_progress"]["batches_done"]) == (7, 3)
    save_checkpoint(as_old_layout(saved, oldest=True), last)
    cfg, ckpt, _ = prepare_resume(tmp_path / "mid")
    fit(cfg, resume_checkpoint=ckpt, show_progress=False)
    assert _steps(tmp_path / "mid") == _steps(straight)
    _assert_same_weights(straight, tmp_path / "mid")
