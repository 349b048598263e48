"""The checkpoint format: its keys and their types, the weights-only loader, the atomic writer.

    from detector.checkpoint import load_checkpoint, save_checkpoint
    ckpt = load_checkpoint("runs/train/exp/weights/best.pt")
    save_checkpoint(ckpt, "copy.pt")                      # atomic: old file or new, never half
    write_atomic("model.onnx", lambda handle: handle.write(data))   # the same writer, any file

A leaf of the package (it imports nothing else of it), shared by training (which
fills last.pt and best.pt: `training.resume`), inference, export and the commands.
`model.build.model_from_checkpoint` turns a loaded checkpoint into a model.

Every checkpoint holds only tensors and plain containers so that
`torch.load(weights_only=True)` reads it: a file that would need to run code to
unpickle is refused. Keys (`INFERENCE_TYPES`, `TRAINING_TYPES`; docs/internals.md):

    model       state dict used for inference (the EMA weights when EMA is on)
    config      resolved config as a plain dict
    names       class names, list[str]
    image_size  network input side (int)
    mean, std   RGB normalisation (0..1 scale), list[float]
    epoch       number of completed epochs
    best_ap     best validation COCO AP so far (-1.0 before any validation)

best.pt is exactly these. last.pt adds `train_model` (the raw weights), `optimizer`,
`scheduler`, `scaler`, `ema`, `rng`, `finished`, `step`, `train_state` (the
`TrainState` counters) and `epoch_progress` (the `EpochProgress` of a mid-epoch
save; optional: files written without mid-epoch saves lack it). `load_checkpoint`
checks every key's type, so a hand-edited or foreign `.pt` fails at load time
naming the key, not later with a KeyError or a shape mismatch deep inside the model.

Atomic writes: the bytes go to a hidden temporary file beside the target
(`.NAME.<16 hex>.tmp`, same filesystem), are flushed and fsynced, `os.replace`
swaps it in and the folder entry is fsynced; the temp file is removed on any
error, and `remove_stale_temp_files` sweeps those a SIGKILL left behind.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not a detector checkpoint."""


# The type each key must have: a check returns None when the value is fine, else what is wrong.
Check = Callable[[Any], str | None]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _state_dict(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected a state dict (name -> tensor), got {type(value).__name__}"
    for name, tensor in value.items():
        if not isinstance(name, str) or not torch.is_tensor(tensor):
            return (
                f"expected a state dict (name -> tensor), but {name!r} holds a "
                f"{type(tensor).__name__}"
            )
    return None


def _string_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return f"expected a list of strings, got {type(value).__name__}"
    return "expected at least one class name, got an empty list" if not value else None


def _three_numbers(value: Any) -> str | None:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(_is_number(item) for item in value)
    ):
        got = repr(value) if isinstance(value, list) else type(value).__name__
        return f"expected a list of 3 numbers, got {got}"
    return None


def _int_at_least(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if is_int and value >= minimum:
            return None
        return f"expected an integer >= {minimum}, got {value!r}"

    return check


def _number(value: Any) -> str | None:
    return None if _is_number(value) else f"expected a number, got {type(value).__name__}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true/false, got {type(value).__name__}"


def _mapping_with(*keys: str) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected a mapping, got {type(value).__name__}"
        missing = [key for key in keys if key not in value]
        return f"mapping lacks {', '.join(missing)}" if missing else None

    return check


# The `train_state` counters every last.pt holds (`training.engine.TrainState`); fields the
# dataclass has beyond these are optional in a file and take their default when absent.
TRAIN_STATE_KEYS = (
    "planned_epochs",
    "epoch",
    "step",
    "best_ap",
    "best_epoch",
    "epochs_without_improvement",
    "elapsed_s",
    "finished",
)

INFERENCE_TYPES: dict[str, Check] = {
    "model": _state_dict,
    "config": _mapping_with(),
    "names": _string_list,
    "image_size": _int_at_least(1),
    "mean": _three_numbers,
    "std": _three_numbers,
    "epoch": _int_at_least(0),
    "best_ap": _number,
}
TRAINING_TYPES: dict[str, Check] = {
    "train_model": _state_dict,
    "optimizer": _mapping_with("state", "param_groups"),
    "scheduler": _mapping_with(
        "base_lr", "end_lr", "warmup_steps", "total_steps", "start_step", "start_lr"
    ),
    "scaler": _mapping_with(),
    "ema": _mapping_with(),
    "rng": _mapping_with("python", "numpy", "torch"),
    "finished": _boolean,
    "step": _int_at_least(0),
    "train_state": _mapping_with(*TRAIN_STATE_KEYS),
}
# Optional: last.pt files written without mid-epoch saves lack it.
OPTIONAL_TYPES: dict[str, Check] = {
    "epoch_progress": _mapping_with(
        "batches_done", "sums", "finite_batches", "skipped_steps", "images_seen"
    ),
}
INFERENCE_KEYS = tuple(INFERENCE_TYPES)
TRAINING_KEYS = tuple(TRAINING_TYPES)


def checkpoint_type_errors(ckpt: dict[str, Any], *, training: bool) -> list[str]:
    """`"key: what is wrong"` for every present key whose value has the wrong type, in key order.

    Args:
        ckpt: the loaded dict (missing keys are `load_checkpoint`'s business).
        training: also check the keys only last.pt has.
    """
    checks = {**INFERENCE_TYPES, **(TRAINING_TYPES if training else {}), **OPTIONAL_TYPES}
    errors = []
    for key, check in checks.items():
        problem = check(ckpt[key]) if key in ckpt else None
        if problem is not None:
            errors.append(f"{key}: {problem}")
    return errors


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write `state` to `path` atomically (`write_atomic`).

    A crash at any point leaves either the previous file or the new one, never a
    half-written one; temp files a SIGKILL left behind are removed by the next save
    into the same directory. The file gets the permissions the umask gives (0644
    under the usual 022), like any other file the run writes.

    Args:
        state: tensors and plain containers only (checked by the weights-only loader).
        path: destination file; its parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    write_atomic(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, *, require_training_state: bool = False) -> dict[str, Any]:
    """Read a checkpoint with `torch.load(weights_only=True)` onto the CPU.

    Args:
        path: a `.pt` file written by `save_checkpoint`.
        require_training_state: also require the keys resume needs (`last.pt`).

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: "not found"; "corrupt or unreadable (...)" (truncated,
            random bytes); "not a checkpoint of this package (or unsafe)" (a pickle
            that would run code); "not a detector checkpoint (missing keys ...)" or
            "(key names: expected a list of strings ...)" (right keys, wrong types).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError...)
        raise CheckpointError(f"{path}: {_load_failure(exc)}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path}: not a detector checkpoint (a {type(ckpt).__name__}, not a dict)"
        )
    required = INFERENCE_KEYS + (TRAINING_KEYS if require_training_state else ())
    missing = [key for key in required if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: not a detector checkpoint (missing keys {', '.join(missing)})"
        )
    errors = checkpoint_type_errors(ckpt, training=require_training_state)
    if errors:
        raise CheckpointError(f"{path}: not a detector checkpoint (key {errors[0]})")
    return ckpt


_UNSUPPORTED_GLOBAL = re.compile(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)")


def _load_failure(exc: Exception) -> str:
    """One line for a failed weights-only load, without torch's advice to load it unsafely."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        found = _UNSUPPORTED_GLOBAL.search(text)
        if found:  # the pickle names code to run (a class, a function): never something we write
            name = next(group for group in found.groups() if group)
            return f"not a checkpoint of this package (or unsafe): loading it would run {name}"
        # Otherwise the unpickler met bytes it cannot parse (torch's detail follows its advice).
        marker = "WeightsUnpickler error:"
        detail = text.split(marker, 1)[1] if marker in text else ""
        lines = (line.strip() for line in detail.splitlines() if line.strip())
        reason = next(lines, "not a pickle")
    else:
        reason = text.splitlines()[0] if text else type(exc).__name__
    return f"checkpoint is corrupt or unreadable ({reason})"


def non_finite_tensors(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or inf (checked before any save).

    Args:
        state_dict: name -> tensor (a module's `state_dict()`).

    Returns:
        The offending names, in order; empty when everything is finite.
    """
    return [
        name
        for name, tensor in state_dict.items()
        if torch.is_tensor(tensor)
        and tensor.is_floating_point()
        and not bool(torch.isfinite(tensor).all())
    ]


# `.last.pt.<hex>.tmp`: a checkpoint's hidden temporary file (`write_atomic` of a `.pt`).
_TEMP_NAME = re.compile(r"^\..+\.pt\.[0-9a-f]{16}\.tmp$")


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temp files a killed writer left (a SIGKILL cannot clean up after itself).

    Only names of our own pattern are touched; one process writes a run's weights/
    (rank 0), so no other writer's file in progress can match.
    """
    for candidate in directory.iterdir():
        if _TEMP_NAME.match(candidate.name):
            candidate.unlink(missing_ok=True)


def _open_temp_file(path: Path) -> tuple[int, Path]:
    """A new hidden file next to `path`, created with the umask's permissions.

    (tempfile.mkstemp would create it 0600, and the rename would keep that.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 64 random bits: practically never
            continue


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(handle)` on a temp file beside `path`, fsync, `os.replace` it, fsync the folder.

    The one atomic-write mechanism of the package (checkpoints, exported models):
    either the previous file or the new one survives a crash, never a half-written
    one; the temp file is removed on any error, KeyboardInterrupt included; the file
    gets the umask's permissions.

    Args:
        path: destination; its folder must exist.
        write: writes the whole content to the binary handle it is given.

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    fd, tmp_name = _open_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave the temp file.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)
    return path
