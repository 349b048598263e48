"""YOLOLoss: hand-computed values, empty and degenerate targets, ignored boxes, gradients.

Run:

    .venv/bin/python -m pytest tests/model/test_loss.py -q
"""

from __future__ import annotations

import math

import pytest
import torch

from detector.model.head import encode_boxes, make_grid
from detector.model.loss import YOLOLoss

NUM_ANCHORS_64 = 84  # 64x64 input: 8*8 + 4*4 + 2*2 cells
KEYS = {"loss", "loss_box", "loss_obj", "loss_cls", "loss_l1", "num_fg"}


def _target(boxes, labels, ignore=None) -> dict[str, torch.Tensor]:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor(labels, dtype=torch.long)
    ignore = torch.zeros(len(labels), dtype=torch.bool) if ignore is None else torch.tensor(ignore)
    return {"boxes": boxes, "labels": labels, "ignore": ignore}


EMPTY = {
    "boxes": torch.zeros(0, 4),
    "labels": torch.zeros(0, dtype=torch.long),
    "ignore": torch.zeros(0, dtype=torch.bool),
}


def _raw(batch: int, num_classes: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, NUM_ANCHORS_64, 5 + num_classes, generator=generator).requires_grad_()


def test_all_empty_batch_is_hand_computed_and_backpropagates() -> None:
    raw = torch.zeros(2, NUM_ANCHORS_64, 8, requires_grad=True)
    terms = YOLOLoss(num_classes=3, strides=(8, 16, 32))(raw, [EMPTY, EMPTY])
    assert set(terms) == KEYS
    # every cell is a negative with logit 0: BCE = log 2 each, normalised by max(num_fg, 1) = 1
    assert terms["loss_obj"].item() == pytest.approx(2 * NUM_ANCHORS_64 * math.log(2), rel=1e-6)
    assert (
        terms["loss_box"].item() == 0
        and terms["loss_cls"].item() == 0
        and terms["num_fg"].item() == 0
    )
    terms["loss"].backward()
    assert torch.isfinite(raw.grad).all()
    torch.testing.assert_close(
        raw.grad[..., 4], torch.full((2, NUM_ANCHORS_64), 0.5)
    )  # sigmoid(0) - 0
    assert (raw.grad[..., :4] == 0).all() and (raw.grad[..., 5:] == 0).all()


def test_some_empty_images_and_degenerate_boxes_stay_finite() -> None:
    loss_fn = YOLOLoss(num_classes=3, strides=(8, 16, 32), l1_weight=1.0)
    raw = _raw(3)
    targets = [
        _target([[4.0, 6.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0]], [0, 2]),
        EMPTY,
        _target(
            [[10.0, 10.0, 10.0, 40.0], [5.0, 5.0, 5.0, 5.0]], [1, 1]
        ),  # zero width: treated as absent
    ]
    terms = loss_fn(raw, targets)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["num_fg"] >= 2 and terms["loss_box"] > 0 and terms["loss_l1"] > 0
    terms["loss"].backward()
    assert torch.isfinite(raw.grad).all()
    # the degenerate image contributes exactly what an empty image does
    same = loss_fn(raw.detach(), [targets[0], EMPTY, EMPTY])
    for key in KEYS:
        torch.testing.assert_close(terms[key].detach(), same[key])


def test_perfect_prediction_has_zero_box_loss() -> None:
    loss_fn = YOLOLoss(num_classes=2, strides=(8, 16, 32))
    raw = torch.zeros(1, NUM_ANCHORS_64, 7)
    raw[..., 4:] = -8.0
    # every cell predicts exactly the box [16, 16, 48, 48] (centre 32, size 32)
    centers, strides = make_grid(64, 64, (8, 16, 32))
    raw[0, :, :4] = encode_boxes(
        torch.tensor([16.0, 16.0, 48.0, 48.0]).expand(NUM_ANCHORS_64, 4), centers, strides
    )
    terms = loss_fn(raw, [_target([[16.0, 16.0, 48.0, 48.0]], [1])])
    assert terms["num_fg"] == 10  # dynamic k = sum of the 10 best IoUs = 10
    assert terms["loss_box"].item() == pytest.approx(0.0, abs=1e-5)


def test_ignored_box_cells_are_neither_positive_nor_negative() -> None:
    loss_fn = YOLOLoss(num_classes=3, strides=(8, 16, 32))
    raw = torch.zeros(1, NUM_ANCHORS_64, 8)
    terms = loss_fn(raw, [_target([[0.0, 0.0, 32.0, 32.0]], [0], ignore=[True])])
    # cell centres strictly inside [0, 32]^2: 16 at stride 8, 4 at stride 16, 1 at stride 32
    assert terms["num_fg"] == 0
    assert terms["loss_obj"].item() == pytest.approx((NUM_ANCHORS_64 - 21) * math.log(2), rel=1e-6)


def test_bad_inputs_raise() -> None:
    loss_fn = YOLOLoss(num_classes=3, strides=(8, 16, 32))
    with pytest.raises(ValueError, match="labels must be in"):
        loss_fn(_raw(1), [_target([[0.0, 0.0, 10.0, 10.0]], [3])])
    with pytest.raises(ValueError, match=r"raw must be \[B, A, 8\]"):
        loss_fn(torch.zeros(1, NUM_ANCHORS_64, 7), [EMPTY])
    with pytest.raises(ValueError, match="2 targets for a batch of 1"):
        loss_fn(_raw(1), [EMPTY, EMPTY])
    with pytest.raises(ValueError, match="input_size"):
        loss_fn(torch.zeros(1, 126, 8), [EMPTY])
    terms = loss_fn(
        torch.zeros(1, 126, 8), [_target([[0.0, 0.0, 90.0, 60.0]], [0])], input_size=(64, 96)
    )
    assert terms["num_fg"] >= 1
