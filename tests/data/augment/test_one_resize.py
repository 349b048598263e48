"""One resize (letterbox.resize_image) for training, evaluation and `Detector` (issue 18 item 6).

A training sample without augmentation, a mosaic tile, the evaluation loader and
`Detector`'s preprocessing must hold the same pixels for the same image, so a
model is tested on what it was trained on.
"""

from __future__ import annotations

import numpy as np
import pytest

from detector.data.augment.mosaic import place_mosaic
from detector.data.augment.transforms import build_eval_transform, build_train_transform
from detector.data.letterbox import PAD_VALUE, compute_letterbox, letterbox_image
from detector.inference.preprocess import preprocess_batch

# (height, width, S): shrink by 1.12 (VOC into 448: plain bilinear), by 4.3 (a 1080p
# frame: antialiased), by 1.5 (the threshold), by 2 (antialiased), an enlargement and
# a size that needs no resize.
SIZES = [
    (375, 500, 448),
    (1080, 1920, 448),
    (96, 60, 64),
    (128, 90, 64),
    (37, 53, 160),
    (64, 40, 64),
]


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus fine noise: every filter difference shows in it."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], axis=2
    )
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def _inside(lb) -> tuple[slice, slice]:
    return (
        slice(lb.pad_top, lb.pad_top + lb.new_height),
        slice(lb.pad_left, lb.pad_left + lb.new_width),
    )


@pytest.mark.parametrize("height, width, size", SIZES)
def test_train_sample_without_augmentation_has_the_detector_pixels(
    height: int, width: int, size: int
) -> None:
    image = _texture(height, width)
    boxes = np.array([[0.0, 0.0, width / 2, height / 2]], np.float32)
    train = build_train_transform([], size, seed=0)(image, boxes, np.array([0]), np.array([False]))
    evaluation = build_eval_transform(size)(image, boxes, np.array([0]), np.array([False]))
    batch, (lb,) = preprocess_batch([image], size, "cpu", color="rgb")  # what Detector runs
    detector_pixels = batch[0].permute(1, 2, 0).numpy()
    assert train.letterbox == evaluation.letterbox == lb
    # Bit-equal: one function, one kernel, on the CPU.
    np.testing.assert_array_equal(train.image, evaluation.image)
    np.testing.assert_array_equal(train.image.astype(np.float32), detector_pixels)
    np.testing.assert_allclose(train.boxes, evaluation.boxes, atol=1e-4)


@pytest.mark.parametrize("height, width, size", SIZES[:5])
def test_mosaic_tiles_have_the_letterbox_pixels(height: int, width: int, size: int) -> None:
    # Four copies around the window's centre: tile 3 starts at the window's
    # middle, so its visible part is the top-left of the resized image.
    image = _texture(height, width, seed=1)
    none = np.zeros((0, 4), np.float32)
    tiles = place_mosaic(
        [image] * 4,
        [none] * 4,
        (size, size),
        size,
        fill=PAD_VALUE,
        min_visibility=0.3,
        min_size=2.0,
    )
    canvas, lb = letterbox_image(image, size)
    resized = canvas[_inside(lb)]
    half = size // 2
    visible = tiles.image[half:, half:]
    rows, cols = min(half, lb.new_height), min(half, lb.new_width)
    np.testing.assert_array_equal(visible[:rows, :cols], resized[:rows, :cols])


def test_shrinking_in_training_is_antialiased() -> None:
    # One-pixel stripes, 1080p into 448: a low-passed resize gives a flat grey, plain
    # bilinear sampling (what training used) gives stripes and moire of full contrast.
    stripes = np.zeros((1080, 1920, 3), np.uint8)
    stripes[:, ::2] = 255
    sample = build_train_transform([], 448, seed=0)(
        stripes, np.zeros((0, 4)), np.zeros(0), np.zeros(0)
    )
    lb = compute_letterbox(1080, 1920, 448)
    content = sample.image[_inside(lb)].astype(np.float64)
    assert abs(content.mean() - 127.5) < 2 and content.std() < 8


@pytest.mark.parametrize(
    "augment", [[], [{"name": "scale_jitter", "min_scale": 0.5, "max_scale": 1.5}]]
)
def test_boxes_land_on_their_objects(augment: list) -> None:
    # A bright rectangle on black: after the resize its box holds bright pixels and
    # the ring two pixels outside it holds dark ones (the filter blurs one pixel).
    image = np.zeros((1080, 1440, 3), np.uint8)
    image[300:700, 500:1100] = 255
    box = np.array([[500.0, 300.0, 1100.0, 700.0]], np.float32)
    transform = build_train_transform(augment, 256, seed=0)
    for seed in range(4):
        transform.set_seed(seed)
        sample = transform(image, box, np.array([0]), np.array([False]))
        x0, y0, x1, y1 = sample.boxes[0]
        inner = sample.image[int(np.ceil(y0)) + 1 : int(y1) - 1, int(np.ceil(x0)) + 1 : int(x1) - 1]
        assert inner.min() >= 250
        for row in (int(y0) - 2, int(np.ceil(y1)) + 1):
            if 0 <= row < 256:
                assert sample.image[row, max(int(x0), 0) : min(int(x1), 256)].max() <= PAD_VALUE
        for col in (int(x0) - 2, int(np.ceil(x1)) + 1):
            if 0 <= col < 256:
                assert sample.image[max(int(y0), 0) : min(int(y1), 256), col].max() <= PAD_VALUE
