"""Box formats and the IoU family against hand-computed values and slow pairwise loops.

.venv/bin/python -m pytest tests/test_postprocess_boxes.py -q
"""

from __future__ import annotations

import math

import pytest
import torch

from detector.postprocess import (
    box_area,
    box_cxcywh_to_xywh,
    box_cxcywh_to_xyxy,
    box_iou,
    box_iou_aligned,
    box_xywh_to_cxcywh,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes_to_image,
    complete_box_iou_aligned,
    distance_box_iou_aligned,
    generalized_box_iou,
    generalized_box_iou_aligned,
)

ALIGNED = [
    box_iou_aligned,
    generalized_box_iou_aligned,
    distance_box_iou_aligned,
    complete_box_iou_aligned,
]


# --- slow, readable references on Python floats -------------------------------------------


def ref_area(box: list[float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def ref_iou(a: list[float], b: list[float]) -> float:
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(
        min(a[3], b[3]) - max(a[1], b[1]), 0.0
    )
    union = ref_area(a) + ref_area(b) - inter
    return inter / union if union > 0 else 0.0


def ref_enclosing(a: list[float], b: list[float]) -> tuple[float, float]:
    return max(max(a[2], b[2]) - min(a[0], b[0]), 0.0), max(max(a[3], b[3]) - min(a[1], b[1]), 0.0)


def ref_giou(a: list[float], b: list[float]) -> float:
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(
        min(a[3], b[3]) - max(a[1], b[1]), 0.0
    )
    union = ref_area(a) + ref_area(b) - inter
    width, height = ref_enclosing(a, b)
    enclosing = width * height
    return ref_iou(a, b) - ((enclosing - union) / enclosing if enclosing > 0 else 0.0)


def ref_diou(a: list[float], b: list[float]) -> float:
    width, height = ref_enclosing(a, b)
    diagonal_sq = width**2 + height**2
    centre_sq = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + (
        (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
    ) ** 2
    return ref_iou(a, b) - (centre_sq / diagonal_sq if diagonal_sq > 0 else 0.0)


def ref_ciou(a: list[float], b: list[float]) -> float:
    aspect = [math.atan((box[2] - box[0]) / (box[3] - box[1])) for box in (a, b)]
    v = 4 / math.pi**2 * (aspect[1] - aspect[0]) ** 2
    alpha = v / (1 - ref_iou(a, b) + v) if v > 0 else 0.0
    return ref_diou(a, b) - alpha * v


def random_boxes(count: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """Boxes inside a 100 px square, some overlapping, sides 1..40 px."""
    top_left = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 80
    size = 1 + torch.rand(count, 2, generator=generator, dtype=torch.float64) * 39
    return torch.cat((top_left, top_left + size), dim=1).to(dtype)


# --- formats, area, clipping ----------------------------------------------------------------


def test_format_conversions_hand_computed() -> None:
    xyxy = torch.tensor([[10.0, 20.0, 40.0, 60.0]])
    xywh = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    cxcywh = torch.tensor([[25.0, 40.0, 30.0, 40.0]])
    assert torch.equal(box_xyxy_to_xywh(xyxy), xywh)
    assert torch.equal(box_xywh_to_xyxy(xywh), xyxy)
    assert torch.equal(box_xyxy_to_cxcywh(xyxy), cxcywh)
    assert torch.equal(box_cxcywh_to_xyxy(cxcywh), xyxy)
    assert torch.equal(box_xywh_to_cxcywh(xywh), cxcywh)
    assert torch.equal(box_cxcywh_to_xywh(cxcywh), xywh)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_format_round_trips_keep_dtype_shape_and_inputs(dtype: torch.dtype) -> None:
    boxes = random_boxes(24, torch.Generator().manual_seed(0)).reshape(2, 3, 4, 4).to(dtype)
    original = boxes.clone()
    for forward, backward in [
        (box_xyxy_to_xywh, box_xywh_to_xyxy),
        (box_xyxy_to_cxcywh, box_cxcywh_to_xyxy),
        (box_xywh_to_cxcywh, box_cxcywh_to_xywh),
    ]:
        converted = forward(boxes)
        assert converted.dtype == dtype and converted.shape == boxes.shape
        tolerance = 2 * 128 * torch.finfo(dtype).eps  # 2 ulp at 128 px, boxes are below
        torch.testing.assert_close(backward(converted), boxes, atol=tolerance, rtol=0)
    assert torch.equal(boxes, original)


def test_area_and_clip_hand_computed() -> None:
    boxes = torch.tensor([[0.0, 0.0, 4.0, 3.0], [5.0, 5.0, 5.0, 9.0], [6.0, 6.0, 2.0, 2.0]])
    assert torch.equal(box_area(boxes), torch.tensor([12.0, 0.0, 0.0]))  # zero-area, inverted: 0
    wide = torch.tensor([[-5.0, -5.0, 250.0, 250.0]])
    clipped = clip_boxes_to_image(wide, size=(100, 200))  # (height, width)
    assert torch.equal(clipped, torch.tensor([[0.0, 0.0, 200.0, 100.0]]))
    assert torch.equal(wide, torch.tensor([[-5.0, -5.0, 250.0, 250.0]]))  # not mutated
    with pytest.raises(ValueError, match="height, width"):
        clip_boxes_to_image(wide, size=(100,))


# --- IoU family -----------------------------------------------------------------------------


def test_iou_family_hand_computed() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 4)
    b = torch.tensor(
        [[1.0, 0.0, 3.0, 2.0], [1.0, 1.0, 3.0, 3.0], [3.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0]]
    )
    torch.testing.assert_close(box_iou_aligned(a, b), torch.tensor([1 / 3, 1 / 7, 0.0, 1.0]))
    # disjoint: enclosing 4x2 = 8, union 6 -> 0 - 2/8
    torch.testing.assert_close(generalized_box_iou_aligned(a, b)[2], torch.tensor(-0.25))
    # half overlap: centres 1 apart, enclosing 3x2 -> diagonal^2 13
    torch.testing.assert_close(distance_box_iou_aligned(a, b)[0], torch.tensor(1 / 3 - 1 / 13))
    # 2x2 vs 4x2 at the same corner: IoU 1/2, centres 1 apart, enclosing diagonal^2 20
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    expected = 0.5 - 1 / 20 - v / (0.5 + v) * v
    ciou = complete_box_iou_aligned(a[:1], torch.tensor([[0.0, 0.0, 4.0, 2.0]]))
    torch.testing.assert_close(ciou, torch.tensor([expected]))
    torch.testing.assert_close(box_iou(a[:1], b), box_iou_aligned(a, b)[None])


@pytest.mark.parametrize("seed", range(10))
def test_pairwise_and_aligned_match_reference_loops(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    boxes1, boxes2 = random_boxes(7, generator), random_boxes(9, generator)
    boxes1[0, 2] = boxes1[0, 0]  # a zero-width box among them
    rows, columns = boxes1.tolist(), boxes2.tolist()
    expected_iou = torch.tensor(
        [[ref_iou(a, b) for b in columns] for a in rows], dtype=torch.float64
    )
    expected_giou = torch.tensor(
        [[ref_giou(a, b) for b in columns] for a in rows], dtype=torch.float64
    )
    torch.testing.assert_close(box_iou(boxes1, boxes2), expected_iou, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        generalized_box_iou(boxes1, boxes2), expected_giou, rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        box_iou(boxes1.float(), boxes2.float()), expected_iou.float(), atol=1e-6, rtol=0
    )

    pairs1, pairs2 = boxes1[1:], boxes2[: len(boxes1) - 1]  # positive-area aligned pairs
    for function, reference in [
        (box_iou_aligned, ref_iou),
        (generalized_box_iou_aligned, ref_giou),
        (distance_box_iou_aligned, ref_diou),
        (complete_box_iou_aligned, ref_ciou),
    ]:
        expected = torch.tensor(
            [reference(a, b) for a, b in zip(pairs1.tolist(), pairs2.tolist(), strict=True)],
            dtype=torch.float64,
        )
        torch.testing.assert_close(function(pairs1, pairs2), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("function", ALIGNED)
def test_degenerate_boxes_give_documented_values_and_finite_gradients(function) -> None:
    cases = torch.tensor(
        [
            # boxes1               boxes2                 expected value
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # identical points
            [1.0, 1.0, 1.0, 5.0, 0.0, 0.0, 4.0, 4.0, math.nan],  # zero-width vs a box
            [5.0, 5.0, 1.0, 1.0, 5.0, 5.0, 1.0, 1.0, 0.0],  # identical inverted boxes
            [3.0, 3.0, 7.0, 7.0, 3.0, 3.0, 7.0, 7.0, 1.0],  # identical boxes
            [6.0, 6.0, 2.0, 2.0, 0.0, 0.0, 4.0, 4.0, math.nan],  # inverted vs a box
        ]
    )
    boxes1 = cases[:, 0:4].clone().requires_grad_(True)
    boxes2 = cases[:, 4:8].clone().requires_grad_(True)
    values = function(boxes1, boxes2)
    values.sum().backward()
    assert torch.isfinite(values).all()
    assert torch.isfinite(boxes1.grad).all() and torch.isfinite(boxes2.grad).all()
    known = ~torch.isnan(cases[:, 8])
    torch.testing.assert_close(values[known].detach(), cases[known, 8])
    assert box_iou_aligned(boxes1, boxes2)[[1, 4]].eq(0).all()  # zero-area: IoU 0


@pytest.mark.parametrize("function", ALIGNED + [box_iou, generalized_box_iou])
def test_empty_inputs_and_loss_on_no_boxes(function) -> None:
    empty = torch.zeros(0, 4, requires_grad=True)
    if function in (box_iou, generalized_box_iou):
        assert function(empty, torch.rand(3, 4)).shape == (0, 3)
        assert function(torch.rand(3, 4), empty).shape == (3, 0)
        return
    loss = (1 - function(empty, empty.detach())).sum()
    assert loss.item() == 0.0
    loss.backward()
    assert empty.grad is not None and empty.grad.shape == (0, 4)


@pytest.mark.parametrize("function", ALIGNED + [box_iou, generalized_box_iou])
def test_wrong_shapes_raise(function) -> None:
    with pytest.raises(ValueError, match=r"boxes1 must have shape \[N, 4\]"):
        function(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"boxes2 must have shape \[N, 4\]"):
        function(torch.zeros(3, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="torch.Tensor"):
        function([[0, 0, 1, 1]], torch.zeros(1, 4))
    if function in ALIGNED:
        with pytest.raises(ValueError, match="same number of boxes"):
            function(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        box_xyxy_to_cxcywh(torch.zeros(2, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32_up_to_4k_pixels(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(3)
    boxes = (random_boxes(20, generator) * 34).to(dtype)  # up to 4080 px: areas overflow fp16
    exact = boxes.float()
    assert box_iou(boxes, boxes).dtype == torch.float32
    assert torch.equal(box_iou(boxes, boxes), box_iou(exact, exact))
    assert torch.equal(box_area(boxes), box_area(exact)) and torch.isfinite(box_area(boxes)).all()
    for function in ALIGNED:
        assert torch.equal(function(boxes[:10], boxes[10:]), function(exact[:10], exact[10:]))


# --- property-based: random boxes, degenerate ones included, against the reference loop ---

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BOX = st.tuples(
    st.integers(-50, 300), st.integers(-50, 300), st.integers(-30, 200), st.integers(-30, 200)
).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])  # negative sides: inverted boxes


@settings(max_examples=60, deadline=None)
@given(first=st.lists(BOX, max_size=8), second=st.lists(BOX, max_size=8))
def test_box_iou_matches_the_reference_on_random_and_degenerate_boxes(
    first: list, second: list
) -> None:
    a = torch.tensor(first, dtype=torch.float64).reshape(-1, 4)
    b = torch.tensor(second, dtype=torch.float64).reshape(-1, 4)
    iou = box_iou(a, b)
    assert iou.shape == (len(first), len(second)) and iou.dtype == torch.float64
    for i, x in enumerate(a.tolist()):
        assert iou[i].tolist() == pytest.approx([ref_iou(x, y) for y in b.tolist()], abs=1e-12)
    assert torch.isfinite(iou).all() and ((iou >= 0) & (iou <= 1)).all()
    pairs = min(len(first), len(second))
    pairs_a, pairs_b = a[:pairs].tolist(), b[:pairs].tolist()
    aligned = box_iou_aligned(a[:pairs], b[:pairs])
    assert aligned.tolist() == pytest.approx(
        [ref_iou(x, y) for x, y in zip(pairs_a, pairs_b, strict=True)], abs=1e-12
    )
    for name, function, reference in (
        ("giou", generalized_box_iou_aligned, ref_giou),
        ("diou", distance_box_iou_aligned, ref_diou),
    ):
        values = function(a[:pairs], b[:pairs])
        assert torch.isfinite(values).all(), name
        expected = [reference(x, y) for x, y in zip(pairs_a, pairs_b, strict=True)]
        assert values.tolist() == pytest.approx(expected, abs=1e-9), name
