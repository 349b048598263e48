"""Autocast precision: the one place that turns a config or a `half` argument into an autocast.

    dtype = amp_dtype_for(cfg.train, device)          # train.amp + train.amp_dtype, CUDA only
    dtype = half_dtype("bf16", device)                # Detector(half=...), CUDA only
    half = trained_half(cfg.train)                    # what a checkpoint predicts at by default
    with autocast(device, dtype):                     # nothing when dtype is None
        raw = model(images)

The one precision rule (docs/internals.md): a checkpoint predicts at the precision
it was trained with, `trained_half(train)`, unless the caller asks for another
(`Detector(half=...)`, `detect --half/--bf16/--fp32`). Validation, `detector
evaluate` and `Detector.from_checkpoint` / `detect` all resolve it through
`half_dtype`, so the AP training reports is the AP the API reproduces.
"""

from __future__ import annotations

import contextlib

import torch

from detector.config import TrainConfig

HALF_CHOICES = (False, True, "fp16", "bf16")  # what Detector(half=...) accepts (None, "fp32": full)


def half_dtype(half: bool | str | None, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for `half` (False/None/"fp32", True/"fp16", "bf16") on `device`;
    None means fp32.

    Raises:
        ValueError: `half` is none of those.
    """
    if half in (False, None, "fp32"):
        return None
    if half not in HALF_CHOICES:
        raise ValueError(f"half must be False, True, 'fp16' or 'bf16', got {half!r}")
    if device.type != "cuda":  # CPU autocast is slower than fp32 for these convolutions
        return None
    return torch.bfloat16 if half == "bf16" else torch.float16


def trained_half(train_cfg: TrainConfig) -> str | bool:
    """The `half` a checkpoint trained with `train_cfg` predicts at: `train.amp_dtype` or fp32."""
    return train_cfg.amp_dtype if train_cfg.amp else False


def amp_dtype_for(train_cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16/fp16 autocast on CUDA when `train.amp` (as `train.amp_dtype` says); None elsewhere."""
    return half_dtype(trained_half(train_cfg), device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """`torch.autocast` at `dtype` on `device`, or a no-op context when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
