"""SeededSampler.set_epoch(epoch, start): the epoch without its consumed head,
same order and seeds."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler, RandomSampler

from detector.data.loading.sampling import SeededSampler


@pytest.mark.parametrize("start", [0, 1, 6, 19, 20])
def test_start_skips_the_head_of_the_same_epoch(start: int) -> None:
    sampler = SeededSampler(RandomSampler(range(20), generator=torch.Generator()), seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=start)
    assert len(sampler) == 20 - start and list(sampler) == full[start:]
    sampler.set_epoch(3)  # the next epoch starts from its beginning again
    assert len(sampler) == 20 and list(sampler) != full


def test_start_with_a_distributed_shard() -> None:
    shard = DistributedSampler(range(21), num_replicas=2, rank=1, shuffle=True, seed=3)
    sampler = SeededSampler(shard, seed=3, rank=1)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, start=4)
    assert list(sampler) == full[4:] and len(sampler) == len(full) - 4


def test_start_outside_the_epoch_is_refused() -> None:
    sampler = SeededSampler(RandomSampler(range(5), generator=torch.Generator()), seed=0)
    with pytest.raises(ValueError, match="start 6 outside 0..5"):
        sampler.set_epoch(0, start=6)
