"""Model tests run on one thread.

The tensors here are tiny, so a second thread buys nothing, while on a shared
2-core machine OpenMP threads that spin-wait for a busy core made the same tests
several times slower. One thread also makes the overfit test bit-for-bit repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
