"""The types a checkpoint's keys must have: a file with the right keys but wrong values is refused.

    from detector.training.checkpoint_schema import checkpoint_type_errors
    checkpoint_type_errors(ckpt, training=True)   # [] or ["names: expected a list of strings, got int", ...]

`load_checkpoint` turns the first error into a `CheckpointError` naming the file
and the key, so a hand-edited or foreign `.pt` fails at load time with the reason,
not later with a KeyError or a shape mismatch deep inside the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Check = Callable[[Any], str | None]  # None: fine; otherwise what is wrong


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    return type(value).__name__


def _state_dict(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected a state dict (name -> tensor), got {_describe(value)}"
    for name, tensor in value.items():
        if not isinstance(name, str) or not torch.is_tensor(tensor):
            return f"expected a state dict (name -> tensor), but {name!r} holds a {_describe(tensor)}"
    return None


def _string_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return f"expected a list of strings, got {_describe(value)}"
    if not value:
        return "expected at least one class name, got an empty list"
    return None


def _three_numbers(value: Any) -> str | None:
    if not isinstance(value, list) or len(value) != 3 or not all(_is_number(item) for item in value):
        return f"expected a list of 3 numbers, got {value!r}" if isinstance(value, list) else \
            f"expected a list of 3 numbers, got {_describe(value)}"
    return None


def _int_at_least(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        if not _is_int(value) or value < minimum:
            return f"expected an integer >= {minimum}, got {value!r}"
        return None
    return check


def _number(value: Any) -> str | None:
    return None if _is_number(value) else f"expected a number, got {_describe(value)}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true/false, got {_describe(value)}"


def _mapping_with(*keys: str) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected a mapping, got {_describe(value)}"
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
    "train_state": _mapping_with("planned_epochs", "epoch", "step", "best_ap", "best_epoch",
                                 "epochs_without_improvement", "elapsed_s", "finished"),
}

# Optional (absent in checkpoints written before mid-epoch saves existed).
OPTIONAL_TYPES: dict[str, Check] = {
    "epoch_progress": _mapping_with("batches_done", "sums", "finite_batches", "skipped_steps", "images_seen"),
}


def checkpoint_type_errors(ckpt: dict[str, Any], *, training: bool) -> list[str]:
    """`"key: what is wrong"` for every present key whose value has the wrong type.

    Args:
        ckpt: the loaded dict (missing keys are `load_checkpoint`'s business).
        training: also check the keys only last.pt has.

    Returns:
        The problems, in key order; empty when every checked key is well-typed.
    """
    checks = {**INFERENCE_TYPES, **(TRAINING_TYPES if training else {}), **OPTIONAL_TYPES}
    errors = []
    for key, check in checks.items():
        if key in ckpt:
            problem = check(ckpt[key])
            if problem is not None:
                errors.append(f"{key}: {problem}")
    return errors
