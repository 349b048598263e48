"""Merging detections from overlapping tiles: class-aware NMS or greedy non-maximum merging.

    from detector.postprocess import merge_detections
    merged = merge_detections(boxes, scores, labels, method="nms", match_metric="iou",
                              match_threshold=0.5)   # the defaults (docs/slicing.md)
    merged.boxes, merged.scores, merged.labels, merged.keep

Both methods run one greedy pass per class over boxes sorted by decreasing score
(ties: lower index first): the best remaining box is kept, and every later box of its
class that it matches (overlap > `match_threshold`) is taken out of the pass.

- "nms": the kept boxes are the output, as `batched_nms` (with `match_metric="iou"`
  the kept set is `batched_nms`'s exactly).
- "nmm" (greedy non-maximum merging): each kept box grows into the box enclosing
  itself and every box it took out, with the kept box's score. An object cut by a
  tile border is seen as two partial boxes; NMS keeps the better half, NMM restores
  the whole.

`match_metric` is "iou" or "ios" (intersection over the smaller box's area: a partial
box lying inside the full one matches at IOS 1 whatever its size, where its IoU is
only its share of the area). The pass is `greedy.greedy_owner`, the compiled loop of
`nms` on CPU, so merging costs about what NMS costs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from detector._postprocess.boxes import check_boxes, check_vector, compute_dtype
from detector._postprocess.greedy import greedy_owner

__all__ = ["MERGE_METHODS", "MATCH_METRICS", "MergedDetections", "merge_detections"]

MERGE_METHODS = ("nmm", "nms")
MATCH_METRICS = ("ios", "iou")


class MergedDetections(NamedTuple):
    """The result of `merge_detections`, by decreasing score (ties: lower index first).

    Attributes:
        boxes: Tensor[K, 4] xyxy in the input dtype (for "nmm": the enclosing boxes).
        scores: Tensor[K], the kept boxes' scores.
        labels: int64 Tensor[K].
        keep: int64 Tensor[K], the index of each kept box in the inputs.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    keep: Tensor


def _sort_key(scores: Tensor) -> Tensor:
    return torch.sort(compute_dtype(scores), descending=True, stable=True).indices


def merge_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    *,
    method: str = "nms",
    match_metric: str = "iou",
    match_threshold: float = 0.5,
) -> MergedDetections:
    """Merge detections of overlapping tiles (already in image coordinates) class by class.

    The defaults are `detector.defaults`' DEFAULT_SLICE_* (a leaf cannot import them; a
    test keeps the two equal): docs/slicing.md says how they were chosen.

    Args:
        boxes: Tensor[N, 4] xyxy, all tiles' detections concatenated.
        scores: Tensor[N].
        labels: integer Tensor[N] class ids; boxes of different labels never interact.
        method: "nmm" (fuse matched boxes into their enclosing box) or "nms" (drop them).
        match_metric: "ios" (intersection over the smaller area) or "iou".
        match_threshold: boxes match when the metric is above this, in [0, 1].
    Returns:
        MergedDetections, by decreasing score (ties: lower input index first).
    Raises:
        ValueError: wrong shapes, a float `labels`, an unknown method or metric, a
            threshold outside [0, 1].
    """
    check_boxes(boxes)
    check_vector(scores, boxes.shape[0], "scores")
    check_vector(labels, boxes.shape[0], "labels")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if method not in MERGE_METHODS:
        raise ValueError(f"merge method must be one of {', '.join(MERGE_METHODS)}, got {method!r}")
    if match_metric not in MATCH_METRICS:
        raise ValueError(
            f"match metric must be one of {', '.join(MATCH_METRICS)}, got {match_metric!r}"
        )
    if not 0.0 <= float(match_threshold) <= 1.0:
        raise ValueError(f"match_threshold must be in [0, 1], got {match_threshold}")
    labels = labels.to(torch.int64)
    if boxes.shape[0] == 0:
        empty = torch.empty(0, dtype=torch.int64, device=boxes.device)
        return MergedDetections(boxes[:0].clone(), scores[:0].clone(), labels[:0].clone(), empty)

    order = _sort_key(scores)
    order = order[torch.sort(labels[order], stable=True).indices]  # by label, then by score
    sorted_boxes = compute_dtype(boxes)[order]
    owner = greedy_owner(
        sorted_boxes, labels[order], float(match_threshold), ios=match_metric == "ios"
    ).to(boxes.device)
    positions = torch.arange(order.shape[0], device=boxes.device)
    kept_positions = torch.nonzero(owner == positions).squeeze(1)
    if method == "nms":
        merged = sorted_boxes[kept_positions]
    else:
        # Enclosing box of every group: min of the corners x1, y1, max of x2, y2.
        lower = torch.full(
            (order.shape[0], 2), float("inf"), dtype=sorted_boxes.dtype, device=boxes.device
        )
        upper = torch.full_like(lower, float("-inf"))
        index = owner[:, None].expand(-1, 2)
        lower = lower.scatter_reduce(0, index, sorted_boxes[:, :2], reduce="amin")
        upper = upper.scatter_reduce(0, index, sorted_boxes[:, 2:], reduce="amax")
        merged = torch.cat((lower, upper), dim=1)[kept_positions]

    keep = order[kept_positions]
    # By input index first, so the score sort breaks ties by lower index.
    by_index = torch.sort(keep).indices
    keep, merged = keep[by_index], merged[by_index]
    by_score = _sort_key(scores[keep])
    keep, merged = keep[by_score], merged[by_score]
    return MergedDetections(merged.to(boxes.dtype), scores[keep], labels[keep], keep)
