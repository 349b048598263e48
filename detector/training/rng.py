"""Seeding and the random-number state that an exact resume must carry.

    from detector.training.rng import seed_everything, capture_rng_state, restore_rng_state
    seed_everything(0, deterministic=True)
    state = capture_rng_state()        # tensors and plain lists: weights_only-safe
    restore_rng_state(state)

Python's `random` state and NumPy's legacy global state are converted to
lists/tensors because `torch.load(weights_only=True)` refuses arbitrary objects.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels.

    Args:
        seed: the run's seed (`train.seed`).
        deterministic: use only deterministic algorithms (slower on GPU; an op
            without a deterministic implementation raises instead of silently varying).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy, torch CPU and every CUDA device.

    Returns:
        {"python": [version, list[int], gauss_next], "numpy": {...}, "torch": uint8 Tensor,
         "cuda": list of uint8 Tensors (empty without CUDA)}.
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    return {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),  # uint32 values fit in int64
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the states from `capture_rng_state` (CUDA ones only where devices match)."""
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    # A run resumed on a machine with a different GPU count cannot restore these exactly.
    if torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
