"""Mosaic: hand-computed tiles and boxes for a fixed centre;
label alignment, box policy, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from detector.data.augment.mosaic import mosaic_centre, place_mosaic
from detector.data.augment.multi_image import augment_sample
from detector.data.augment.transforms import build_train_transform


def _solid(height: int, width: int, value: int) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def test_four_images_fixed_centre_hand_computed() -> None:
    """S = 64, window [32, 96) of the 128 px canvas, centre (60, 70).

    image 0: 32x64 (scale 1) at canvas x -4..60, y 38..70 -> output x -36..28, y 6..38
    image 1: 128x64 (scale 0.5 -> 64 high, 32 wide) at x 60..92, y 6..70
             -> output x 28..60, y -26..38
    image 2: 64x64 (scale 1) at x -4..60, y 70..134 -> output x -36..28, y 38..102
    image 3: 16x32 (scale 2 -> 32 high, 64 wide) at x 60..124, y 70..102
             -> output x 28..92, y 38..70
    """
    images = [_solid(32, 64, 10), _solid(128, 64, 20), _solid(64, 64, 30), _solid(16, 32, 40)]
    boxes = [
        np.array(
            [
                [10, 5, 30, 25],  # output x -26..-6: outside, dropped
                [50, 10, 64, 30],  # -> [14, 16, 28, 36]
                [30, 0, 40, 32],
            ]
        ),  # x -6..4 clipped to 0..4: 40% visible, kept [0, 6, 4, 38]
        np.array(
            [
                [0, 60, 20, 100],  # x 0.5X + 28, y 0.5Y - 26 -> [28, 4, 38, 24]
                [40, 0, 64, 40],  # y -26..-6: outside
                [10, 40, 64, 56],
            ]
        ),  # y -6..2 -> 0..2: 25% visible < 30%, dropped
        np.array(
            [
                [40, 0, 64, 20],  # x X - 36, y Y + 38 -> [4, 38, 28, 58]
                [0, 20, 64, 64],
            ]
        ),  # clipped to 28 x 6 of 64 x 44: 6% visible, dropped
        np.array(
            [
                [0, 0, 8, 8],  # x 2X + 28, y 2Y + 38 -> [28, 38, 44, 54]
                [10, 4, 20, 16],
            ]
        ),  # x 48..68, y 46..70 -> [48, 46, 64, 64]: 60% visible, kept
    ]
    tiles = place_mosaic(images, boxes, (60, 70), 64, fill=114, min_visibility=0.3, min_size=2.0)
    np.testing.assert_allclose(
        tiles.boxes,
        [
            [14, 16, 28, 36],
            [0, 6, 4, 38],
            [28, 4, 38, 24],
            [4, 38, 28, 58],
            [28, 38, 44, 54],
            [48, 46, 64, 64],
        ],
        atol=1e-5,
    )
    assert tiles.source.tolist() == [0, 0, 1, 2, 3, 3]
    assert tiles.box_index.tolist() == [1, 2, 0, 0, 0, 1]
    image = tiles.image[..., 0]
    assert image.shape == (64, 64)
    assert (image[6:38, 0:28] == 10).all() and (image[0:6, 0:28] == 114).all()
    assert (image[0:38, 28:60] == 20).all() and (image[0:38, 60:64] == 114).all()
    assert (image[38:64, 0:28] == 30).all() and (image[38:64, 28:64] == 40).all()


def test_min_size_policy_drops_thin_slivers() -> None:
    images = [_solid(64, 64, v) for v in (1, 2, 3, 4)]
    # Image 3 at output x, y = X + 32, Y + 32 (centre 64, 64):
    # the box at X 31..33 is 1 px wide after the clip.
    boxes = [np.zeros((0, 4))] * 3 + [np.array([[0, 0, 10, 10], [31, 0, 33, 10]])]
    tiles = place_mosaic(images, boxes, (64, 64), 64, fill=114, min_visibility=0.0, min_size=2.0)
    np.testing.assert_allclose(tiles.boxes, [[32, 32, 42, 42]])
    tiles = place_mosaic(images, boxes, (64, 64), 64, fill=114, min_visibility=0.0, min_size=1.0)
    np.testing.assert_allclose(tiles.boxes, [[32, 32, 42, 42], [63, 32, 64, 42]])


def test_centre_is_drawn_in_range() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([mosaic_centre(rng, 64, 0.25) for _ in range(500)])
    assert centres.min() == 48 and centres.max() == 80
    assert mosaic_centre(np.random.default_rng(1), 64, 0.0) == (64, 64)


def test_place_mosaic_needs_four_images() -> None:
    with pytest.raises(ValueError, match="needs 4 images"):
        place_mosaic(
            [_solid(8, 8, 0)] * 3,
            [np.zeros((0, 4))] * 3,
            (8, 8),
            8,
            fill=0,
            min_visibility=0,
            min_size=0,
        )


def _coloured_records(count: int, seed: int) -> list[tuple]:
    """Records whose boxes are filled with a grey level that encodes their label
    (50 + 10 * label)."""
    rng = np.random.default_rng(seed)
    records, label = [], 0
    for _ in range(count):
        height, width = rng.integers(40, 120, 2)
        image = np.zeros((height, width, 3), np.uint8)
        boxes, labels = [], []
        for row in range(2):  # two non-overlapping boxes per image
            x0, y0 = (
                rng.integers(0, width // 2 - 8),
                row * (height // 2) + rng.integers(0, height // 4),
            )
            x1, y1 = x0 + rng.integers(8, width // 2), y0 + rng.integers(8, height // 4)
            image[y0:y1, x0:x1] = 50 + 10 * label
            boxes.append([x0, y0, x1, y1])
            labels.append(label)
            label += 1
        records.append(
            (image, np.array(boxes, np.float32), np.array(labels), np.array(labels) % 3 == 0)
        )
    return records


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_through_the_pipeline_keeps_labels_on_their_pixels(seed: int) -> None:
    records = _coloured_records(5, seed)
    augment = [
        {"name": "mosaic", "p": 1.0},
        {"name": "scale_jitter", "min_scale": 0.8, "max_scale": 1.2},
        {"name": "hflip"},
        {"name": "box_filter", "min_visibility": 0.3, "min_size": 4.0},
    ]
    transform = build_train_transform(augment, 96)
    sample = augment_sample(
        transform,
        records[0],
        lambda i: records[i],
        num_records=5,
        sample_seed=seed,
        mosaic=True,
        image_size=96,
    )
    assert sample.image.shape == (96, 96, 3)
    assert len(sample.boxes) == len(sample.labels) == len(sample.ignore) > 0
    assert (sample.boxes >= 0).all() and (sample.boxes <= 96).all()
    assert ((sample.boxes[:, 2:] - sample.boxes[:, :2]) >= 4.0 - 1e-4).all()
    np.testing.assert_array_equal(sample.ignore, sample.labels % 3 == 0)
    for box, label in zip(sample.boxes, sample.labels, strict=True):
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert abs(int(sample.image[cy, cx, 0]) - (50 + 10 * int(label))) <= 2


def test_mosaic_is_a_function_of_the_seed_and_off_when_planned_off() -> None:
    records = _coloured_records(6, 0)
    transform = build_train_transform([{"name": "mosaic", "p": 1.0}], 64)

    def sample(seed: int, mosaic: bool = True):
        return augment_sample(
            transform,
            records[1],
            lambda i: records[i],
            num_records=6,
            sample_seed=seed,
            mosaic=mosaic,
            image_size=64,
        )

    first = sample(11)
    sample(12)  # nothing carries over between samples
    again = sample(11)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert not np.array_equal(sample(13).image, first.image)
    plain = build_train_transform([], 64)(*records[1])
    off = sample(11, mosaic=False)
    np.testing.assert_array_equal(off.image, plain.image)
    np.testing.assert_array_equal(off.labels, records[1][2])


def test_mosaic_entry_is_validated() -> None:
    with pytest.raises(ValueError, match=r"augment\[0\]\.centre_range: must be in \[0, 0.5\]"):
        build_train_transform([{"name": "mosaic", "centre_range": 0.7}], 64)
    with pytest.raises(ValueError, match=r"augment\[1\]: mosaic is given twice"):
        build_train_transform([{"name": "mosaic"}, {"name": "mosaic", "p": 0.2}], 64)
