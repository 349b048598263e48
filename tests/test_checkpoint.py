"""Checkpoints: atomic writes survive a kill, corrupt files are named corrupt, code is refused."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from detector import checkpoint as atomic_write
from detector import checkpoint as checkpoint_module
from detector.checkpoint import (
    CheckpointError,
    load_checkpoint,
    non_finite_tensors,
    save_checkpoint,
)
from detector.config import Config, config_to_dict
from detector.model.build import model_from_checkpoint
from detector.training.resume import capture_rng_state, restore_rng_state


def _minimal_state(value: float = 1.0) -> dict:
    return {
        "model": {"weight": torch.full((3,), value)},
        "config": config_to_dict(Config()),
        "names": ["a", "b"],
        "image_size": 64,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "epoch": 1,
        "best_ap": 0.25,
    }


def test_save_then_load_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "weights" / "last.pt"
    save_checkpoint(_minimal_state(2.0), path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], torch.full((3,), 2.0))
    assert loaded["names"] == ["a", "b"] and loaded["best_ap"] == 0.25
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    # And it is a plain weights_only file, loadable without our code.
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_failure_mid_write_keeps_previous_checkpoint_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_minimal_state(1.0), path)
    real_save = torch.save

    def save_half_then_die(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(handle.tell() // 2)  # a torn write...
        raise OSError("disk full")  # ...then the process "dies"

    monkeypatch.setattr(checkpoint_module.torch, "save", save_half_then_die)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_minimal_state(9.0), path)
    assert torch.equal(load_checkpoint(path)["model"]["weight"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_failing_rename_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_minimal_state(1.0), path)

    def broken_replace(src, dst):
        raise KeyboardInterrupt  # Ctrl-C exactly between write and rename

    monkeypatch.setattr(atomic_write.os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_minimal_state(5.0), path)
    assert torch.equal(load_checkpoint(path)["model"]["weight"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_process_killed_mid_write_leaves_previous_checkpoint(tmp_path: Path) -> None:
    """A real SIGKILL while torch.save is writing: the old file stays valid."""
    path = tmp_path / "last.pt"
    save_checkpoint(_minimal_state(1.0), path)
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from detector import checkpoint
        real_save = torch.save
        def save_then_die(obj, handle, *a, **k):
            real_save(obj, handle, *a, **k)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # dies with the temp file written, not renamed
        checkpoint.torch.save = save_then_die
        checkpoint.save_checkpoint({{"model": {{"weight": torch.zeros(1000)}}}}, {str(path)!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()
    assert torch.equal(load_checkpoint(path)["model"]["weight"], torch.ones(3))
    # The kill leaves the temp file; it is hidden (dot-prefixed), never mistaken for last.pt.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert (
        len(leftovers) == 1
        and leftovers[0].startswith(".last.pt.")
        and leftovers[0].endswith(".tmp")
    )
    save_checkpoint(_minimal_state(2.0), path)  # the next save sweeps it away
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_file_is_reported_as_not_found(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_corrupt_file_is_reported_as_corrupt(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_minimal_state(), path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt or unreadable") as info:
        load_checkpoint(path)
    assert "not found" not in str(info.value)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_code_is_refused_as_not_ours_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"model": _RunsCode()}, handle, protocol=2)
    torch.save({"model": _RunsCode()}, tmp_path / "evil2.pt")  # also torch.save's zip format
    for file in (path, tmp_path / "evil2.pt"):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(file)
        message = str(info.value)
        assert message == (
            f"{file}: not a checkpoint of this package (or unsafe): "
            "loading it would run posix.system"
        )
        assert "weights_only" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("names", 3, "names: expected a list of strings, got int"),
        ("names", ["a", 2], "names: expected a list of strings, got list"),
        ("model", [torch.ones(1)], "model: expected a state dict (name -> tensor), got list"),
        (
            "model",
            {"w": 1.5},
            "model: expected a state dict (name -> tensor), but 'w' holds a float",
        ),
        ("image_size", "64", "image_size: expected an integer >= 1, got '64'"),
        ("mean", [0.5, 0.5], "mean: expected a list of 3 numbers, got [0.5, 0.5]"),
        ("epoch", True, "epoch: expected an integer >= 0, got True"),
        ("config", "train: {}", "config: expected a mapping, got str"),
    ],
)
def test_right_keys_wrong_types_name_file_and_key(
    tmp_path: Path, key: str, value: object, expected: str
) -> None:
    state = _minimal_state()
    state[key] = value
    save_checkpoint(state, tmp_path / "best.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "best.pt")
    assert str(info.value) == f"{tmp_path / 'best.pt'}: not a detector checkpoint (key {expected})"


def test_training_keys_wrong_types_are_refused(tmp_path: Path) -> None:
    state = {
        **_minimal_state(),
        "train_model": {"w": torch.ones(1)},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"base_lr": 0.1},
        "scaler": {},
        "ema": {},
        "rng": capture_rng_state(),
        "finished": False,
        "step": 3,
        "train_state": {},
    }
    save_checkpoint(state, tmp_path / "last.pt")
    with pytest.raises(
        CheckpointError,
        match=r"last.pt: not a detector checkpoint \(key scheduler: mapping lacks end_lr",
    ):
        load_checkpoint(tmp_path / "last.pt", require_training_state=True)
    load_checkpoint(tmp_path / "last.pt")  # its inference keys alone are fine


def test_checkpoint_gets_the_umask_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        save_checkpoint(_minimal_state(), tmp_path / "a.pt")
        os.umask(0o027)
        save_checkpoint(_minimal_state(), tmp_path / "b.pt")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o640


def test_next_save_removes_stale_temp_files_of_ours_only(tmp_path: Path) -> None:
    stale = [tmp_path / ".last.pt.0123456789abcdef.tmp", tmp_path / ".best.pt.fedcba9876543210.tmp"]
    others = [tmp_path / "notes.tmp", tmp_path / ".cache.tmp", tmp_path / "last.pt.tmp"]
    for path in stale + others:
        path.write_bytes(b"partial")
    save_checkpoint(_minimal_state(), tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["last.pt"] + [p.name for p in others]
    )


def test_wrong_content_is_reported_with_missing_keys(tmp_path: Path) -> None:
    torch.save({"model": {}}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="not a detector checkpoint.*missing keys config"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save([1, 2], tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="not a detector checkpoint"):
        load_checkpoint(tmp_path / "b.pt")
    save_checkpoint(_minimal_state(), tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="missing keys train_model"):
        load_checkpoint(tmp_path / "best.pt", require_training_state=True)


def test_non_finite_tensors_names_the_bad_ones() -> None:
    state = {
        "a": torch.ones(2),
        "b": torch.tensor([1.0, float("nan")]),
        "c": torch.tensor([float("inf")]),
        "n": torch.tensor(3),
    }
    assert non_finite_tensors(state) == ["b", "c"]


def test_rng_state_round_trips_through_weights_only(tmp_path: Path) -> None:
    import random

    state = capture_rng_state()
    save_checkpoint({"rng": state}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_model_from_checkpoint_rebuilds_the_model(tmp_path: Path) -> None:
    from detector.model.build import build_model

    cfg = Config()
    cfg.model.image_size = 64
    cfg.model.pretrained = (
        "/nonexistent/resnet18.pth"  # must be ignored: the checkpoint has every weight
    )
    torch.manual_seed(0)
    cfg_build = Config()
    cfg_build.model.image_size = 64
    model = build_model(cfg_build.model, 3).eval()
    state = _minimal_state()
    state.update(model=model.state_dict(), config=config_to_dict(cfg), names=["x", "y", "z"])
    save_checkpoint(state, tmp_path / "best.pt")
    rebuilt, rebuilt_cfg = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt"))
    assert not rebuilt.training and rebuilt_cfg.model.image_size == 64
    images = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), model(images))
    state["names"] = ["x", "y"]  # head shaped for 3 classes
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(state)


def test_required_train_state_keys_are_train_state_fields() -> None:
    """`TRAIN_STATE_KEYS` (required in last.pt) are `TrainState` fields; the others have defaults,
    so a last.pt written before they existed still resumes."""
    from dataclasses import MISSING, fields

    from detector.checkpoint import TRAIN_STATE_KEYS
    from detector.training.engine import TrainState

    names = [item.name for item in fields(TrainState)]
    assert set(TRAIN_STATE_KEYS) <= set(names)
    optional = [item for item in fields(TrainState) if item.name not in TRAIN_STATE_KEYS]
    assert optional and all(item.default is not MISSING for item in optional)
