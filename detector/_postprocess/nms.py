"""Greedy non-maximum suppression: single-class, class-aware and over a whole batch.

    from detector.postprocess import multi_image_nms
    per_image = multi_image_nms(boxes, scores, labels, image_index, 0.5, num_images=32)

Every function returns int64 indices into its inputs, sorted by decreasing score,
ties broken by lower index first (stable), so results are deterministic. The result
equals a plain loop: sort, keep the best box, drop boxes with IoU > iou_threshold
against it, repeat. IoUs are computed in float32 for half-precision boxes (float64
stays float64). Boxes of different classes (or images) never suppress each other;
this is done by grouping, not by the coordinate-offset trick, so there is no offset
to overflow in float16.
"""

from __future__ import annotations

import torch
from torch import Tensor

from detector._postprocess.boxes import check_boxes, check_vector, compute_dtype
from detector._postprocess.greedy import greedy_keep

__all__ = ["batched_nms", "multi_image_nms", "nms"]


def _check_inputs(boxes: Tensor, scores: Tensor, iou_threshold: float) -> None:
    check_boxes(boxes)
    check_vector(scores, boxes.shape[0], "scores")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")


def _check_indices(values: Tensor, length: int, name: str) -> None:
    check_vector(values, length, name)
    if values.is_floating_point() or values.is_complex():
        raise ValueError(f"{name} must be an integer tensor, got {values.dtype}")


def _sort_by_score(scores: Tensor) -> Tensor:
    """Indices by decreasing score, ties by lower index (sorting float32 keeps half ties)."""
    return torch.sort(compute_dtype(scores), descending=True, stable=True).indices


def _grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS with arbitrary int64 group ids; indices sorted by decreasing score."""
    order = _sort_by_score(scores)
    # A stable sort by group keeps the score order inside each group.
    order = order[torch.sort(groups[order], stable=True).indices]
    keep_sorted = greedy_keep(compute_dtype(boxes)[order], groups[order], float(iou_threshold))
    kept = torch.sort(order[keep_sorted]).values  # by index, so the next sort breaks ties by index
    return kept[_sort_by_score(scores[kept])]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression over one set of boxes.

    Args:
        boxes: Tensor[N, 4] xyxy.
        scores: Tensor[N].
        iou_threshold: a box is dropped when its IoU with a higher-scored kept box is
            greater than this (in [0, 1]; 1.0 keeps every box).
    Returns:
        int64 Tensor[K] of kept indices into `boxes`, by decreasing score (ties: lower index first).
    """
    _check_inputs(boxes, scores, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = _sort_by_score(scores)
    keep_sorted = greedy_keep(compute_dtype(boxes)[order], None, float(iou_threshold))
    return order[keep_sorted.to(order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS in one call: boxes only suppress boxes with the same label.

    Args:
        boxes: Tensor[N, 4] xyxy.
        scores: Tensor[N].
        labels: integer Tensor[N], any values (class ids).
        iou_threshold: IoU above which a lower-scored box of the same label is dropped.
    Returns:
        int64 Tensor[K] of kept indices into `boxes`, by decreasing score (ties: lower index first).
    """
    _check_inputs(boxes, scores, iou_threshold)
    _check_indices(labels, boxes.shape[0], "labels")
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return _grouped_nms(boxes, scores, labels.to(torch.int64), iou_threshold)


def multi_image_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    image_index: Tensor,
    iou_threshold: float,
    *,
    num_images: int,
    score_threshold: float = 0.0,
    max_det: int | None = 100,
    class_agnostic: bool = False,
) -> list[Tensor]:
    """NMS for a whole batch in one pass: per image and (unless class_agnostic) per class.

    Args:
        boxes: Tensor[K, 4] xyxy, the candidates of all images concatenated.
        scores: Tensor[K].
        labels: integer Tensor[K] class ids (ignored when class_agnostic).
        image_index: integer Tensor[K], the image each candidate belongs to, in [0, num_images).
        iou_threshold: IoU above which a lower-scored box of the same group is dropped.
        num_images: length of the returned list (images without detections get empty tensors).
        score_threshold: candidates with score < score_threshold are dropped first
            (0.0 keeps all non-negative scores).
        max_det: keep at most this many detections per image (highest scores); None for no cap.
        class_agnostic: if True, boxes of different classes suppress each other too.
    Returns:
        list of num_images int64 Tensors of indices into the inputs, each by decreasing
        score (ties: lower index first) and at most max_det long.
    """
    _check_inputs(boxes, scores, iou_threshold)
    _check_indices(labels, boxes.shape[0], "labels")
    _check_indices(image_index, boxes.shape[0], "image_index")
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if max_det is not None and max_det < 0:
        raise ValueError(f"max_det must be >= 0 or None, got {max_det}")
    device = boxes.device
    image_index = image_index.to(torch.int64)
    if image_index.numel() and (image_index.min() < 0 or image_index.max() >= num_images):
        raise ValueError(
            f"image_index must lie in [0, {num_images}), got values from "
            f"{int(image_index.min())} to {int(image_index.max())}"
        )

    candidates = torch.nonzero(compute_dtype(scores) >= score_threshold).squeeze(1)
    if candidates.numel() > 0:
        groups = image_index[candidates]
        if not class_agnostic:
            candidate_labels = labels[candidates].to(torch.int64)
            candidate_labels = candidate_labels - candidate_labels.min()
            num_labels = candidate_labels.max() + 1
            groups = groups * num_labels + candidate_labels
        kept = candidates[
            _grouped_nms(boxes[candidates], scores[candidates], groups, iou_threshold)
        ]
    else:
        kept = candidates

    # kept is by decreasing score; a stable sort by image keeps that order per image.
    kept = kept[torch.sort(image_index[kept], stable=True).indices]
    counts = torch.bincount(image_index[kept], minlength=num_images)
    if max_det is not None:
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(kept.numel(), device=device) - torch.repeat_interleave(starts, counts)
        kept = kept[rank < max_det]
        counts = counts.clamp(max=max_det)
    return list(torch.split(kept, counts.tolist()))
