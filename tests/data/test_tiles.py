"""Tiles: the grid rule (properties, hand cases), boxes cut to a tile, an epoch's tile samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.data.record import SampleRecord
from detector.data.tiles import (
    FULL_IMAGE_MIN_SIDE,
    cut_boxes,
    tile_grid,
    tile_record,
    training_samples,
)


def _reference_starts(length: int, size: int, overlap: float) -> list[int]:
    """Slow reference: step by the stride until a tile reaches the end, then clamp the last one."""
    stride = size - math.floor(overlap * size)
    starts, start = [], 0
    while True:
        if start + size >= length:
            starts.append(max(0, length - size))
            return starts
        starts.append(start)
        start += stride


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 3000),
    height=st.integers(1, 3000),
    size=st.integers(16, 700),
    overlap=st.floats(0, 0.9),
)
def test_grid_covers_the_image_exactly_with_as_few_tiles_as_the_stride_allows(
    width: int, height: int, size: int, overlap: float
) -> None:
    tiles = tile_grid(width, height, size, overlap)
    xs = sorted({t[0] for t in tiles})
    ys = sorted({t[1] for t in tiles})
    assert xs == _reference_starts(width, size, overlap) and ys == _reference_starts(
        height, size, overlap
    )
    assert len(tiles) == len(xs) * len(ys)
    stride = size - math.floor(overlap * size)
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height  # never past the edge
        assert (x2 - x1, y2 - y1) == (min(size, width), min(size, height))  # never padded or shrunk
    for starts, length in ((xs, width), (ys, height)):
        side = min(size, length)
        assert starts[0] == 0 and starts[-1] + side == length  # the last one ends at the edge
        gaps = np.diff(starts)
        assert np.all(gaps > 0) and np.all(
            gaps <= stride
        )  # no hole, overlap at least overlap * size
        if len(starts) > 1:
            # One tile fewer at this stride would not reach the edge.
            assert (len(starts) - 2) * stride + size < length
        covered = np.zeros(length, bool)  # the grid is the product of the two axes' tiles
        for start in starts:
            covered[start : start + side] = True
        assert covered.all()


def test_grid_hand_cases() -> None:
    # stride 512 - floor(102.4) = 410; along x: 0, 410, then 1000 - 512 = 488 (shifted inward)
    assert tile_grid(1000, 600, 512, 0.2) == [
        (0, 0, 512, 512),
        (410, 0, 922, 512),
        (488, 0, 1000, 512),
        (0, 88, 512, 600),
        (410, 88, 922, 600),
        (488, 88, 1000, 600),
    ]
    assert tile_grid(1024, 1024, 512, 0.0) == [
        (0, 0, 512, 512),
        (512, 0, 1024, 512),
        (0, 512, 512, 1024),
        (512, 512, 1024, 1024),
    ]
    assert tile_grid(300, 200, 512, 0.2) == [(0, 0, 300, 200)]  # smaller than a tile: one tile
    assert tile_grid(600, 200, 512, 0.2) == [(0, 0, 512, 200), (88, 0, 600, 200)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 32, 0.2), "length and tile size must be >= 1"),
        ((10, 10, 0, 0.2), "length and tile size must be >= 1"),
        ((10, 10, 32, 1.0), r"overlap must be in \[0, 1\)"),
        ((10, 10, 32, -0.1), "overlap"),
    ],
)
def test_grid_refuses_bad_arguments(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tile_grid(*args)


def test_cut_boxes_clips_shifts_and_marks_small_parts_ignore() -> None:
    boxes = np.array(
        [
            [110, 110, 130, 130],  # wholly inside
            [90, 120, 110, 140],  # half inside (x 100..110 of 90..110): ratio exactly 0.5
            [95, 150, 105, 170],  # 5/10 -> 0.5 too, but check below with a higher ratio
            [190, 100, 230, 140],  # 10 of 40 px wide inside: ratio 0.25
            [300, 300, 320, 320],  # outside: not part of the tile
            [200, 120, 220, 130],  # touches the right edge only: no area inside
            [150, 150, 160, 160],  # inside but already ignored (difficult)
        ],
        np.float32,
    )
    labels = np.arange(7)
    ignore = np.array([0, 0, 0, 0, 0, 0, 1], bool)
    out_boxes, out_labels, out_ignore = cut_boxes(
        boxes, labels, ignore, (100, 100, 200, 200), min_area_ratio=0.5, min_box_size=1.0
    )
    np.testing.assert_array_equal(out_labels, [0, 1, 2, 3, 6])
    np.testing.assert_allclose(
        out_boxes,
        [[10, 10, 30, 30], [0, 20, 10, 40], [0, 50, 5, 70], [90, 0, 100, 40], [50, 50, 60, 60]],
    )
    np.testing.assert_array_equal(out_ignore, [False, False, False, True, True])
    assert (
        out_boxes.dtype == np.float32 and out_labels.dtype == np.int64 and out_ignore.dtype == bool
    )
    # A stricter ratio turns the half boxes into ignore; min_box_size catches thin slivers.
    _, _, strict = cut_boxes(
        boxes, labels, ignore, (100, 100, 200, 200), min_area_ratio=0.6, min_box_size=1.0
    )
    np.testing.assert_array_equal(strict, [False, True, True, True, True])
    _, _, thin = cut_boxes(
        boxes, labels, ignore, (100, 100, 200, 200), min_area_ratio=0.0, min_box_size=8.0
    )
    np.testing.assert_array_equal(thin, [False, False, True, False, True])
    # min_area_ratio 1: only wholly inside boxes stay targets (the ratio is exact, no rounding).
    _, _, whole = cut_boxes(
        boxes, labels, ignore, (100, 100, 200, 200), min_area_ratio=1.0, min_box_size=1.0
    )
    np.testing.assert_array_equal(whole, [False, True, True, True, True])
    empty = cut_boxes(
        np.zeros((0, 4)),
        np.zeros(0, np.int64),
        np.zeros(0, bool),
        (0, 0, 10, 10),
        min_area_ratio=0.5,
        min_box_size=1.0,
    )
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,) and empty[2].shape == (0,)


def _record(
    image_id: int, width: int, height: int, boxes: list, ignore: list | None = None
) -> SampleRecord:
    return SampleRecord(
        f"/data/{image_id}.jpg",
        width,
        height,
        boxes,
        [0] * len(boxes),
        ignore if ignore is not None else [False] * len(boxes),
        image_id=image_id,
    )


def test_tile_record_is_the_tile_of_the_record() -> None:
    record = _record(3, 1000, 600, [[400, 10, 440, 40]])
    tile = tile_record(record, (410, 0, 922, 512), min_area_ratio=0.5, min_box_size=1.0)
    assert (tile.width, tile.height, tile.window, tile.image_id) == (
        512,
        512,
        (410, 0, 922, 512),
        3,
    )
    np.testing.assert_allclose(tile.boxes, [[0, 10, 30, 40]])  # 30 of 40 px inside: kept
    assert not tile.ignore.any() and record.window is None  # the record itself is unchanged


def test_training_samples_keep_object_tiles_a_share_of_empty_ones_and_whole_images() -> None:
    # 1024 x 1024 at 256 px, no overlap: 16 tiles; objects in two of them.
    records = [
        _record(0, 1024, 1024, [[10, 10, 30, 30], [600, 600, 620, 620]]),
        _record(1, 1024, 1024, []),
    ]  # an image without objects: 16 empty tiles
    kwargs = dict(
        size=256,
        overlap=0.0,
        min_area_ratio=0.5,
        full_images=True,
        network_size=256,
        min_box_size=1.0,
        seed=0,
    )
    samples, summary = training_samples(records, empty_rate=0.25, **kwargs)
    assert (summary.images, summary.tiles, summary.tiles_with_objects) == (2, 32, 2)
    assert summary.empty_kept == round(0.25 * 30) == 8 and summary.full_images == 2
    assert len(samples) == summary.samples == 2 + 8 + 2
    tiles = [s for s in samples if s.window is not None]
    assert [s.window for s in tiles if len(s.boxes)][:2] == [(0, 0, 256, 256), (512, 512, 768, 768)]
    assert sum(1 for s in tiles if not len(s.boxes)) == 8
    assert [s.window for s in samples[-2:]] == [None, None]  # the whole images come last
    assert "32 tiles: 2 with objects, 8 of 30 empty kept + 2 whole images = 12 samples" in str(
        summary
    )
    # The empty tiles kept are a function of the seed.
    again, _ = training_samples(records, empty_rate=0.25, **kwargs)
    assert [(s.image_id, s.window) for s in again] == [(s.image_id, s.window) for s in samples]
    other, _ = training_samples(records, empty_rate=0.25, **{**kwargs, "seed": 1})
    assert [(s.image_id, s.window) for s in other] != [(s.image_id, s.window) for s in samples]
    none, summary = training_samples(records, empty_rate=0.0, **{**kwargs, "full_images": False})
    assert len(none) == 2 and summary.empty_kept == 0


def test_whole_images_come_as_many_times_as_asked() -> None:
    records = [
        _record(0, 1024, 1024, [[10, 10, 30, 30], [600, 600, 900, 900]]),
        _record(1, 512, 512, [[100, 100, 140, 140]]),
    ]
    kwargs = dict(size=256, overlap=0.0, min_area_ratio=0.5, empty_rate=0.0, network_size=256)
    kwargs |= dict(min_box_size=1.0, seed=0)
    tiles_only, _ = training_samples(records, full_images=0, **kwargs)
    once, _ = training_samples(records, full_images=True, **kwargs)
    three, summary = training_samples(records, full_images=3, **kwargs)
    assert len(once) == len(tiles_only) + 2
    assert summary.full_images == 6 and len(three) == summary.samples == len(tiles_only) + 6
    whole = [s for s in three if s.window is None]
    assert [s.image_id for s in whole] == [0, 1, 0, 1, 0, 1]
    # Each copy is the whole image with the same small-object rule as a single one.
    single = {s.image_id: s for s in once if s.window is None}
    for copy in whole:
        np.testing.assert_array_equal(copy.boxes, single[copy.image_id].boxes)
        np.testing.assert_array_equal(copy.ignore, single[copy.image_id].ignore)
    assert "+ 6 whole images" in str(summary)
    with pytest.raises(ValueError, match="full_images must be >= 0"):
        training_samples(records, full_images=-1, **kwargs)


def test_a_tile_with_only_ignored_boxes_counts_as_empty() -> None:
    records = [_record(0, 512, 256, [[250, 10, 290, 50]])]  # 6 of 40 px in the left tile
    samples, summary = training_samples(
        records,
        size=256,
        overlap=0.0,
        min_area_ratio=0.5,
        empty_rate=1.0,
        full_images=False,
        network_size=256,
        min_box_size=1.0,
        seed=0,
    )
    assert summary.tiles_with_objects == 1 and summary.empty_kept == 1
    left = samples[0]
    assert left.window == (0, 0, 256, 256) and left.ignore.tolist() == [
        True
    ]  # kept as ignore, not dropped


def test_whole_images_ignore_objects_the_letterbox_shrinks_below_the_limit() -> None:
    # 2048 px image at a 512 network: scale 1/4; a 40 px object is 10 px, a 24 px one 6 px.
    record = _record(0, 2048, 1024, [[0, 0, 40, 40], [100, 100, 124, 110], [500, 500, 900, 900]])
    samples, _ = training_samples(
        [record],
        size=512,
        overlap=0.0,
        min_area_ratio=0.5,
        empty_rate=0.0,
        full_images=True,
        network_size=512,
        min_box_size=1.0,
        seed=0,
    )
    whole = samples[-1]
    assert whole.window is None and 24 / 4 < FULL_IMAGE_MIN_SIDE < 40 / 4
    assert whole.ignore.tolist() == [False, True, False]


def test_nothing_to_train_on_is_an_error() -> None:
    with pytest.raises(ValueError, match="all 4 tiles hold no object, data.slice.empty_rate is 0"):
        training_samples(
            [_record(0, 512, 512, [])],
            size=256,
            overlap=0.0,
            min_area_ratio=0.5,
            empty_rate=0.0,
            full_images=False,
            network_size=256,
            min_box_size=1.0,
            seed=0,
        )
