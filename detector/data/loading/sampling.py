"""Per-sample augmentation seeds, so training batches do not depend on the worker count.

    from torch.utils.data import RandomSampler
    from detector.data.loading.sampling import SeededSampler
    sampler = SeededSampler(RandomSampler(dataset, generator=torch.Generator()), seed=0)
    sampler.set_epoch(3)
    list(sampler)   # [(index, sample_seed), ...]; dataset[(index, sample_seed)] is reproducible
    sampler.set_epoch(3, start=64)   # the same epoch without its first 64 samples (mid-epoch resume)

The sampler runs in the main process and hands every index out together with a seed
that is a pure function of (seed, rank, epoch, position in the epoch). The dataset
re-seeds its transform with it before augmenting, so a sample's augmentation is the
same whichever worker (or the main process) loads it, and a resumed run replays the
exact batches of an uninterrupted one without saving any generator state. A run
resumed from a mid-epoch checkpoint skips the samples the epoch already consumed
(`start`): the rest of the epoch is the same samples with the same seeds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Sampler

_SEED_BITS = 2**64


class SeededSampler(Sampler[tuple[int, int]]):
    """Wrap an index sampler; yield (index, sample_seed) pairs.

    Args:
        sampler: yields dataset indices: a DistributedSampler (its `set_epoch` is
            forwarded), a RandomSampler (its `generator` is re-seeded from
            (seed, rank, epoch) at the start of every epoch, so the order is a pure
            function of them too) or a SequentialSampler.
        seed: `train.seed`.
        rank: the process's rank; ranks get different sample seeds.

    Call `set_epoch(epoch)` before each epoch (the trainer does).
    """

    def __init__(self, sampler: Sampler[int], seed: int, rank: int = 0) -> None:
        if not isinstance(sampler, Sized):
            raise TypeError(f"SeededSampler: the wrapped sampler {type(sampler).__name__} has no len()")
        self.sampler = sampler
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch whose order and sample seeds `__iter__` produces.

        Args:
            epoch: 0-based epoch index.
            start: skip this many samples of the epoch (those a mid-epoch checkpoint
                already trained on; a multiple of the batch size keeps batches aligned).
        """
        if not 0 <= start <= len(self.sampler):
            raise ValueError(f"SeededSampler: start {start} outside 0..{len(self.sampler)}")
        self.epoch = epoch
        self.start = start
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # Two independent children of one epoch seed: shuffling and per-sample seeds.
        epoch_seed = np.random.SeedSequence(self.seed % _SEED_BITS, spawn_key=(self.rank, self.epoch))
        order_seed, sample_seeds = epoch_seed.spawn(2)
        generator = getattr(self.sampler, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(int(order_seed.generate_state(1, np.uint64)[0]))
        # Word k of generate_state depends only on the seed sequence and k (position-indexed).
        seeds = sample_seeds.generate_state(len(self.sampler), np.uint64).tolist()
        # The whole epoch's order is drawn, then the consumed head dropped: same tail.
        return itertools.islice(zip(iter(self.sampler), seeds, strict=True), self.start, None)
