"""Checkpoints: atomic writes, safe loads, and a model rebuilt from a checkpoint alone.

    from detector.training.checkpoint import load_checkpoint, model_from_checkpoint
    ckpt = load_checkpoint("runs/train/exp/weights/best.pt")
    model, cfg = model_from_checkpoint(ckpt, device="cpu")   # eval mode, EMA weights

Every checkpoint holds only tensors and plain containers so that
`torch.load(weights_only=True)` reads it: a file that would need to run code to
unpickle is refused. Keys (docs/internals.md):

    model       state dict used for inference (the EMA weights when EMA is on)
    config      resolved config as a plain dict
    names       class names, list[str]
    image_size  network input side (int)
    mean, std   RGB normalisation (0..1 scale), list[float]
    epoch       number of completed epochs
    best_ap     best validation COCO AP so far (-1.0 before any validation)

`last.pt` adds `train_model`, `optimizer`, `scheduler`, `scaler`, `ema`, `rng`,
`finished`, `step`, `train_state` and `epoch_progress` (see
detector/training/state.py), which resume needs. `load_checkpoint` checks
the types of these keys too (checkpoint_schema.py).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from detector.config import Config, config_from_dict
from detector.training.checkpoint_schema import checkpoint_type_errors

INFERENCE_KEYS = ("model", "config", "names", "image_size", "mean", "std", "epoch", "best_ap")
TRAINING_KEYS = (
    "train_model", "optimizer", "scheduler", "scaler", "ema", "rng", "finished", "step", "train_state",
)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not a detector checkpoint."""


# `.last.pt.<hex>.tmp`: the hidden temporary file `save_checkpoint` writes before the rename.
_TEMP_NAME = re.compile(r"^\..+\.pt\.[0-9a-f]{16}\.tmp$")


def _remove_stale_temp_files(directory: Path) -> None:
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
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
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


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write `state` to `path` atomically.

    The bytes go to a temporary file in the same directory (so the final rename
    stays on one filesystem), are flushed and fsynced, then `os.replace` swaps it
    in. A crash at any point leaves either the previous file or the new one,
    never a half-written one; the temporary file is removed on error (also on a
    KeyboardInterrupt), and temp files a SIGKILL left behind are removed by the
    next save into the same directory. The file gets the permissions the umask
    gives (0644 under the usual 022), like any other file the run writes.

    Args:
        state: tensors and plain containers only (checked by the weights-only loader).
        path: destination file; its parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path.parent)
    write_atomic(path, lambda handle: torch.save(state, handle))


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(handle)` on a temp file beside `path`, fsync, `os.replace` it in, fsync the folder.

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
        raise CheckpointError(f"{path}: not a detector checkpoint (a {type(ckpt).__name__}, not a dict)")
    required = INFERENCE_KEYS + (TRAINING_KEYS if require_training_state else ())
    missing = [key for key in required if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a detector checkpoint (missing keys {', '.join(missing)})")
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
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        reason = next((line.strip() for line in detail.splitlines() if line.strip()), "not a pickle")
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
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Build the model a checkpoint describes and load its inference weights.

    Needs nothing but the checkpoint: the backbone's `model.pretrained` path is
    ignored (the checkpoint already holds every weight), and the class count
    comes from the stored `names`.

    Args:
        ckpt: a dict from `load_checkpoint`.
        device: where to put the model.

    Returns:
        (model in eval mode on `device`, the resolved Config stored in the checkpoint).

    Raises:
        CheckpointError: the stored config is invalid or the weights do not fit the model.
    """
    # Imported here so that reading a checkpoint does not pull in the model code.
    from detector.model.build import build_model

    try:
        cfg = config_from_dict(ckpt["config"], source="checkpoint config")
    except ValueError as exc:
        raise CheckpointError(f"checkpoint holds an invalid config ({exc})") from exc
    names = list(ckpt["names"])
    build_cfg = config_from_dict(ckpt["config"], source="checkpoint config", overrides=["model.pretrained=null"])
    model = build_model(build_cfg.model, len(names))
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit the {cfg.model.backbone} model ({exc})") from exc
    return model.to(device).eval(), cfg

