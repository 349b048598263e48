"""Soft-NMS (Bodla et al., 2017): decay the scores of overlapping boxes instead of dropping them.

    from detector.postprocess import soft_nms
    keep, new_scores = soft_nms(boxes, scores, method="gaussian", sigma=0.5)

Each step takes the remaining box with the highest (decayed) score, ties by lower
index, and multiplies the scores of the other remaining boxes by a weight of their
IoU with it; boxes whose score falls below score_threshold are dropped. The loop
runs once per kept box (each step is vectorised over the remaining boxes): soft-NMS
is an option for accuracy studies, not the default hot path.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from detector._postprocess.boxes import check_boxes, check_vector, compute_dtype
from detector._postprocess.iou import box_iou

__all__ = ["soft_nms"]


@torch.no_grad()
def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    method: Literal["linear", "gaussian"] = "gaussian",
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS over one set of boxes.

    Args:
        boxes: Tensor[N, 4] xyxy.
        scores: Tensor[N].
        method: "linear": weight ``1 - IoU`` where IoU > iou_threshold, else 1;
            "gaussian": weight ``exp(-IoU^2 / sigma)`` for every box (iou_threshold unused).
        iou_threshold: overlap above which the linear method decays a score.
        sigma: width of the Gaussian decay (> 0).
        score_threshold: boxes whose decayed score drops below this are discarded.
    Returns:
        (keep, new_scores): int64 Tensor[K] of indices into `boxes` in selection order
        (which is by non-increasing new score) and Tensor[K] of their decayed scores
        (float32 for half-precision scores, else the scores' dtype).
    """
    check_boxes(boxes)
    check_vector(scores, boxes.shape[0], "scores")
    if method not in ("linear", "gaussian"):
        raise ValueError(f"method must be 'linear' or 'gaussian', got {method!r}")
    if method == "gaussian" and sigma <= 0:
        raise ValueError(f"sigma must be > 0 for the gaussian method, got {sigma}")

    current = compute_dtype(scores).clone()  # decayed in place: never the caller's tensor
    remaining = torch.nonzero(current >= score_threshold).squeeze(1)  # ascending index
    boxes = compute_dtype(boxes)
    keep: list[Tensor] = []
    kept_scores: list[Tensor] = []
    while remaining.numel() > 0:
        best = int(torch.argmax(current[remaining]))  # first maximum: ties go to lower index
        chosen = remaining[best]
        keep.append(chosen.reshape(1))
        kept_scores.append(current[chosen].reshape(1))
        remaining = torch.cat((remaining[:best], remaining[best + 1 :]))
        if remaining.numel() == 0:
            break
        iou = box_iou(boxes[chosen].reshape(1, 4), boxes[remaining])[0].to(current.dtype)
        if method == "linear":
            weight = torch.where(iou > iou_threshold, 1 - iou, torch.ones_like(iou))
        else:
            weight = torch.exp(-(iou * iou) / sigma)
        current[remaining] = current[remaining] * weight
        remaining = remaining[current[remaining] >= score_threshold]
    if not keep:
        return torch.empty(0, dtype=torch.int64, device=scores.device), current[:0]
    return torch.cat(keep), torch.cat(kept_scores)
