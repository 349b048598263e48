"""Mixup: hand-computed blend, boxes concatenated with their labels, draws from the sample seed."""

from __future__ import annotations

import numpy as np
import pytest

from detector.data.augment.mixup import blend_samples
from detector.data.augment.multi_image import MIXUP_STREAM, augment_sample, single_sample
from detector.data.augment.transforms import TransformedSample, build_train_transform
from detector.data.letterbox import compute_letterbox


def _sample(value: int, boxes: list[list[float]], labels: list[int]) -> TransformedSample:
    return TransformedSample(
        image=np.full((8, 8, 3), value, np.uint8),
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        labels=np.array(labels, np.int64),
        ignore=np.array(labels) == 2,
        letterbox=compute_letterbox(8, 8, 8),
    )


def test_blend_hand_computed() -> None:
    first = _sample(100, [[0, 0, 4, 4]], [2])
    second = _sample(200, [[1, 1, 3, 3], [4, 4, 8, 8]], [0, 1])
    mixed = blend_samples(first, second, weight=0.25)
    assert (mixed.image == 175).all()  # 0.25 * 100 + 0.75 * 200
    np.testing.assert_array_equal(mixed.boxes, [[0, 0, 4, 4], [1, 1, 3, 3], [4, 4, 8, 8]])
    assert mixed.labels.tolist() == [2, 0, 1] and mixed.ignore.tolist() == [True, False, False]
    empty = blend_samples(_sample(10, [], []), _sample(30, [], []), weight=0.5)
    assert empty.boxes.shape == (0, 4) and (empty.image == 20).all()


def test_blend_refuses_other_sizes_and_bad_weights() -> None:
    other = TransformedSample(
        np.zeros((16, 16, 3), np.uint8),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        np.zeros(0, bool),
        compute_letterbox(16, 16, 16),
    )
    with pytest.raises(ValueError, match="different shapes"):
        blend_samples(_sample(0, [], []), other, 0.5)
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\], got 1.5"):
        blend_samples(_sample(0, [], []), _sample(0, [], []), 1.5)


def _records(count: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    records = []
    for index in range(count):
        image = rng.integers(0, 256, (50 + 5 * index, 70, 3), dtype=np.uint8)
        boxes = np.array([[5, 5, 30, 30], [35, 10, 65, 45]], np.float32)
        labels = np.array([2 * index, 2 * index + 1])
        records.append((image, boxes, labels, labels % 3 == 0))
    return records


def test_mixup_sample_is_the_blend_of_two_seeded_samples() -> None:
    records = _records(5)
    transform = build_train_transform(
        [{"name": "hflip"}, {"name": "mixup", "p": 1.0, "alpha": 8.0}], 64
    )
    load = records.__getitem__
    got = augment_sample(
        transform, records[1], load, num_records=5, sample_seed=21, mosaic=True, image_size=64
    )
    rng = np.random.default_rng([21, MIXUP_STREAM])
    rng.random()
    partner, partner_seed = int(rng.integers(0, 5)), int(rng.integers(0, 2**63))
    weight = float(rng.beta(8.0, 8.0))
    first = single_sample(
        transform, records[1], load, num_records=5, sample_seed=21, mosaic=True, image_size=64
    )
    second = single_sample(
        transform,
        records[partner],
        load,
        num_records=5,
        sample_seed=partner_seed,
        mosaic=True,
        image_size=64,
    )
    expected = blend_samples(first, second, weight)
    np.testing.assert_array_equal(got.image, expected.image)
    np.testing.assert_array_equal(got.boxes, expected.boxes)
    assert got.labels.tolist() == [2, 3] + [2 * partner, 2 * partner + 1]
    np.testing.assert_array_equal(got.ignore, got.labels % 3 == 0)


@pytest.mark.parametrize("seed", range(5))
def test_mixup_with_mosaic_keeps_boxes_inside_and_above_min_size(seed: int) -> None:
    records = _records(6)
    augment = [
        {"name": "mosaic", "p": 1.0},
        {"name": "mixup", "p": 1.0, "alpha": 2.0},
        {"name": "scale_jitter", "min_scale": 0.5, "max_scale": 1.5},
        {"name": "box_filter", "min_visibility": 0.3, "min_size": 3.0},
    ]
    sample = augment_sample(
        build_train_transform(augment, 64),
        records[0],
        records.__getitem__,
        num_records=6,
        sample_seed=seed,
        mosaic=True,
        image_size=96,
    )
    assert sample.image.shape == (96, 96, 3)
    assert len(sample.boxes) == len(sample.labels) == len(sample.ignore)
    assert (sample.boxes >= 0).all() and (sample.boxes <= 96).all()
    assert ((sample.boxes[:, 2:] - sample.boxes[:, :2]) >= 3.0 - 1e-4).all()
    np.testing.assert_array_equal(sample.ignore, sample.labels % 3 == 0)


def test_mixup_p0_is_the_plain_sample_and_draws_are_seeded() -> None:
    records = _records(4)
    load = records.__getitem__
    off = build_train_transform([{"name": "mixup", "p": 0.0}], 64)
    plain = build_train_transform([], 64)
    got = augment_sample(
        off, records[2], load, num_records=4, sample_seed=3, mosaic=True, image_size=64
    )
    np.testing.assert_array_equal(got.image, plain(*records[2]).image)
    on = build_train_transform([{"name": "mixup", "p": 1.0}], 64)
    first = augment_sample(
        on, records[2], load, num_records=4, sample_seed=3, mosaic=True, image_size=64
    )
    augment_sample(on, records[0], load, num_records=4, sample_seed=4, mosaic=True, image_size=64)
    again = augment_sample(
        on, records[2], load, num_records=4, sample_seed=3, mosaic=True, image_size=64
    )
    np.testing.assert_array_equal(first.image, again.image)


@pytest.mark.parametrize(
    "entry,message",
    [
        ([{"name": "mixup", "alpha": 0}], r"augment\[0\]\.alpha: must be in \[0.01, 1000\]"),
        ([{"name": "mixup", "p": -0.1}], r"augment\[0\]\.p: probability must be in \[0, 1\]"),
        ([{"name": "mixup"}, {"name": "mixup"}], r"augment\[1\]: mixup is given twice"),
        ([{"name": "mixup", "beta": 1}], r"augment\[0\]\.beta: unknown parameter for mixup"),
    ],
)
def test_bad_mixup_entries_name_the_key(entry: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_train_transform(entry, 64)
