"""The checkpoint format, its one owner: the keys, what last.pt and best.pt store, loading and restoring.

    from detector.training.checkpoint import load_checkpoint, model_from_checkpoint
    ckpt = load_checkpoint("runs/train/exp/weights/best.pt")
    model, cfg = model_from_checkpoint(ckpt, device="cpu")   # eval mode, EMA weights

    # what the trainer writes and reads back (last.pt: everything an exact resume needs)
    save_checkpoint(last_checkpoint(parts, state, cfg, names, progress), run / "weights/last.pt")
    progress = restore_from_checkpoint(parts, state, load_checkpoint(path, require_training_state=True))

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
save; optional: older files lack it). `load_checkpoint` checks every key's type,
so a hand-edited or foreign `.pt` fails at load time naming the key, not later
with a KeyError or a shape mismatch deep inside the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.config import Config, config_from_dict, config_to_dict
from detector.training.atomic_write import remove_stale_temp_files, write_atomic
from detector.training.distributed import unwrap_model
from detector.training.ema import ModelEMA
from detector.training.rng import capture_rng_state
from detector.training.state import LATER_STATE_FIELDS, EpochProgress, TrainParts, TrainState


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
            return f"expected a state dict (name -> tensor), but {name!r} holds a {type(tensor).__name__}"
    return None


def _string_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return f"expected a list of strings, got {type(value).__name__}"
    return "expected at least one class name, got an empty list" if not value else None


def _three_numbers(value: Any) -> str | None:
    if not isinstance(value, list) or len(value) != 3 or not all(_is_number(item) for item in value):
        got = repr(value) if isinstance(value, list) else type(value).__name__
        return f"expected a list of 3 numbers, got {got}"
    return None


def _int_at_least(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        return None if is_int and value >= minimum else f"expected an integer >= {minimum}, got {value!r}"
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
    "scheduler": _mapping_with("base_lr", "end_lr", "warmup_steps", "total_steps", "start_step", "start_lr"),
    "scaler": _mapping_with(),
    "ema": _mapping_with(),
    "rng": _mapping_with("python", "numpy", "torch"),
    "finished": _boolean,
    "step": _int_at_least(0),
    "train_state": _mapping_with(*(item.name for item in fields(TrainState)
                                   if item.name not in LATER_STATE_FIELDS)),
}
# Optional (absent in checkpoints written before mid-epoch saves existed; nan_streak came later still).
OPTIONAL_TYPES: dict[str, Check] = {
    "epoch_progress": _mapping_with("batches_done", "sums", "finite_batches", "skipped_steps", "images_seen"),
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


def inference_checkpoint(parts: TrainParts, state: TrainState, cfg: Config, names: list[str]) -> dict[str, Any]:
    """best.pt: what inference needs (the `INFERENCE_TYPES` keys), with the EMA weights when EMA is on."""
    return {
        "model": parts.eval_model.state_dict(),
        "config": config_to_dict(cfg),
        "names": list(names),
        "image_size": cfg.model.image_size,
        "mean": list(cfg.model.mean),
        "std": list(cfg.model.std),
        "epoch": state.epoch,
        "best_ap": state.best_ap,
    }


def last_checkpoint(parts: TrainParts, state: TrainState, cfg: Config, names: list[str],
                    progress: EpochProgress | None = None) -> dict[str, Any]:
    """last.pt: `inference_checkpoint` plus everything an exact resume needs.

    `progress`: the current epoch's, for a checkpoint written inside an epoch
    (`epoch_progress` key; 0 batches at an epoch end).
    """
    ckpt = inference_checkpoint(parts, state, cfg, names)
    ckpt.update(
        train_model=unwrap_model(parts.model).state_dict(),
        optimizer=parts.optimizer.state_dict(),
        scheduler=parts.schedule.state_dict(),
        scaler=parts.scaler.state_dict(),
        ema=parts.ema.state_dict() if parts.ema is not None else {},
        rng=capture_rng_state(),
        finished=state.finished,
        step=state.step,
        train_state=asdict(state),
        epoch_progress=asdict(progress if progress is not None else EpochProgress()),
    )
    return ckpt


def restore_from_checkpoint(parts: TrainParts, state: TrainState, ckpt: dict[str, Any]) -> EpochProgress:
    """Load model, optimizer, schedule, scaler, EMA and counters from last.pt; return the epoch's progress.

    The progress is empty for an epoch-end checkpoint or an older file. The RNG
    states are restored separately (`rng.restore_rng_state`), as the very last
    thing before training continues, so nothing built after this draws from them.
    """
    unwrap_model(parts.model).load_state_dict(ckpt["train_model"])
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    parts.schedule.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"]:
        parts.scaler.load_state_dict(ckpt["scaler"])
    if parts.ema is not None:
        if ckpt["ema"]:
            parts.ema.load_state_dict(ckpt["ema"], weights=ckpt["model"])  # `model` holds the EMA weights
        else:  # EMA switched on at resume: start the average from the current weights
            parts.ema = ModelEMA(unwrap_model(parts.model), decay=parts.ema.decay)
    saved = ckpt["train_state"]
    for item in fields(TrainState):
        setattr(state, item.name, saved.get(item.name, item.default))  # an older file lacks the later ones
    progress = ckpt.get("epoch_progress") or {}
    known = {item.name for item in fields(EpochProgress)}
    return EpochProgress(**{key: value for key, value in progress.items() if key in known})


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write `state` to `path` atomically (`atomic_write.write_atomic`).

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

