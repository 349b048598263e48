"""affine and vflip: hand-computed boxes, the ellipse rule for rotated boxes,
the size policy, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.data.augment.transforms import build_train_transform


def _image(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _affine(**params: float) -> dict:
    return {
        "name": "affine",
        "p": 1.0,
        "degrees": 0.0,
        "shear": 0.0,
        "translate": 0.0,
        "scale": 0.0,
        **params,
    }


def test_vflip_hand_computed() -> None:
    image = _image(100)
    sample = build_train_transform([{"name": "vflip", "p": 1.0}], 100, seed=0)(
        image, np.array([[10, 20, 50, 60]], np.float32), np.array([2]), np.array([False])
    )
    np.testing.assert_allclose(sample.boxes, [[10, 40, 50, 80]], atol=1e-4)
    np.testing.assert_array_equal(sample.image, image[::-1])
    assert sample.labels.tolist() == [2]


def test_vflip_p0_is_identity() -> None:
    image = _image(64)
    sample = build_train_transform([{"name": "vflip", "p": 0.0}], 64, seed=0)(
        image, np.array([[1, 2, 30, 40]], np.float32), np.array([0]), np.array([False])
    )
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_allclose(sample.boxes, [[1, 2, 30, 40]], atol=1e-4)


def test_rotated_box_uses_the_inscribed_ellipse() -> None:
    """A 20 px box at the centre of a 64 px image rotated by exactly 45 degrees.

    Corners' box: half-side 10 * (cos 45 + sin 45) = 14.14 px; the inscribed circle's
    box is unchanged (half-side 10). The ellipse rule keeps the circle's.
    """
    transform = build_train_transform(
        [_affine(degrees=45.0), {"name": "box_filter", "min_size": 0}], 64, seed=0
    )
    for seed in range(5):  # rotation drawn in [-45, 45]; its box never exceeds the corners'
        transform.set_seed(seed)
        sample = transform(
            _image(64), np.array([[22, 22, 42, 42]], np.float32), np.array([1]), np.array([False])
        )
        assert sample.boxes.shape == (1, 4) and sample.labels.tolist() == [1]
        # A circle of radius 10 about (32, 32): its box is the same whatever the angle.
        np.testing.assert_allclose(sample.boxes, [[22, 22, 42, 42]], atol=0.05)


def test_rotated_rectangle_box_is_the_rotated_ellipse_box() -> None:
    """Ellipse semi-axes a=20, b=5 at angle t:
    box half-sizes sqrt(a²cos²t + b²sin²t), sqrt(a²sin²t + b²cos²t)."""
    transform = build_train_transform(
        [_affine(degrees=30.0), {"name": "box_filter", "min_size": 0}], 128, seed=3
    )
    sample = transform(
        _image(128), np.array([[44, 59, 84, 69]], np.float32), np.array([0]), np.array([False])
    )
    width, height = sample.boxes[0, 2] - sample.boxes[0, 0], sample.boxes[0, 3] - sample.boxes[0, 1]
    # The drawn angle t is not exposed: recover it from the width, then check the height agrees.
    cos2 = ((width / 2) ** 2 - 5**2) / (20**2 - 5**2)
    assert 0.0 <= cos2 <= 1.0
    expected_height = 2 * math.sqrt(20**2 * (1 - cos2) + 5**2 * cos2)
    assert height == pytest.approx(expected_height, abs=0.1)
    np.testing.assert_allclose((sample.boxes[0, :2] + sample.boxes[0, 2:]) / 2, [64, 64], atol=0.05)


def test_translate_and_scale_hand_computed() -> None:
    """scale 0.5 -> factor in [0.5, 1.5] about the centre;
    translate moves the box by the same vector as pixels."""
    transform = build_train_transform(
        [_affine(scale=0.5, translate=0.2), {"name": "box_filter", "min_size": 0}], 100, seed=1
    )
    image = np.full((100, 100, 3), 0, np.uint8)
    image[40:60, 40:60] = 255  # a white square exactly on the box
    sample = transform(
        image, np.array([[40, 40, 60, 60]], np.float32), np.array([0]), np.array([False])
    )
    x0, y0, x1, y1 = sample.boxes[0]
    assert x1 - x0 == pytest.approx(y1 - y0, abs=1e-3)  # one factor for both axes
    factor = (x1 - x0) / 20
    assert 0.5 <= factor <= 1.5
    # The white pixels are where the box says (to within interpolation at the edges).
    white = np.argwhere(sample.image[..., 0] > 128)
    np.testing.assert_allclose(white.min(0), [y0, x0], atol=1.01)
    np.testing.assert_allclose(white.max(0) + 1, [y1, x1], atol=1.01)


def _label_colour(label: int) -> np.ndarray:
    """A colour per label, 14 levels apart in R and G,
    so interpolation cannot turn one into another."""
    return np.array([30 + 14 * label, 240 - 14 * label, 200], np.uint8)


@pytest.mark.parametrize("seed", range(8))
def test_affine_keeps_each_label_on_its_own_box(seed: int) -> None:
    """Distinct classes at distinct places: each square is painted its label's colour, and after
    the transform the pixels at the centre of every output box have that box's label's colour.

    (Checking only that the ignore flags follow the labels would pass if boxes and labels
    were paired wrongly.) Labels are a random permutation, so their order is not the boxes'.
    """
    rng = np.random.default_rng(seed)
    image = np.zeros((128, 128, 3), np.uint8)
    labels = rng.permutation(16)
    boxes = []
    for index, label in enumerate(labels):  # a 4 x 4 grid of 22 px squares, 10 px apart
        x, y = 6 + 32 * (index % 4), 6 + 32 * (index // 4)
        image[y : y + 22, x : x + 22] = _label_colour(int(label))
        boxes.append([x, y, x + 22, y + 22])
    ignore = labels % 4 == 0
    augment = [
        _affine(degrees=10.0, shear=5.0, translate=0.2, scale=0.3),
        {"name": "vflip", "p": 0.5},
        {"name": "box_filter", "min_visibility": 0.6, "min_size": 6.0},
    ]
    sample = build_train_transform(augment, 96, seed=seed)(
        image, np.array(boxes, np.float32), labels, ignore
    )
    assert len(sample.boxes) == len(sample.labels) == len(sample.ignore) > 4
    assert (sample.boxes >= 0).all() and (sample.boxes <= 96).all()
    assert ((sample.boxes[:, 2:] - sample.boxes[:, :2]) >= 6.0 - 1e-4).all()
    np.testing.assert_array_equal(
        sample.ignore, sample.labels % 4 == 0
    )  # flags follow their labels
    palette = np.stack([_label_colour(label) for label in range(16)]).astype(np.int32)
    for box, label in zip(sample.boxes, sample.labels, strict=True):
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        centre = np.median(sample.image[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3), axis=0)
        nearest = int(np.abs(palette - centre).sum(1).argmin())
        assert nearest == label, (
            f"box {box.round(1).tolist()} says {label}, its pixels say {nearest}"
        )


def test_affine_is_deterministic_for_a_seed() -> None:
    augment = [_affine(degrees=20.0, shear=5.0, translate=0.1, scale=0.3)]
    boxes = np.array([[10, 10, 60, 50]], np.float32)
    first = build_train_transform(augment, 64, seed=7)(
        _image(80), boxes, np.array([0]), np.array([False])
    )
    again = build_train_transform(augment, 64, seed=7)(
        _image(80), boxes, np.array([0]), np.array([False])
    )
    other = build_train_transform(augment, 64, seed=8)(
        _image(80), boxes, np.array([0]), np.array([False])
    )
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize(
    "entry,message",
    [
        ({"name": "affine", "degrees": 200}, r"augment\[0\]\.degrees: must be in \[0, 180\]"),
        ({"name": "affine", "shear": -1}, r"augment\[0\]\.shear: must be in \[0, 45\]"),
        ({"name": "affine", "translate": 0.6}, r"augment\[0\]\.translate: must be in \[0, 0.5\]"),
        ({"name": "affine", "scale": 1.0}, r"augment\[0\]\.scale: must be in \[0, 0.9\]"),
        ({"name": "affine", "rotate": 5}, r"augment\[0\]\.rotate: unknown parameter for affine"),
        ({"name": "vflip", "p": 2}, r"augment\[0\]\.p: probability must be in \[0, 1\]"),
    ],
)
def test_bad_affine_entries_name_the_key(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_train_transform([entry], 64)
