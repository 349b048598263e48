"""The grouped order under data.slice and the decoded-image cache: every sample once per
epoch, a pure function of (seed, rank, epoch), and about one decode per image per worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from detector.data.augment.transforms import build_train_transform
from detector.data.loading.dataset import DetectionDataset, collate_batch
from detector.data.loading.grouping import (
    DecodedImages,
    DistributedGroupedSampler,
    GroupedSampler,
    grouped_order,
    image_groups,
)
from detector.data.loading.sampling import SeededSampler
from detector.data.record import SampleRecord


def _groups(sizes: list[int]) -> list[list[int]]:
    """Consecutive index blocks of the given sizes (image k owns the k-th block)."""
    starts = np.cumsum([0, *sizes])
    return [list(range(starts[k], starts[k + 1])) for k in range(len(sizes))]


def _windows(order: list[int], groups: list[list[int]]) -> list[set[int]]:
    """Cut `order` into the shortest runs that each hold all samples of the images in it."""
    image_of = {index: image for image, group in enumerate(groups) for index in group}
    windows, position = [], 0
    while position < len(order):
        members: set[int] = set()
        needed, end = 0, position
        while True:
            image = image_of[order[end]]
            if image not in members:
                members.add(image)
                needed += len(groups[image])
            end += 1
            if end - position == needed:
                break
        windows.append(members)
        position = end
    return windows


@pytest.mark.parametrize("images_per_window", [1, 3, 8, 50])
def test_grouped_order_holds_every_sample_once_in_windows_of_whole_images(
    images_per_window: int,
) -> None:
    rng = np.random.default_rng(0)
    groups = _groups(rng.integers(1, 30, size=23).tolist())
    order = grouped_order(groups, images_per_window, torch.Generator().manual_seed(5))
    assert sorted(order) == list(range(sum(len(g) for g in groups)))
    windows = _windows(order, groups)
    assert all(len(window) <= images_per_window for window in windows)
    assert len(windows) >= -(-len(groups) // images_per_window)
    assert order == grouped_order(groups, images_per_window, torch.Generator().manual_seed(5))
    assert order != grouped_order(groups, images_per_window, torch.Generator().manual_seed(6))


def test_batches_mix_tiles_of_several_images() -> None:
    groups = _groups([22] * 48)  # configs/aerial.yaml: ~22 samples per image
    order = grouped_order(groups, 8, torch.Generator().manual_seed(0))
    image_of = {index: image for image, group in enumerate(groups) for index in group}
    distinct = [len({image_of[i] for i in order[k : k + 16]}) for k in range(0, len(order), 16)]
    assert min(distinct) >= 4 and np.mean(distinct) > 6


def test_bad_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="images_per_window must be at least 1, got 0"):
        GroupedSampler([[0]], images_per_window=0)
    with pytest.raises(ValueError, match="every image needs at least one sample"):
        GroupedSampler([[0], []], images_per_window=2)


def test_image_groups_follow_the_image_path() -> None:
    records = [
        SampleRecord("a.jpg", 8, 8, window=(0, 0, 8, 8)),
        SampleRecord("b.jpg", 8, 8, window=(0, 0, 8, 8)),
        SampleRecord("a.jpg", 8, 8, window=(8, 0, 16, 8)),
        SampleRecord("b.jpg", 16, 16),
    ]
    assert image_groups(records) == [[0, 2], [1, 3]]


def test_seeded_grouped_sampler_is_a_function_of_seed_rank_and_epoch_and_resumes() -> None:
    groups = _groups([5, 7, 3, 9, 4, 6])

    def epoch(seed: int, rank: int, number: int, start: int = 0) -> list[tuple]:
        sampler = SeededSampler(
            GroupedSampler(groups, images_per_window=2), seed, rank, batch_size=4
        )
        sampler.set_epoch(number, start=start)
        return list(sampler)

    first = epoch(0, 0, 1)
    assert sorted(index for index, _, _ in first) == list(range(34))
    assert first == epoch(0, 0, 1)
    assert [i for i, _, _ in first] != [i for i, _, _ in epoch(0, 0, 2)]
    assert [i for i, _, _ in first] != [i for i, _, _ in epoch(1, 0, 1)]
    assert [i for i, _, _ in first] != [i for i, _, _ in epoch(0, 1, 1)]
    assert epoch(0, 0, 1, start=12) == first[12:]  # mid-epoch resume: the same tail


def test_progressive_and_multi_scale_plans_reach_grouped_batches() -> None:
    groups = _groups([5, 7, 3, 9])
    sampler = SeededSampler(
        GroupedSampler(groups, images_per_window=2), 0, batch_size=4, image_size=256
    )
    sampler.set_epoch(0)
    sampler.set_image_size(192)  # train.progressive
    assert {plan.image_size for _, _, plan in sampler} == {192}
    scaled = SeededSampler(
        GroupedSampler(groups, images_per_window=2), 0, batch_size=4, multi_scale=(128, 256)
    )
    plain = SeededSampler(
        RandomSampler(range(24), generator=torch.Generator()), 0, batch_size=4,
        multi_scale=(128, 256),
    )  # fmt: skip
    for sampler_ in (scaled, plain):
        sampler_.set_epoch(3)
    sides = [plan.image_size for _, _, plan in scaled]
    assert sides == [plan.image_size for _, _, plan in plain]  # per batch, not per order
    assert all(len(set(sides[k : k + 4])) == 1 for k in range(0, 24, 4)) and len(set(sides)) > 1


@pytest.mark.parametrize(
    ("total", "world", "drop_last"), [(34, 2, False), (34, 3, False), (34, 3, True), (5, 4, False)]
)
def test_distributed_ranks_take_contiguous_slices_of_one_order(
    total: int, world: int, drop_last: bool
) -> None:
    groups = _groups([total // 4] * 3 + [total - 3 * (total // 4)])

    def shard(rank: int, epoch: int) -> DistributedGroupedSampler:
        sampler = DistributedGroupedSampler(
            groups, images_per_window=2, num_replicas=world, rank=rank, seed=7, drop_last=drop_last
        )
        sampler.set_epoch(epoch)
        return sampler

    reference = DistributedSampler(range(total), num_replicas=world, rank=0, drop_last=drop_last)
    shards = [list(shard(rank, 1)) for rank in range(world)]
    assert all(len(s) == len(reference) == len(shard(r, 1)) for r, s in enumerate(shards))
    order = grouped_order(groups, 2, torch.Generator().manual_seed(7 + 1))
    joined = [index for s in shards for index in s]
    if drop_last:
        assert joined == order[: len(joined)]
    else:  # padded with the order's own head, as DistributedSampler pads
        assert joined == (order * world)[: len(joined)] and set(joined) == set(range(total))
    assert shards[0] != list(shard(0, 2))
    seeded = SeededSampler(shard(1, 0), seed=7, rank=1)
    seeded.set_epoch(1)  # forwarded to the shard
    assert [index for index, _, _ in seeded] == shards[1]


def test_decoded_images_evicts_the_least_recently_used_within_both_bounds() -> None:
    cache = DecodedImages(2, max_bytes=300)
    images = {name: np.full((10, 10), k, np.uint8) for k, name in enumerate("abcd")}  # 100 B
    cache.put("a", images["a"])
    cache.put("b", images["b"])
    assert cache.get("a") is images["a"]  # a is now the most recently used
    cache.put("c", images["c"])
    assert cache.get("b") is None and cache.get("a") is images["a"] and len(cache) == 2
    cache = DecodedImages(5, max_bytes=300)
    for name in "abcd":
        cache.put(name, images[name])
    assert len(cache) == 3 and cache.get("a") is None  # 400 B > 300 B: a went
    cache.put("big", np.zeros(301, np.uint8))  # larger than the bound: never kept
    assert cache.get("big") is None and len(cache) == 3
    none = DecodedImages(0)
    none.put("a", images["a"])
    assert none.get("a") is None


class _CountingReader:
    """Returns a blank image of the path's size and appends the path to a log file
    (one line per decode, from any process)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, path: str) -> np.ndarray:
        with open(self.log, "a") as log:
            log.write(path + "\n")
        return np.zeros((64, 128, 3), np.uint8)


def _tile_records(images: int) -> list[SampleRecord]:
    """Per image: 8 tiles of 32 x 32 and the whole 128 x 64 image (9 samples)."""
    records = []
    for image in range(images):
        path = f"image{image:02d}.jpg"
        for y in (0, 32):
            for x in range(0, 128, 32):
                records.append(SampleRecord(path, 32, 32, window=(x, y, x + 32, y + 32)))
        records.append(SampleRecord(path, 128, 64))
    return records


@pytest.mark.parametrize(
    ("grouped", "cache", "workers"),
    [(True, True, 0), (True, True, 2), (False, True, 0), (True, False, 0), (False, True, 2)],
)
def test_an_epoch_decodes_each_image_about_once_per_worker(
    tmp_path: Path, grouped: bool, cache: bool, workers: int
) -> None:
    images, per_window, batch = 12, 3, 4
    records = _tile_records(images)
    log = tmp_path / "decodes.txt"
    dataset = DetectionDataset(
        records,
        build_train_transform([], 32, seed=0),
        read_image=_CountingReader(log),
        cache_images=per_window if cache else 0,
    )
    inner = (
        GroupedSampler(image_groups(records), images_per_window=per_window)
        if grouped
        else RandomSampler(records, generator=torch.Generator())
    )
    sampler = SeededSampler(inner, seed=0, batch_size=batch)
    loader = DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate_batch
    )
    for epoch in (0, 1):
        log.write_text("")
        sampler.set_epoch(epoch)
        assert sorted(index for index, _, _ in sampler) == list(range(len(records)))
        assert sum(len(b["metas"]) for b in loader) == len(records)  # every sample once
        decodes = log.read_text().split()
        bound = images * max(workers, 1)  # the DataLoader deals batch b to worker b % workers
        if grouped and cache:
            assert len(decodes) <= bound, (epoch, len(decodes))
            # The first epoch starts empty; later ones may find the last window's images.
            assert epoch > 0 or set(decodes) == {r.image_path for r in records}
        else:  # the check fails without the grouping or without the cache
            assert len(decodes) > 2 * bound, (epoch, len(decodes))


def test_whole_image_samples_never_share_the_cached_array(tmp_path: Path) -> None:
    records = _tile_records(1)
    dataset = DetectionDataset(
        records,
        build_train_transform([], 128, seed=0),
        read_image=_CountingReader(tmp_path / "log.txt"),
        cache_images=1,
    )
    _, tile = dataset._decode(0, [])
    _, whole = dataset._decode(8, [])
    cached = dataset.cache.get("image00.jpg")
    assert cached is not None and whole is not cached and not np.shares_memory(whole, cached)
    assert not np.shares_memory(tile, cached)
    whole[:] = 255
    assert cached.max() == 0
