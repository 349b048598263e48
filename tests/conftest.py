"""Shared pytest fixtures and settings.

Tests run on CPU with few threads so the suite behaves the same on a 2-core CI
machine; CUDA-only tests carry the `cuda` marker and skip where there is no GPU.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: tiny tensors gain nothing from more, and on a loaded 2-core
# machine oversubscription (threads x DataLoader workers) slows tests many-fold.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)
