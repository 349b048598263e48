"""Grid, private box encoding and decode: hand-computed cases.

Run:

    .venv/bin/python -m pytest tests/model/test_head.py -q
"""

from __future__ import annotations

import math

import pytest
import torch

from detector.model.decode import decode_detections
from detector.model.head import decode_boxes, encode_boxes, make_grid, square_size_from_anchors

STRIDES = (8, 16, 32)


def test_grid_centres_order_and_strides() -> None:
    centers, strides = make_grid(64, 96, STRIDES)
    # 8x12 + 4x6 + 2x3 cells, level by level, row-major
    assert centers.shape == (96 + 24 + 6, 2) and strides.shape == (126,)
    assert centers[0].tolist() == [4.0, 4.0] and centers[1].tolist() == [12.0, 4.0]
    assert centers[12].tolist() == [4.0, 12.0]  # second row of stride 8
    assert centers[96].tolist() == [8.0, 8.0] and strides[96] == 16
    assert centers[-1].tolist() == [80.0, 48.0] and strides[-1] == 32
    with pytest.raises(ValueError, match="multiple of the largest stride 32"):
        make_grid(64, 80, STRIDES)


def test_square_size_from_anchors() -> None:
    for side in (32, 64, 192, 640):
        assert square_size_from_anchors(make_grid(side, side, STRIDES)[0].shape[0], STRIDES) == side
    with pytest.raises(ValueError, match="input_size"):
        square_size_from_anchors(126, STRIDES)  # 64 x 96 is not square


def test_encode_decode_round_trip_and_hand_value() -> None:
    centers, strides = make_grid(64, 64, STRIDES)
    raw = torch.zeros(1, centers.shape[0], 4)
    raw[0, 70] = torch.tensor(
        [0.25, -0.5, math.log(2.0), 0.0]
    )  # stride 16, row 1, col 2: centre (40, 24)
    boxes = decode_boxes(raw, centers, strides)
    torch.testing.assert_close(boxes[0, 70], torch.tensor([28.0, 8.0, 60.0, 24.0]))
    torch.testing.assert_close(
        boxes[0, 0], torch.tensor([0.0, 0.0, 8.0, 8.0])
    )  # zero raw: one-stride square
    torch.testing.assert_close(encode_boxes(boxes, centers, strides), raw, atol=1e-5, rtol=0)
    huge = decode_boxes(torch.full((1, 4), 1e4), centers[:1], strides[:1])
    assert torch.isfinite(huge).all()  # log-size is clamped before exp


def _raw_with_one_object(num_classes: int = 3) -> torch.Tensor:
    raw = torch.zeros(1, 84, 5 + num_classes)  # 64x64 input: 64 + 16 + 4 cells
    raw[..., 4] = -20.0  # no object anywhere ...
    raw[..., 5:] = -10.0
    raw[0, 70, :4] = torch.tensor([0.25, -0.5, math.log(2.0), 0.0])  # ... but here: [28, 8, 60, 24]
    raw[0, 70, 4] = 10.0
    raw[0, 70, 5 + 1] = 10.0  # class 1
    raw[0, 70, 5 + 2] = 2.0  # also a weaker class 2 on the same box
    # the same box again from the stride-8 cell at centre (44, 4), lower score
    raw[0, 5, :4] = torch.tensor([0.0, 1.5, math.log(4.0), math.log(2.0)])  # [28, 8, 60, 24]
    raw[0, 5, 4] = 3.0
    raw[0, 5, 5 + 1] = 3.0
    return raw


def test_decode_hand_set_raw_gives_the_box_back() -> None:
    raw = _raw_with_one_object()
    (dets,) = decode_detections(raw, strides=STRIDES, score_threshold=0.01, iou_threshold=0.5)
    top = torch.sigmoid(torch.tensor(10.0)) ** 2
    second_class = torch.sigmoid(torch.tensor(10.0)) * torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(dets["boxes"], torch.tensor([[28.0, 8.0, 60.0, 24.0]] * 2))
    torch.testing.assert_close(dets["scores"], torch.stack([top, second_class]))
    assert dets["labels"].tolist() == [1, 2] and dets["labels"].dtype == torch.int64
    assert dets["boxes"].dtype == torch.float32

    (agnostic,) = decode_detections(
        raw, strides=STRIDES, score_threshold=0.01, iou_threshold=0.5, class_agnostic=True
    )
    assert agnostic["labels"].tolist() == [1]
    (loose,) = decode_detections(raw, strides=STRIDES, score_threshold=0.01, iou_threshold=1.0)
    assert loose["labels"].tolist() == [1, 1, 2]  # no suppression: the duplicate (0.91) comes back
    (capped,) = decode_detections(
        raw, strides=STRIDES, score_threshold=0.01, iou_threshold=1.0, max_det=1
    )
    assert capped["labels"].tolist() == [1]
    (strict,) = decode_detections(raw, strides=STRIDES, score_threshold=0.99)
    assert strict["labels"].tolist() == [1]


def test_decode_batch_non_square_and_empty() -> None:
    raw = torch.cat([_raw_with_one_object(), torch.full((1, 84, 8), -20.0)])
    dets = decode_detections(raw, strides=STRIDES, score_threshold=0.5)
    assert [len(d["scores"]) for d in dets] == [
        2,
        0,
    ]  # class 1 and class 2; the duplicate suppressed
    assert dets[1]["boxes"].shape == (0, 4) and dets[1]["labels"].dtype == torch.int64
    wide = torch.full((2, 126, 6), -20.0)
    assert [
        len(d["scores"]) for d in decode_detections(wide, strides=STRIDES, input_size=(64, 96))
    ] == [0, 0]
    with pytest.raises(ValueError, match="input_size"):
        decode_detections(wide, strides=STRIDES)
    with pytest.raises(ValueError, match="raw must be"):
        decode_detections(torch.zeros(84, 8), strides=STRIDES)
