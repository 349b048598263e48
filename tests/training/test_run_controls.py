"""The run controls: stop signals, periodic saves, close_mosaic, directly and through `fit`.

SIGINT in process: finish the step, save, exit 130; a second signal stops at once, even
mid-write. `train.save_period` parsing and timing. `train.close_mosaic` switches at the
right epoch; resume with mosaic and multi-scale equals the straight run. (SIGTERM
through a real subprocess, with exact resume, is in test_preemption.py; DDP in test_ddp.py.)
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from detector import checkpoint as checkpoint_module
from detector.checkpoint import load_checkpoint
from detector.cli import main
from detector.config import ConfigError, SavePeriod, config_from_dict, parse_save_period
from detector.training import engine
from detector.training import trainer as trainer_module
from detector.training.resume import prepare_resume
from detector.training.run_controls import CloseMosaic, PeriodicSave, StopSignals
from detector.training.run_files import read_steps
from detector.training.trainer import fit

_REAL_STEP = engine.optimizer_step


def _signal_at_step(
    monkeypatch: pytest.MonkeyPatch, step: int, signum: int, times: int = 1
) -> None:
    calls = [0]

    def optimizer_step(*args, **kwargs):
        stepped = _REAL_STEP(*args, **kwargs)
        calls[0] += 1
        if calls[0] == step:
            for _ in range(times):
                os.kill(os.getpid(), signum)
        return stepped

    monkeypatch.setattr(engine, "optimizer_step", optimizer_step)


def test_sigint_finishes_the_step_saves_and_exits_130(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    config = tiny_training_yaml("c.yaml", tmp_path / "data", run, num_train=8, epochs=2)
    _signal_at_step(monkeypatch, 2, signal.SIGINT)
    before = signal.getsignal(signal.SIGINT)
    result = CliRunner().invoke(main, ["train", str(config)])
    assert result.exit_code == 130
    lines = result.stderr.strip().splitlines()
    assert (
        "SIGINT: finishing the current step, then saving last.pt (signal again to stop at once, "
        "without saving)"
    ) in lines
    assert lines[-1] == (
        f"SIGINT: stopped after step 2 (epoch 1, batch 2/4); last.pt saved; "
        f"continue with: detector train --resume {run}"
    )
    saved = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert (
        saved["step"] == 2
        and saved["epoch_progress"]["batches_done"] == 2
        and not saved["finished"]
    )
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are put back
    assert result.stdout == ""


def test_second_signal_during_the_checkpoint_write_stops_at_once_without_partial_file(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    config = tiny_training_yaml(
        "c.yaml", tmp_path / "data", run, num_train=8, epochs=2, save_period="1 steps"
    )
    _signal_at_step(monkeypatch, 2, signal.SIGTERM)  # first signal: stop after step 2 and save...
    real_save, saves = torch.save, [0]

    def save(obj, handle, *args, **kwargs):
        saves[0] += 1
        if saves[0] == 2:  # ...and while that save is writing, a second one
            handle.write(b"\0" * 1000)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    result = CliRunner().invoke(main, ["train", str(config)])
    assert result.exit_code == 143
    assert result.stderr.strip().splitlines()[-1] == (
        "SIGTERM again: stopped at once, without saving; last.pt is the previous checkpoint; "
        f"continue with: detector train --resume {run}"
    )
    # last.pt is the complete file of step 1 (save_period), and no temp file is left.
    assert load_checkpoint(run / "weights/last.pt", require_training_state=True)["step"] == 1
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["last.pt"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30 min", SavePeriod(minutes=30.0)),
        ("0.5min", SavePeriod(minutes=0.5)),
        ("2 minutes", SavePeriod(minutes=2.0)),
        ("500 steps", SavePeriod(steps=500)),
        ("1 step", SavePeriod(steps=1)),
        (" 20 Steps ", SavePeriod(steps=20)),
        (None, None),
    ],
)
def test_save_period_forms(text: str | None, expected: SavePeriod | None) -> None:
    assert parse_save_period(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("30", "is not a period"),
        ("10 epochs", "is not a period"),
        ("0 steps", "must be positive"),
        ("-5 min", "is not a period"),
        ("1.5 steps", "whole number"),
        ("min", "is not a period"),
    ],
)
def test_bad_save_period_is_refused_naming_the_key(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"train.save_period: '{text}'.*{reason}"):
        parse_save_period(text)


def test_save_period_due() -> None:
    assert SavePeriod(steps=3).due(steps_since_save=3, seconds_since_save=0.0)
    assert not SavePeriod(steps=3).due(steps_since_save=2, seconds_since_save=1e9)
    assert SavePeriod(minutes=0.5).due(steps_since_save=0, seconds_since_save=30.0)
    assert not SavePeriod(minutes=0.5).due(steps_since_save=10**6, seconds_since_save=29.9)


def test_bad_save_period_fails_before_a_run_directory_exists(
    tmp_path: Path, tiny_training_yaml
) -> None:
    run = tmp_path / "run"
    config = tiny_training_yaml("c.yaml", tmp_path / "data", run, save_period="30")
    result = CliRunner().invoke(main, ["train", str(config)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {config}: train.save_period: '30' is not a period; "
        'write e.g. "30 min" or "500 steps"'
    )
    assert not run.exists()


def test_signal_on_the_epochs_last_step_then_resume_equals_straight(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after batch 4/4 (before validation):
    the resumed epoch has no batches left, only its end."""

    data = tmp_path / "data"
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    try:
        assert (
            CliRunner()
            .invoke(
                main,
                [
                    "train",
                    str(
                        tiny_training_yaml(
                            "a.yaml", data, straight, num_train=8, epochs=2, deterministic=True
                        )
                    ),
                ],
            )
            .exit_code
            == 0
        )
        _signal_at_step(monkeypatch, 4, signal.SIGTERM)
        result = CliRunner().invoke(
            main,
            [
                "train",
                str(
                    tiny_training_yaml(
                        "b.yaml", data, stopped, num_train=8, epochs=2, deterministic=True
                    )
                ),
            ],
        )
        assert result.exit_code == 143
        assert "stopped after step 4 (epoch 1, batch 4/4)" in result.stderr.strip().splitlines()[-1]
        monkeypatch.setattr(engine, "optimizer_step", _REAL_STEP)
        resumed = CliRunner().invoke(main, ["train", "--resume", str(stopped)])
        assert resumed.exit_code == 0, resumed.output
    finally:
        torch.use_deterministic_algorithms(False)
    assert read_steps(stopped / "steps.csv") == read_steps(straight / "steps.csv")
    first = load_checkpoint(straight / "weights/last.pt", require_training_state=True)
    second = load_checkpoint(stopped / "weights/last.pt", require_training_state=True)
    for name, value in first["train_model"].items():
        assert torch.equal(second["train_model"][name], value), name
    assert (stopped / "results.csv").read_text().count("\n") == 3  # header + 2 epochs, none twice


def test_save_period_in_minutes_writes_mid_epoch(
    tmp_path: Path, tiny_training, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock that moves 20 s per reading:
    "0.5 min" is due every couple of steps, inside epochs."""

    seen: list[tuple[int, int]] = []
    real_save = trainer_module.save_last

    def save_last(run_dir, parts, state, cfg, names, progress=None):
        if progress is not None:  # a mid-epoch last.pt
            seen.append((state.step, progress.batches_done))
        real_save(run_dir, parts, state, cfg, names, progress)

    monkeypatch.setattr(trainer_module, "save_last", save_last)
    ticks = iter(range(0, 10**6, 20))
    cfg = config_from_dict(
        tiny_training(
            tmp_path / "data", tmp_path / "run", num_train=8, epochs=1, save_period="0.5 min"
        )
    )
    trainer_module.fit(
        cfg, show_progress=False, log=lambda message: None, clock=lambda: float(next(ticks))
    )
    assert seen and all(0 < batches < 4 for _, batches in seen)  # mid-epoch, never at its end
    assert [step for step, _ in seen] == sorted({step for step, _ in seen})


def test_signal_during_a_long_validation_stops_it_and_saves_the_epochs_end(
    tmp_path: Path, tiny_training_yaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM at the start of a validation that would take ~15 s (a COCO-sized one, in
    miniature): the run stops within seconds, not after the validation and the checkpoint
    (a 30 s grace would have ended in SIGKILL), leaving the epoch's trained state in
    last.pt; the resume validates that epoch and finishes."""
    import time

    from detector.evaluation import dataset_predict

    run = tmp_path / "run"
    config = tiny_training_yaml("c.yaml", tmp_path / "data", run, num_train=8, epochs=2)
    real_predict, signalled = dataset_predict.predict_loader, []

    def slow_predict(detector, loader, *, progress=False):
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(60):  # 60 passes of 0.25 s per batch
            for _batch in loader:
                time.sleep(0.25)
        return real_predict(detector, loader, progress=progress)

    monkeypatch.setattr(dataset_predict, "predict_loader", slow_predict)
    result = CliRunner().invoke(main, ["train", str(config)])
    waited = time.monotonic() - signalled[0]
    assert result.exit_code == 143, result.output
    assert waited < 5.0, f"stopped {waited:.1f} s after the signal"
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("SIGTERM: stopped after step 4 (epoch 1, batch 4/4)")
    )
    saved = load_checkpoint(run / "weights/last.pt", require_training_state=True)
    assert (saved["step"], saved["epoch"], saved["epoch_progress"]["batches_done"]) == (4, 0, 4)
    assert not (run / "results.csv").is_file() or (run / "results.csv").read_text().count("\n") <= 1

    monkeypatch.setattr(dataset_predict, "predict_loader", real_predict)
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert (run / "results.csv").read_text().count("\n") == 3  # header + 2 epochs, the first once
    assert load_checkpoint(run / "weights/last.pt", require_training_state=True)["finished"]


def test_dataloader_workers_outlive_a_sigterm_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to the process group (torchrun, SLURM) reaches the workers too; they must keep
    serving however long the main process takes to finish its step (accumulate > 1, slow
    loading), and leave when the main process shuts them down.

    They used to exit WORKER_TERM_GRACE_S (10 s) after it; the grace is shortened here to
    0.5 s (fork copies the patched value into the worker) so the test need not wait 10 s.
    """
    import subprocess
    import sys
    import time

    from torch.utils.data import DataLoader

    from detector.data.loading import worker_signals
    from detector.data.loading.dataset import init_worker
    from detector.training.failures import shut_down_workers

    monkeypatch.setattr(worker_signals, "WORKER_TERM_GRACE_S", 0.5)
    loader = DataLoader(
        list(range(20)),
        batch_size=None,
        num_workers=1,
        worker_init_fn=init_worker,
        persistent_workers=True,
    )
    batches = iter(loader)
    assert next(batches) == 0
    (worker,) = batches._workers
    # From another process, as a group signal comes (the main process's own SIGTERM ends a worker).
    subprocess.run(
        [sys.executable, "-c", f"import os, signal; os.kill({worker.pid}, signal.SIGTERM)"],
        check=True,
    )
    time.sleep(1.5)
    assert worker.is_alive()
    assert list(batches) == list(range(1, 20))  # and still serving
    started = time.monotonic()
    shut_down_workers(loader)
    assert not worker.is_alive() and time.monotonic() - started < 10.0

    # The main process's own SIGTERM (torch's shutdown, multiprocessing at exit)
    # ends a worker at once.
    batches = iter(
        DataLoader(list(range(4)), batch_size=None, num_workers=1, worker_init_fn=init_worker)
    )
    assert next(batches) == 0
    (worker,) = batches._workers
    worker.terminate()
    worker.join(timeout=5.0)
    assert not worker.is_alive()
    del batches


def test_periodic_save_counts_from_the_latest_write() -> None:
    now = [100.0]
    saves = PeriodicSave(SavePeriod(steps=3), clock=lambda: now[0], step=10)
    assert not saves.due(12) and saves.due(13)
    saves.record(13, epoch=2, batches_done=5)  # any write of last.pt restarts the count
    assert not saves.due(15) and saves.due(16)
    assert saves.holds(2, 5) and not saves.holds(2, 6) and not saves.holds(3, 0)
    minutes = PeriodicSave(SavePeriod(minutes=0.5), clock=lambda: now[0], step=0)
    now[0] += 29.9
    assert not minutes.due(10**6)
    now[0] += 0.1
    assert minutes.due(0)
    never = PeriodicSave(None, clock=lambda: now[0], step=0)
    assert not never.due(10**9) and not never.holds(0, 0)  # nothing written yet: position (-1, 0)


def test_stop_signals_record_the_first_signal_and_put_the_handlers_back() -> None:
    import signal as signal_module

    from detector.training.distributed import DistInfo
    from detector.training.run_controls import ImmediateStop

    before = signal_module.getsignal(signal_module.SIGTERM)
    messages: list[str] = []
    with StopSignals(messages.append) as signals:
        assert signals.agreed(DistInfo(), torch.device("cpu")) == 0
        os.kill(os.getpid(), signal_module.SIGTERM)
        assert signals.signum == signal_module.SIGTERM
        assert signals.agreed(DistInfo(), torch.device("cpu")) == signal_module.SIGTERM
        with pytest.raises(ImmediateStop, match="SIGTERM again: stopped at once"):
            os.kill(os.getpid(), signal_module.SIGTERM)
    assert messages == [
        "SIGTERM: finishing the current step, then saving last.pt (signal again to stop at once, "
        "without saving)"
    ]
    assert signal_module.getsignal(signal_module.SIGTERM) is before


def test_close_mosaic_stays_closed_and_tells_the_sampler() -> None:
    told: list[bool] = []

    class Sampler:
        def set_mosaic(self, enabled: bool) -> None:
            told.append(enabled)

    switch = CloseMosaic(2)
    assert not switch.start_epoch(Sampler(), 7, 10)
    assert switch.start_epoch(Sampler(), 8, 10)
    # Closed once, it stays closed even when a longer plan would open it again.
    assert switch.start_epoch(Sampler(), 9, 20, closed=True)
    assert told == [True, False, False]
    assert switch.start_epoch(object(), 9, 10)  # a sampler without plans: only the answer


@pytest.mark.parametrize(
    "close_mosaic,planned,expected_on",
    [
        (0, 5, [True] * 5),
        (2, 10, [True] * 8 + [False] * 2),
        (0.25, 10, [True] * 7 + [False] * 3),  # 2.5 epochs, rounded up
        (0.1, 30, [True] * 27 + [False] * 3),  # exactly 3, despite 0.1 * 30 = 3.0000000000000004
        (12, 10, [False] * 10),
    ],
)
def test_mosaic_closes_for_the_last_epochs(
    close_mosaic: float, planned: int, expected_on: list[bool]
) -> None:
    assert [
        CloseMosaic(close_mosaic).enabled(epoch, planned) for epoch in range(planned)
    ] == expected_on


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


def test_trainer_tells_the_sampler_each_epochs_switch(
    tiny_training, tmp_path: Path, mosaic_switches
) -> None:
    fit(
        _config(tiny_training, tmp_path / "data", tmp_path / "run", epochs=3, close_mosaic=1),
        show_progress=False,
    )
    assert mosaic_switches == [True, True, False]


def _steps(run: Path) -> list[tuple]:
    return [(r["epoch"], r["batch"], r["step"], r["loss"]) for r in read_steps(run / "steps.csv")]


def test_mid_epoch_resume_with_mosaic_and_multi_scale_equals_the_straight_run(
    tiny_training, tmp_path: Path, deterministic, crash_after_step
) -> None:
    data = tmp_path / "data"
    settings = {
        "deterministic": True,
        "epochs": 3,
        "close_mosaic": 1,
        "multi_scale": [32, 96],
        "save_period": "3 steps",
        "workers": 1,
    }
    straight = fit(
        _config(tiny_training, data, tmp_path / "straight", **settings), show_progress=False
    )

    with crash_after_step(8):
        fit(_config(tiny_training, data, tmp_path / "resumed", **settings), show_progress=False)
    saved = load_checkpoint(tmp_path / "resumed/weights/last.pt", require_training_state=True)
    # 4 steps per epoch; saves at steps 3 (period), 4 (epoch end), 7 (period):
    # epoch 2 after 3 batches.
    assert (
        saved["step"] == 7 and saved["epoch"] == 1 and saved["epoch_progress"]["batches_done"] == 3
    )
    cfg, ckpt, changes = prepare_resume(tmp_path / "resumed")
    assert changes == []
    fit(cfg, resume_checkpoint=ckpt, show_progress=False)

    assert _steps(tmp_path / "resumed") == _steps(straight) and len(_steps(straight)) == 12
    first = load_checkpoint(straight / "weights/last.pt", require_training_state=True)
    second = load_checkpoint(tmp_path / "resumed/weights/last.pt", require_training_state=True)
    for name in first["train_model"]:
        assert torch.equal(first["train_model"][name], second["train_model"][name]), name
