"""Checkpoints: atomic writes, safe loads, and a model rebuilt from a checkpoint alone.

    from detector.engine.checkpoint import load_checkpoint, model_from_checkpoint
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
`finished`, `step` and `train_state` (see detector/engine/train_state.py),
which resume needs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.config import Config, config_from_dict

INFERENCE_KEYS = ("model", "config", "names", "image_size", "mean", "std", "epoch", "best_ap")
TRAINING_KEYS = (
    "train_model", "optimizer", "scheduler", "scaler", "ema", "rng", "finished", "step", "train_state",
)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not a detector checkpoint."""


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
    never a half-written one; the temporary file is removed on error.

    Args:
        state: tensors and plain containers only (checked by the weights-only loader).
        path: destination file; its parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
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


def load_checkpoint(path: str | Path, *, require_training_state: bool = False) -> dict[str, Any]:
    """Read a checkpoint with `torch.load(weights_only=True)` onto the CPU.

    Args:
        path: a `.pt` file written by `save_checkpoint`.
        require_training_state: also require the keys resume needs (`last.pt`).

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: "not found", "corrupt or unreadable (...)" (truncated,
            random bytes, or a pickle that would run code), or "not a detector
            checkpoint (missing keys ...)".
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: checkpoint is corrupt or unreadable ({reason})") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a detector checkpoint (a {type(ckpt).__name__}, not a dict)")
    required = INFERENCE_KEYS + (TRAINING_KEYS if require_training_state else ())
    missing = [key for key in required if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a detector checkpoint (missing keys {', '.join(missing)})")
    return ckpt


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

