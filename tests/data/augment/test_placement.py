"""RandomPlace equals albumentations' Pad + Crop at the same offsets, pixels and boxes exactly."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from detector.data.augment.placement import RandomPlace

SIZE, FILL = 64, 114


def _bbox_params() -> A.BboxParams:
    # The training pipeline's policy: clip to the canvas, drop boxes mostly outside it.
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["box_index"],
        min_visibility=0.3,
        min_width=2,
        min_height=2,
        clip=True,
        filter_invalid_bboxes=True,
    )


def _reference(image: np.ndarray, boxes: np.ndarray, top: int, left: int) -> dict:
    """Pad to reach the canvas where the image starts inside it,
    then crop where it starts before it."""
    height, width = image.shape[:2]
    pad_top, pad_left = max(top, 0), max(left, 0)
    pad_bottom = max(SIZE - pad_top - height, 0)
    pad_right = max(SIZE - pad_left - width, 0)
    crop_y, crop_x = max(-top, 0), max(-left, 0)
    compose = A.Compose(
        [
            A.Pad(padding=(pad_left, pad_top, pad_right, pad_bottom), fill=FILL),
            A.Crop(x_min=crop_x, y_min=crop_y, x_max=crop_x + SIZE, y_max=crop_y + SIZE),
        ],
        bbox_params=_bbox_params(),
    )
    return compose(image=image, bboxes=boxes, box_index=np.arange(len(boxes)))


@pytest.mark.parametrize("height, width", [(40, 50), (90, 100), (40, 90), (64, 64), (100, 30)])
def test_random_place_equals_pad_then_crop(height: int, width: int) -> None:
    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    x1, y1 = rng.uniform(0, width - 4, 12), rng.uniform(0, height - 4, 12)
    boxes = np.stack([x1, y1, x1 + rng.uniform(2, width, 12), y1 + rng.uniform(2, height, 12)], 1)
    boxes = np.minimum(boxes, [width, height, width, height]).astype(np.float32)
    place = A.Compose(
        [RandomPlace(SIZE, fill=FILL)], bbox_params=_bbox_params(), save_applied_params=True
    )
    offsets = set()
    for seed in range(40):
        place.set_random_seed(seed)
        out = place(image=image, bboxes=boxes, box_index=np.arange(len(boxes)))
        params = out["applied_transforms"][0][1]
        top, left = params["top"], params["left"]
        # Offsets stay in range: the image covers the canvas or lies inside it, per axis.
        assert min(0, SIZE - height) <= top <= max(0, SIZE - height)
        assert min(0, SIZE - width) <= left <= max(0, SIZE - width)
        offsets.add((top, left))
        want = _reference(image, boxes, top, left)
        assert out["image"].shape == (SIZE, SIZE, 3) and out["image"].flags.c_contiguous
        np.testing.assert_array_equal(out["image"], want["image"])
        np.testing.assert_array_equal(out["box_index"], want["box_index"])
        np.testing.assert_allclose(out["bboxes"], want["bboxes"], rtol=0, atol=1e-4)
    assert (
        len(offsets) == 1 if (height, width) == (SIZE, SIZE) else len(offsets) > 5
    )  # random, not fixed


def test_random_place_hand_computed() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    place = RandomPlace(4, fill=FILL)
    placed = place.apply(image, top=1, left=-1)
    expected = np.full((4, 4, 3), FILL, np.uint8)
    expected[1:3, 0:2] = image[:, 1:3]
    np.testing.assert_array_equal(placed, expected)
    # Normalised boxes: x scales by width 3 -> canvas 4 and shifts by -1 px, y by +1 px.
    boxes = np.array([[0.0, 0.0, 1.0, 0.5, 7.0]])
    shifted = place.apply_to_bboxes(boxes, top=1, left=-1, height=2, width=3)
    np.testing.assert_allclose(shifted, [[-0.25, 0.25, 0.5, 0.5, 7.0]])
