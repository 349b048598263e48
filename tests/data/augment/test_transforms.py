"""Augmentation: box round trips, label alignment under crops, empty targets, seeding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector.data.augment.transforms import (
    DEFAULT_AUGMENT,
    build_eval_transform,
    build_train_transform,
)
from detector.data.letterbox import boxes_to_original, compute_letterbox, letterbox_image


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _boxes(height: int, width: int) -> np.ndarray:
    return np.array(
        [
            [0, 0, width, height],
            [1.5, 2.25, 0.61 * width + 0.25, 0.83 * height + 0.5],
            [width * 0.4, height * 0.3, width - 0.5, height],
        ],
        np.float32,
    )


@pytest.mark.parametrize(
    "height,width,size", [(157, 311, 128), (311, 157, 128), (37, 53, 64), (64, 64, 64)]
)
def test_noop_train_pipeline_round_trips_boxes(height: int, width: int, size: int) -> None:
    boxes = _boxes(height, width)
    labels, ignore = np.array([0, 3, 1]), np.array([False, True, False])
    for augment in (
        [],
        [
            {"name": "hflip", "p": 0.0},
            {"name": "crop", "p": 0.0},
            {"name": "brightness_contrast", "p": 0.0},
            {"name": "box_filter", "min_size": 0.0},
        ],
    ):
        sample = build_train_transform(augment, size, seed=0)(
            _image(height, width), boxes, labels, ignore
        )
        assert sample.image.shape == (size, size, 3) and sample.image.dtype == np.uint8
        assert sample.letterbox == compute_letterbox(height, width, size)
        np.testing.assert_allclose(
            boxes_to_original(sample.boxes, sample.letterbox), boxes, atol=1e-3
        )
        np.testing.assert_array_equal(sample.labels, labels)
        np.testing.assert_array_equal(sample.ignore, ignore)


@pytest.mark.parametrize(
    "height,width,size", [(375, 500, 448), (333, 501, 96), (17, 29, 64), (101, 77, 160)]
)
def test_eval_transform_maps_back_exactly(height: int, width: int, size: int) -> None:
    image, boxes = _image(height, width), _boxes(height, width)
    sample = build_eval_transform(size)(image, boxes, np.arange(3), np.zeros(3, bool))
    expected_image, expected_letterbox = letterbox_image(image, size)
    np.testing.assert_array_equal(sample.image, expected_image)
    assert sample.letterbox == expected_letterbox
    np.testing.assert_allclose(
        boxes_to_original(sample.boxes, sample.letterbox), boxes, rtol=0, atol=1e-4
    )


def test_hflip_hand_computed() -> None:
    image = _image(100, 200)  # letterbox to 200: scale 1, 50 px padding on top and bottom
    transform = build_train_transform([{"name": "hflip", "p": 1.0}], 200, seed=0)
    sample = transform(
        image, np.array([[10, 20, 50, 60]], np.float32), np.array([4]), np.array([True])
    )
    np.testing.assert_allclose(sample.boxes, [[150, 70, 190, 110]], atol=1e-4)
    assert sample.labels.tolist() == [4] and sample.ignore.tolist() == [True]
    np.testing.assert_array_equal(sample.image[50:150], image[:, ::-1])
    assert (sample.image[:50] == 114).all() and (sample.image[150:] == 114).all()


def _grid_boxes(count_per_side: int, side: float, cell: float) -> np.ndarray:
    starts = np.arange(count_per_side) * cell + 2
    x, y = np.meshgrid(starts, starts)
    x, y = x.ravel(), y.ravel()
    return np.stack([x, y, x + side, y + side], axis=1).astype(np.float32)


def test_crop_drops_boxes_with_their_labels_by_visibility_policy() -> None:
    """Scale 2x then a random 128 px window: compare kept boxes against a reference policy."""
    image = _image(128, 128)
    boxes = _grid_boxes(6, side=12, cell=21)  # 36 boxes, label = index
    labels, ignore = np.arange(len(boxes)), np.arange(len(boxes)) % 3 == 0
    augment = [
        {"name": "scale_jitter", "min_scale": 2.0, "max_scale": 2.0},
        {"name": "box_filter", "min_visibility": 0.3, "min_size": 2.0},
    ]
    saw_partial_drop = False
    for seed in range(12):
        sample = build_train_transform(augment, 128, seed=seed)(image, boxes, labels, ignore)
        # Fully visible boxes reveal the window offset; every kept box must sit where
        # its own label's input box lands, so labels cannot have shifted.
        scaled = boxes * 2.0
        inside = [
            (k, lab)
            for k, lab in enumerate(sample.labels)
            if (sample.boxes[k] > 0).all() and (sample.boxes[k] < 128).all()
        ]
        assert inside, "a 2x window of a 6x6 grid always shows a whole box"
        offset = scaled[inside[0][1], :2] - sample.boxes[inside[0][0], :2]
        expected_boxes = scaled - np.tile(offset, 2)
        clipped = expected_boxes.clip(0, 128)
        area = lambda b: (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)  # noqa: E731
        visibility = area(clipped) / area(expected_boxes)
        expected_keep = (visibility >= 0.3) & ((clipped[:, 2:] - clipped[:, :2]) >= 2).all(axis=1)
        borderline = np.abs(visibility - 0.3) < 0.01
        kept = np.zeros(len(boxes), bool)
        kept[sample.labels] = True
        np.testing.assert_array_equal(kept[~borderline], expected_keep[~borderline])
        np.testing.assert_allclose(sample.boxes, clipped[sample.labels], atol=1e-3)
        np.testing.assert_array_equal(sample.ignore, ignore[sample.labels])
        saw_partial_drop |= 0 < len(sample.labels) < len(boxes)
    assert saw_partial_drop


def test_crop_that_drops_every_box_gives_an_empty_target() -> None:
    transform = build_train_transform(
        [{"name": "scale_jitter", "min_scale": 2.0, "max_scale": 2.0}], 64, seed=0
    )
    image, box = _image(64, 64), np.array([[0, 0, 20, 20]], np.float32)
    empty_seen = kept_seen = False
    for _ in range(40):  # one stream: kept and dropped calls interleave, nothing goes stale
        sample = transform(image, box, np.array([2]), np.array([True]))
        if len(sample.boxes) == 0:
            empty_seen = True
            assert sample.boxes.shape == (0, 4) and sample.boxes.dtype == np.float32
            assert sample.labels.shape == (0,) and sample.labels.dtype == np.int64
            assert sample.ignore.shape == (0,) and sample.ignore.dtype == bool
        else:
            kept_seen = True
            assert sample.labels.tolist() == [2] and sample.ignore.tolist() == [True]
    assert empty_seen and kept_seen


def test_images_without_boxes_pass_through() -> None:
    for transform in (build_train_transform(None, 64, seed=0), build_eval_transform(64)):
        sample = transform(
            _image(50, 70), np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, bool)
        )
        assert (
            sample.boxes.shape == (0, 4)
            and sample.labels.shape == (0,)
            and sample.image.shape == (64, 64, 3)
        )


def test_box_safe_crop_keeps_every_box_inside_the_canvas() -> None:
    boxes = _boxes(120, 90)
    transform = build_train_transform([{"name": "crop", "p": 1.0}, {"name": "hflip"}], 96, seed=1)
    for _ in range(10):
        sample = transform(_image(120, 90), boxes, np.arange(3), np.zeros(3, bool))
        assert sample.labels.tolist() == [0, 1, 2]
        assert (sample.boxes >= 0).all() and (sample.boxes <= 96).all()
        assert (sample.boxes[:, 2:] > sample.boxes[:, :2]).all()


def _run(transform, count: int = 6) -> list:
    image, boxes = _image(80, 100), _boxes(80, 100)
    return [transform(image, boxes, np.arange(3), np.zeros(3, bool)) for _ in range(count)]


def test_same_seed_same_output_and_other_seed_differs() -> None:
    first = _run(build_train_transform(None, 64, seed=7))
    second = _run(build_train_transform(None, 64, seed=7))
    other = _run(build_train_transform(None, 64, seed=8))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.boxes, b.boxes)
    assert any(not np.array_equal(a.image, c.image) for a, c in zip(first, other, strict=True))
    reseeded = build_train_transform(None, 64, seed=8)
    reseeded.set_seed(7)
    np.testing.assert_array_equal(_run(reseeded)[0].image, first[0].image)


def test_transforms_draw_from_one_stream_not_copies_of_it() -> None:
    """albumentations' own `seed=` gives each transform an identical stream, which would
    make a p=0.5 flip and a p=0.5 colour shift always fire together."""
    transform = build_train_transform(
        [{"name": "hflip", "p": 0.5}, {"name": "brightness_contrast", "p": 0.5}], 32, seed=0
    )
    image = np.full((32, 32, 3), 100, np.uint8)
    flips, colours = [], []
    for _ in range(60):
        sample = transform(
            image, np.array([[0, 0, 8, 8]], np.float32), np.array([0]), np.array([False])
        )
        flips.append(sample.boxes[0, 0] > 16)
        colours.append(not (sample.image == 100).all())
    assert 10 < sum(flips) < 50 and 10 < sum(colours) < 50
    assert flips != colours


@pytest.mark.parametrize(
    "augment,message",
    [
        ([{"name": "rotate"}], "augment[0].name: unknown transform 'rotate'"),
        (
            [{"name": "hflip"}, {"name": "hsv", "hue_limit": 3}],
            "augment[1].hue_limit: unknown parameter for hsv",
        ),
        ([{"name": "hflip", "p": 1.5}], "augment[0].p"),
        ([{"name": "hflip", "p": "often"}], "augment[0].p: expected a number"),
        ([{"p": 0.5}], "augment[0]: expected a mapping with a 'name' key"),
        ([{"name": "scale_jitter", "min_scale": 1.5, "max_scale": 1.0}], "min_scale <= max_scale"),
        ({"name": "hflip"}, "augment: expected a list"),
    ],
)
def test_bad_augment_entries_raise_naming_the_key(augment, message: str) -> None:
    with pytest.raises(ValueError) as info:
        build_train_transform(augment, 64)
    assert message in str(info.value)


def test_default_augment_is_used_for_none_and_covers_the_issue() -> None:
    names = {entry["name"] for entry in DEFAULT_AUGMENT}
    assert {"hflip", "crop", "scale_jitter", "brightness_contrast", "box_filter"} <= names
    a = _run(build_train_transform(None, 64, seed=3))
    b = _run(build_train_transform(DEFAULT_AUGMENT, 64, seed=3))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)


def test_scale_jitter_changes_object_scale_within_range() -> None:
    transform = build_train_transform(
        [{"name": "scale_jitter", "min_scale": 0.5, "max_scale": 1.0}], 128, seed=0
    )
    image = cv2.resize(_image(8, 8), (100, 100), interpolation=cv2.INTER_NEAREST)
    scales = []
    for _ in range(30):
        box = transform(
            image, np.array([[40, 40, 60, 60]], np.float32), np.array([0]), np.array([False])
        ).boxes[0]
        scales.append((box[2] - box[0]) / 20 * 100 / 128)  # relative to the letterbox scale 1.28
    assert (
        0.5 - 1e-3 <= min(scales) and max(scales) <= 1.0 + 1e-3 and max(scales) - min(scales) > 0.2
    )


def test_shapes_config_spells_out_exactly_the_defaults() -> None:
    from pathlib import Path

    from detector.config import load_config

    config = Path(__file__).resolve().parents[3] / "configs" / "shapes.yaml"
    assert load_config(config).augment == DEFAULT_AUGMENT


def test_train_transform_equals_plain_albumentations_box_handling() -> None:
    """Reference: the same transforms in a Compose with albumentations' own pascal_voc
    conversion, clipping, invalid-box filter, label field and BboxProcessor. Ours feeds
    normalised boxes with an index column and a quicker validity check; the output
    must be the same, for boxes inside, across and outside the image and degenerate ones."""
    import random

    import albumentations as A

    from detector.data.augment.box_check import QuickCheckBboxProcessor

    ours = build_train_transform(None, 96, seed=0)
    assert isinstance(ours.compose.processors["bboxes"], QuickCheckBboxProcessor)
    params = ours.compose.processors["bboxes"].params
    reference = A.Compose(
        ours.compose.transforms,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=params.min_visibility,
            min_width=params.min_width,
            min_height=params.min_height,
            clip=True,
            filter_invalid_bboxes=True,
            check_each_transform=False,
        ),
    )
    rng = np.random.default_rng(0)
    compared_boxes = 0
    for seed in range(150):
        height, width = (int(v) for v in rng.integers(40, 200, 2))
        corners = rng.uniform(-0.2, 1.2, (int(rng.integers(0, 7)), 2, 2)) * (width, height)
        boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1).astype(np.float32)
        if seed % 10 == 0 and len(boxes):
            boxes[0, 2] = boxes[0, 0]  # degenerate: zero width
        labels = np.arange(len(boxes)) * 3 + 1
        image = _image(height, width, seed)

        reference.set_random_state(np.random.default_rng(seed), random.Random(seed))
        want = reference(image=image, bboxes=boxes, labels=labels)
        ours.set_seed(seed)
        got = ours(image, boxes, labels, np.zeros(len(boxes), bool))

        np.testing.assert_array_equal(got.image, want["image"])
        np.testing.assert_array_equal(got.labels, np.asarray(want["labels"], np.int64))
        np.testing.assert_allclose(
            got.boxes, np.asarray(want["bboxes"], np.float32).reshape(-1, 4), atol=1e-3
        )
        compared_boxes += len(got.boxes)
    assert compared_boxes > 100


def test_quick_box_check_rejects_what_albumentations_rejects() -> None:
    from albumentations.core.bbox_utils import check_bboxes

    from detector.data.augment.box_check import QuickCheckBboxProcessor

    processor = build_train_transform(None, 64).compose.processors["bboxes"]
    assert isinstance(processor, QuickCheckBboxProcessor)
    for bad in (
        [[0.5, 0.1, 0.5, 0.4]],
        [[0.1, 0.6, 0.3, 0.2]],
        [[-0.1, 0.1, 0.3, 0.4]],
        [[0.1, 0.1, 1.2, 0.4]],
    ):
        boxes = np.array(bad)
        with pytest.raises(ValueError) as ours:
            processor.check(boxes, {"height": 64, "width": 64})
        with pytest.raises(ValueError) as theirs:
            check_bboxes(boxes)
        assert str(ours.value) == str(theirs.value)
    # Within np.isclose's tolerance of the range: accepted by both.
    edge = np.array([[-1e-9, 0.0, 1.0 + 1e-9, 1.0]])
    processor.check(edge, {"height": 64, "width": 64})
    check_bboxes(edge)
