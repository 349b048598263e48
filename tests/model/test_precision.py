"""model/precision.py: the one autocast helper (training, validation, evaluate, Detector)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from detector.config import TrainConfig
from detector.model.precision import amp_dtype_for, autocast, half_dtype

CUDA = torch.device("cuda")  # a device object needs no GPU: only the mapping is tested
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("half", "expected"),
    [
        (False, None),
        (None, None),
        ("fp32", None),
        (True, torch.float16),
        ("fp16", torch.float16),
        ("bf16", torch.bfloat16),
    ],
)
def test_half_dtype_on_cuda(half: object, expected: torch.dtype | None) -> None:
    assert half_dtype(half, CUDA) is expected


@pytest.mark.parametrize("half", [False, True, "fp16", "bf16"])
def test_half_dtype_is_full_precision_off_cuda(half: object) -> None:
    assert half_dtype(half, CPU) is None


def test_bad_half_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"half must be False, True, 'fp16' or 'bf16', got 'int8'"):
        half_dtype("int8", CUDA)


def test_amp_dtype_for_honours_train_amp_dtype() -> None:
    assert amp_dtype_for(TrainConfig(amp=True, amp_dtype="bf16"), CUDA) is torch.bfloat16
    assert amp_dtype_for(TrainConfig(amp=True, amp_dtype="fp16"), CUDA) is torch.float16
    assert amp_dtype_for(TrainConfig(amp=False, amp_dtype="fp16"), CUDA) is None
    assert amp_dtype_for(TrainConfig(amp=True, amp_dtype="bf16"), CPU) is None


def test_autocast_runs_at_the_dtype_or_not_at_all() -> None:
    assert isinstance(autocast(CPU, None), contextlib.nullcontext)
    weights = torch.ones(4, 4)
    with autocast(CPU, None):
        assert (weights @ weights).dtype == torch.float32
    with autocast(CPU, torch.bfloat16):  # CPU autocast exists for bf16: the dtype is really applied
        assert (weights @ weights).dtype == torch.bfloat16
