"""IoU family: pairwise ([N, M]) and aligned ([N]) IoU, GIoU, DIoU and CIoU.

    >>> from detector.postprocess import box_iou
    >>> box_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
    tensor([[0.3333]])

All boxes are xyxy. Half-precision and integer inputs are computed and returned in
float32 (float16 cannot hold the area of a 300 px box); float64 stays float64.

Degenerate boxes are defined, not NaN, in values and gradients: a side with
x2 < x1 counts as length 0, so zero-area and inverted boxes have area 0 and IoU 0
with everything (including themselves); where an enclosing box is empty too (two
identical points) its penalty term is 0. The aligned forms, meant for losses, are
built so that backward() through them is finite for such boxes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from detector._postprocess.boxes import box_area, check_boxes, compute_dtype

__all__ = [
    "box_iou",
    "box_iou_aligned",
    "complete_box_iou_aligned",
    "distance_box_iou_aligned",
    "generalized_box_iou",
    "generalized_box_iou_aligned",
]

# Lower bound for denominators. It only changes a ratio whose denominator is below
# 1e-7 px^2 (no real box), and keeps 1/denominator and its gradient finite.
_EPS = 1e-7


def _iou_and_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and union of broadcastable xyxy boxes [..., 4] (already in compute dtype)."""
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    overlap = (bottom_right - top_left).clamp(min=0)  # [..., 2]
    intersection = overlap[..., 0] * overlap[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - intersection
    # An empty union means both boxes are empty: intersection is 0 there, so IoU is 0.
    return intersection / union.clamp(min=_EPS), union


def _enclosing_size(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Width and height [..., 2] of the smallest box enclosing both (0 if inverted)."""
    top_left = torch.minimum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.maximum(boxes1[..., 2:], boxes2[..., 2:])
    return (bottom_right - top_left).clamp(min=0)


def _giou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    iou, union = _iou_and_union(boxes1, boxes2)
    enclosing = _enclosing_size(boxes1, boxes2)
    enclosing_area = enclosing[..., 0] * enclosing[..., 1]
    # enclosing_area >= union for valid boxes; an empty enclosing box gives penalty 0.
    return iou - (enclosing_area - union) / enclosing_area.clamp(min=_EPS)


def _diou_terms(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and the DIoU penalty: squared centre distance over squared enclosing diagonal."""
    iou, _ = _iou_and_union(boxes1, boxes2)
    enclosing = _enclosing_size(boxes1, boxes2)
    diagonal_sq = enclosing[..., 0] ** 2 + enclosing[..., 1] ** 2
    centre_delta = (boxes1[..., :2] + boxes1[..., 2:] - boxes2[..., :2] - boxes2[..., 2:]) / 2
    centre_distance_sq = centre_delta[..., 0] ** 2 + centre_delta[..., 1] ** 2
    return iou, centre_distance_sq / diagonal_sq.clamp(min=_EPS)


def _check_pair(boxes1: Tensor, boxes2: Tensor, *, aligned: bool) -> tuple[Tensor, Tensor]:
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    if aligned and boxes1.shape[0] != boxes2.shape[0]:
        raise ValueError(
            f"aligned IoU needs the same number of boxes in boxes1 and boxes2, "
            f"got {boxes1.shape[0]} and {boxes2.shape[0]}"
        )
    return compute_dtype(boxes1), compute_dtype(boxes2)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union.

    Args:
        boxes1: Tensor[N, 4] xyxy.
        boxes2: Tensor[M, 4] xyxy.
    Returns:
        Tensor[N, M] of IoU in [0, 1]; 0 for pairs whose union is empty. N or M may be 0.
    """
    boxes1, boxes2 = _check_pair(boxes1, boxes2, aligned=False)
    return _iou_and_union(boxes1[:, None, :], boxes2[None, :, :])[0]


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU: IoU - (enclosing area - union) / enclosing area.

    Args:
        boxes1: Tensor[N, 4] xyxy.
        boxes2: Tensor[M, 4] xyxy.
    Returns:
        Tensor[N, M] of GIoU in [-1, 1].
    """
    boxes1, boxes2 = _check_pair(boxes1, boxes2, aligned=False)
    return _giou(boxes1[:, None, :], boxes2[None, :, :])


def box_iou_aligned(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of corresponding pairs ``(boxes1[i], boxes2[i])``.

    Args:
        boxes1: Tensor[N, 4] xyxy.
        boxes2: Tensor[N, 4] xyxy.
    Returns:
        Tensor[N] of IoU in [0, 1]; 0 where the union is empty.
    """
    boxes1, boxes2 = _check_pair(boxes1, boxes2, aligned=True)
    return _iou_and_union(boxes1, boxes2)[0]


def generalized_box_iou_aligned(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of corresponding pairs (Rezatofighi et al., 2019).

    Args:
        boxes1: Tensor[N, 4] xyxy.
        boxes2: Tensor[N, 4] xyxy.
    Returns:
        Tensor[N] of GIoU in [-1, 1]; identical zero-area boxes give 0.
    """
    boxes1, boxes2 = _check_pair(boxes1, boxes2, aligned=True)
    return _giou(boxes1, boxes2)


def distance_box_iou_aligned(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Distance IoU of corresponding pairs: IoU - centre distance^2 / enclosing diagonal^2.

    Args:
        boxes1: Tensor[N, 4] xyxy.
        boxes2: Tensor[N, 4] xyxy.
    Returns:
        Tensor[N] of DIoU in [-1, 1]; identical zero-area boxes give 0.
    """
    boxes1, boxes2 = _check_pair(boxes1, boxes2, aligned=True)
    iou, distance_penalty = _diou_terms(boxes1, boxes2)
    return iou - distance_penalty


def complete_box_iou_aligned(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Complete IoU of corresponding pairs (Zheng et al., 2020): DIoU - alpha * v.

    ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` compares aspect ratios and
    ``alpha = v / (1 - IoU + v)`` is treated as a constant in backward, as in the paper.
    A zero height is replaced by 1e-7 inside the arctangent so it stays finite.

    Args:
        boxes1: Tensor[N, 4] xyxy (typically predictions).
        boxes2: Tensor[N, 4] xyxy (typically targets).
    Returns:
        Tensor[N] of CIoU in [-1.5, 1]; identical boxes give 1, identical zero-area boxes 0.
    """
    boxes1, boxes2 = _check_pair(boxes1, boxes2, aligned=True)
    iou, distance_penalty = _diou_terms(boxes1, boxes2)
    size1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0)
    size2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0)
    angle1 = torch.atan(size1[:, 0] / size1[:, 1].clamp(min=_EPS))
    angle2 = torch.atan(size2[:, 0] / size2[:, 1].clamp(min=_EPS))
    aspect_penalty = (4 / math.pi**2) * (angle2 - angle1) ** 2
    with torch.no_grad():
        alpha = aspect_penalty / (1 - iou + aspect_penalty).clamp(min=_EPS)
    return iou - distance_penalty - alpha * aspect_penalty
