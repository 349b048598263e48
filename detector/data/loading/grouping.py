"""Decoding each image about once an epoch under data.slice: a grouped order and an image LRU.

    from detector.data.loading.grouping import GroupedSampler, image_groups
    groups = image_groups(dataset.records)   # [[sample indices of image 0], [of image 1], ...]
    sampler = SeededSampler(GroupedSampler(groups, images_per_window=8), seed=0, batch_size=16)
    sampler.set_epoch(3)   # re-seeds the grouped sampler's generator from (seed, rank, epoch)
    dataset = DetectionDataset(tile_records, transform, cache_images=8)

A tile sample decodes its whole image and cuts the tile out, so in a fully shuffled
epoch a 25-tile image is decoded 25 times. The grouped order of an epoch
(`grouped_order`): a seeded permutation of the images, cut into windows of
`images_per_window` consecutive images, and within each window a seeded shuffle of
all the samples of those images (their tiles, kept empty tiles and whole image).
Every sample comes once per epoch, batches still mix tiles of up to
`images_per_window` images, and all the samples of an image fall inside one window.
A dataset copy (one per DataLoader worker) keeps the last `images_per_window` decoded
images (`DecodedImages`): the DataLoader hands batch b to worker b % workers, so each
worker meets the images of a window within a few consecutive batches of its own and
decodes each of them once; an epoch decodes each image about once per worker
instead of once per sample.

Under DDP (`DistributedGroupedSampler`) every rank draws the same grouped order from
(seed, epoch) and rank r takes the r-th contiguous slice of it: whole windows, but
for the windows cut at the slice's two ends (their images are decoded on both
ranks). A DistributedSampler would deal samples out one by one (rank r takes every
world_size-th), which keeps the windows but gives every rank every image of each.
Padding and drop_last follow DistributedSampler's rules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from detector.data.record import SampleRecord

# A dataset copy caches at most this many bytes of decoded images (and at most
# images_per_window images): 8 images of 2048 x 2048 RGB are 100 MB; an image larger
# than the whole bound is not cached.
CACHE_MAX_BYTES = 512 * 2**20


def image_groups(records: Sequence[SampleRecord]) -> list[list[int]]:
    """The indices of `records` grouped by image file, in the order images first appear.

    Args:
        records: dataset records; a tile record keeps the `image_path` of its image.

    Returns:
        one list of record indices per image (its tiles and its whole-image record).
    """
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record.image_path, []).append(index)
    return list(groups.values())


def _check_groups(groups: Sequence[Sequence[int]], images_per_window: int) -> None:
    if images_per_window < 1:
        raise ValueError(f"images_per_window must be at least 1, got {images_per_window}")
    if not groups or any(len(group) == 0 for group in groups):
        raise ValueError("grouped order: every image needs at least one sample")


def grouped_order(
    groups: Sequence[Sequence[int]], images_per_window: int, generator: torch.Generator
) -> list[int]:
    """One epoch's sample order: images permuted, cut into windows, each window shuffled.

    Args:
        groups: the sample indices of each image (`image_groups`).
        images_per_window: images whose samples are shuffled together.
        generator: the only source of randomness (the order is a function of its seed).

    Returns:
        every index of every group exactly once; the samples of the images at
        positions [k * images_per_window, (k + 1) * images_per_window) of the image
        permutation form the k-th contiguous run, in shuffled order.
    """
    _check_groups(groups, images_per_window)
    images = torch.randperm(len(groups), generator=generator).tolist()
    order: list[int] = []
    for start in range(0, len(images), images_per_window):
        window = [
            index for image in images[start : start + images_per_window] for index in groups[image]
        ]
        order += [window[j] for j in torch.randperm(len(window), generator=generator).tolist()]
    return order


class GroupedSampler(Sampler[int]):
    """The grouped order of one process, drawn from `generator` every epoch.

    Args:
        groups: sample indices per image (`image_groups`).
        images_per_window: images whose samples are shuffled together.
        generator: re-seeded by `SeededSampler` at every epoch from (seed, rank, epoch),
            as it re-seeds a RandomSampler's.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        *,
        images_per_window: int,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_groups(groups, images_per_window)
        self.groups = [list(group) for group in groups]
        self.images_per_window = images_per_window
        self.generator = generator if generator is not None else torch.Generator()

    def __len__(self) -> int:
        return sum(len(group) for group in self.groups)

    def __iter__(self) -> Iterator[int]:
        return iter(grouped_order(self.groups, self.images_per_window, self.generator))


class DistributedGroupedSampler(Sampler[int]):
    """Rank `rank`'s contiguous slice of the grouped order all ranks draw from (seed, epoch).

    Args:
        groups, images_per_window: as `GroupedSampler`.
        num_replicas, rank: the process group's size and this process's rank.
        seed: train.seed (the same on every rank).
        drop_last: drop the tail that does not divide among the ranks; otherwise the
            order is padded with its own head, as DistributedSampler does.

    Call `set_epoch(epoch)` before each epoch (`SeededSampler.set_epoch` forwards it).
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        *,
        images_per_window: int,
        num_replicas: int,
        rank: int,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        _check_groups(groups, images_per_window)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.groups = [list(group) for group in groups]
        self.images_per_window = images_per_window
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        total = sum(len(group) for group in self.groups)
        self.num_samples = total // num_replicas if drop_last else -(-total // num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order `__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = grouped_order(self.groups, self.images_per_window, generator)
        needed = self.num_samples * self.num_replicas
        while len(order) < needed:  # pad with the head (several times over for tiny sets)
            order += order[: needed - len(order)]
        start = self.rank * self.num_samples
        return iter(order[start : start + self.num_samples])


class DecodedImages:
    """A least-recently-used store of decoded images by path.

    Args:
        max_images: images kept at most (0 keeps none).
        max_bytes: bytes kept at most; an image larger than this is never kept.
    """

    def __init__(self, max_images: int, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._images)

    def get(self, path: str) -> np.ndarray | None:
        """The image stored for `path` (now the most recently used), or None."""
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
        return image

    def put(self, path: str, image: np.ndarray) -> None:
        """Store `image` for `path`, evicting the least recently used beyond the bounds."""
        if self.max_images < 1 or image.nbytes > self.max_bytes:
            return
        old = self._images.pop(path, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._images[path] = image
        self._bytes += image.nbytes
        while len(self._images) > self.max_images or self._bytes > self.max_bytes:
            _, evicted = self._images.popitem(last=False)
            self._bytes -= evicted.nbytes
