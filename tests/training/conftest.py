"""Shared by the training tests: last.pt rebuilt in the layout the earlier code wrote, a run
that dies after a given step, the mosaic switches the sampler is told."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from detector.data.loading.sampling import SeededSampler
from detector.training import trainer

# The layout of a last.pt as the code before `training.engine` wrote it, spelled out here rather
# than taken from the code under test: a rename in the code must fail these tests.
OLD_LAST_PT_KEYS = {
    "model",
    "config",
    "names",
    "image_size",
    "mean",
    "std",
    "epoch",
    "best_ap",
    "train_model",
    "optimizer",
    "scheduler",
    "scaler",
    "ema",
    "rng",
    "finished",
    "step",
    "train_state",
    "epoch_progress",
}
OLD_SCHEDULER_KEYS = (
    "base_lr",
    "end_lr",
    "warmup_steps",
    "total_steps",
    "start_step",
    "start_lr",
    "anchor_step",
    "anchor_progress",
)
OLD_TRAIN_STATE_KEYS = (
    "planned_epochs",
    "epoch",
    "step",
    "best_ap",
    "best_epoch",
    "epochs_without_improvement",
    "elapsed_s",
    "finished",
    "mosaic_closed",
)
# What the code writes beyond the old layout: optional in a file, their default when absent
# (an old last.pt lacks them, and `as_old_layout` drops them to prove it still resumes).
NEW_TRAIN_STATE_KEYS = ("full_size_reached",)
OLD_EPOCH_PROGRESS_KEYS = (
    "batches_done",
    "sums",
    "finite_batches",
    "skipped_steps",
    "images_seen",
    "nan_streak",
)


def _as_old_layout(ckpt: dict, *, oldest: bool = False) -> dict:
    """`ckpt` rebuilt key by key from the old layout (the new code must write exactly those keys).

    `oldest`: as the first versions wrote it: a scheduler without the anchor keys (an end never
    moved), no `mosaic_closed`, no `nan_streak`, no `epoch_progress` at an epoch end.
    """
    assert set(ckpt) == OLD_LAST_PT_KEYS
    assert set(ckpt["scheduler"]) == set(OLD_SCHEDULER_KEYS)
    assert set(ckpt["train_state"]) == set(OLD_TRAIN_STATE_KEYS + NEW_TRAIN_STATE_KEYS)
    assert set(ckpt["epoch_progress"]) == set(OLD_EPOCH_PROGRESS_KEYS)
    scheduler, train_state, progress = (
        OLD_SCHEDULER_KEYS,
        OLD_TRAIN_STATE_KEYS,
        OLD_EPOCH_PROGRESS_KEYS,
    )
    if oldest:
        scheduler, train_state, progress = scheduler[:-2], train_state[:-1], progress[:-1]
    old = {
        key: ckpt[key] for key in OLD_LAST_PT_KEYS - {"scheduler", "train_state", "epoch_progress"}
    }
    old["scheduler"] = {key: ckpt["scheduler"][key] for key in scheduler}
    old["train_state"] = {key: ckpt["train_state"][key] for key in train_state}
    if not (oldest and ckpt["epoch_progress"]["batches_done"] == 0):
        old["epoch_progress"] = {key: ckpt["epoch_progress"][key] for key in progress}
    return old


@pytest.fixture
def as_old_layout() -> Callable[..., dict]:
    """`as_old_layout(ckpt, oldest=False)`: `ckpt` rebuilt key by key from the old layout."""
    return _as_old_layout


class Crash(Exception):
    """The "kill" of `crash_after_step`."""


@pytest.fixture
def crash_after_step(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[int], contextlib.AbstractContextManager]:
    """`with crash_after_step(8): fit(...)`: the run dies right after step 8 is logged to
    steps.csv, before anything later is saved (the block expects the crash)."""
    real = trainer.append_step

    @contextlib.contextmanager
    def crash(step: int) -> Iterator[None]:
        def append_step(path, **row) -> None:
            real(path, **row)
            if row["step"] == step:
                raise Crash

        monkeypatch.setattr(trainer, "append_step", append_step)
        try:
            with pytest.raises(Crash):
                yield
        finally:
            monkeypatch.setattr(trainer, "append_step", real)

    return crash


@pytest.fixture
def mosaic_switches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every `set_mosaic` the training sampler is told, in order."""
    seen: list[bool] = []
    real = SeededSampler.set_mosaic

    def record(self: SeededSampler, enabled: bool) -> None:
        seen.append(enabled)
        real(self, enabled)

    monkeypatch.setattr(SeededSampler, "set_mosaic", record)
    return seen
