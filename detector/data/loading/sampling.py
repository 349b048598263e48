"""Per-sample augmentation seeds and plans, so training batches do not depend on the worker count.

    from torch.utils.data import RandomSampler
    from detector.data.loading.sampling import SeededSampler
    sampler = SeededSampler(RandomSampler(dataset, generator=torch.Generator()), seed=0,
                            batch_size=16, image_size=448, multi_scale=(320, 576))
    sampler.set_epoch(3)
    sampler.set_mosaic(False)   # train.close_mosaic: this epoch without mosaic
    list(sampler)   # [(index, sample_seed, SamplePlan(mosaic, image_size)), ...]
    sampler.set_epoch(3, start=64)   # mid-epoch resume: the same epoch without its first 64 samples

The sampler runs in the main process and hands every index out together with a seed
that is a pure function of (seed, rank, epoch, position in the epoch). The dataset
re-seeds its transform with it before augmenting, so a sample's augmentation is the
same whichever worker (or the main process) loads it, and a resumed run replays the
exact batches of an uninterrupted one without saving any generator state. A run
resumed from a mid-epoch checkpoint skips the samples the epoch already consumed
(`start`): the rest of the epoch is the same samples with the same seeds.

The plan travels with every index because the dataset lives in the DataLoader's
workers, which are persistent: a flag set on the main process's dataset would
never reach them, while the sampler's output is sent to them with each index.
`SamplePlan.mosaic` is the epoch's mosaic switch (`set_mosaic`, set by the trainer
from `train.close_mosaic`: detector/training/augment_schedule.py).
`SamplePlan.image_size` is the batch's input side: `image_size` without
multi-scale (the trainer changes it per epoch under `train.progressive`:
`set_image_size`); with `multi_scale=(low, high)`, one multiple of 32 in [low, high]
per batch of `batch_size` consecutive samples, drawn from (seed, epoch, batch
position) only (not the rank: every rank of a DDP run trains batch k at the same
side), so resumed runs and any worker count see the same sizes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

_SEED_BITS = 2**64
SIZE_STEP = 32  # multi-scale sides are multiples of the largest stride
_SIZE_STREAM = 0x53495A45  # "SIZE": tags the per-batch size stream


class SamplePlan(NamedTuple):
    """What the main process decides for one sample:
    mosaic on/off and the input side (None: default)."""

    mosaic: bool
    image_size: int | None


def multi_scale_sizes(low: int, high: int) -> list[int]:
    """The input sides multi-scale draws from: multiples of 32 in [low, high]."""
    sizes = list(range(-(-low // SIZE_STEP) * SIZE_STEP, high + 1, SIZE_STEP))
    if not sizes:
        raise ValueError(f"train.multi_scale: no multiple of {SIZE_STEP} in [{low}, {high}]")
    return sizes


class SeededSampler(Sampler[tuple[int, int, SamplePlan]]):
    """Wrap an index sampler; yield (index, sample_seed, plan) triples.

    Args:
        sampler: yields dataset indices: a DistributedSampler (its `set_epoch` is
            forwarded), a RandomSampler (its `generator` is re-seeded from
            (seed, rank, epoch) at the start of every epoch, so the order is a pure
            function of them too) or a SequentialSampler.
        seed: `train.seed`.
        rank: the process's rank; ranks get different sample seeds.
        batch_size: samples per batch (the DataLoader's): one input side per batch.
        image_size: the side without multi-scale (None: the dataset's default).
        multi_scale: (low, high) or None; see the module docstring.

    Call `set_epoch(epoch)` before each epoch (the trainer does).
    """

    def __init__(
        self,
        sampler: Sampler[int],
        seed: int,
        rank: int = 0,
        *,
        batch_size: int = 1,
        image_size: int | None = None,
        multi_scale: tuple[int, int] | list[int] | None = None,
    ) -> None:
        if not isinstance(sampler, Sized):
            raise TypeError(
                f"SeededSampler: the wrapped sampler {type(sampler).__name__} has no len()"
            )
        if batch_size < 1:
            raise ValueError(f"SeededSampler: batch_size must be at least 1, got {batch_size}")
        self.sampler = sampler
        self.seed = seed
        self.rank = rank
        self.batch_size = batch_size
        self.image_size = image_size
        self.sizes = multi_scale_sizes(*multi_scale) if multi_scale is not None else None
        self.mosaic = True
        self.epoch = 0
        self.start = 0

    def set_mosaic(self, enabled: bool) -> None:
        """Turn mosaic on or off for the samples this sampler yields from now on
        (train.close_mosaic)."""
        self.mosaic = bool(enabled)

    def set_image_size(self, side: int | None) -> None:
        """The input side of the batches yielded from now on (train.progressive); ignored
        under multi-scale, which draws a side per batch."""
        self.image_size = side

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

    def batch_sizes(self) -> list[int | None]:
        """The input side of each batch of the current epoch, from its first batch (not `start`)."""
        num_batches = -(-len(self.sampler) // self.batch_size)
        if self.sizes is None:
            return [self.image_size] * num_batches
        stream = np.random.SeedSequence([self.seed % _SEED_BITS, self.epoch, _SIZE_STREAM])
        words = stream.generate_state(max(num_batches, 1), np.uint64)[:num_batches]
        return [self.sizes[int(word % len(self.sizes))] for word in words]

    def __iter__(self) -> Iterator[tuple[int, int, SamplePlan]]:
        # Two independent children of one epoch seed: shuffling and per-sample seeds.
        epoch_seed = np.random.SeedSequence(
            self.seed % _SEED_BITS, spawn_key=(self.rank, self.epoch)
        )
        order_seed, sample_seeds = epoch_seed.spawn(2)
        generator = getattr(self.sampler, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(int(order_seed.generate_state(1, np.uint64)[0]))
        # Word k of generate_state depends only on the seed sequence and k (position-indexed).
        seeds = sample_seeds.generate_state(len(self.sampler), np.uint64).tolist()
        sizes = self.batch_sizes()
        plans = [SamplePlan(self.mosaic, size) for size in sizes]
        triples = (
            (index, sample_seed, plans[position // self.batch_size])
            for position, (index, sample_seed) in enumerate(
                zip(iter(self.sampler), seeds, strict=True)
            )
        )
        # The whole epoch's order is drawn, then the consumed head dropped: same tail.
        return itertools.islice(triples, self.start, None)
