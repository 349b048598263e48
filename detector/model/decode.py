"""Raw grid predictions -> per-image detections (boxes, scores, labels).

    dets = decode_detections(raw, strides=(8, 16, 32), input_size=(192, 192),
                             score_threshold=0.001, iou_threshold=0.6, max_det=100)
    dets[0]["boxes"]   # float32 [K, 4] xyxy network-input pixels

Each (cell, class) pair is a candidate with score = sigmoid(objectness) *
sigmoid(class logit), so one cell can report several classes (better recall for
COCO-style AP). The `pre_nms_topk` best candidates per image, taken for the
whole batch at once, at or above `score_threshold` go through class-aware NMS
for all images in one call (`detector.postprocess.multi_image_nms`;
class-agnostic on request), and the `max_det` best survivors are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detector.model.head import decode_boxes, make_grid, square_size_from_anchors
from detector.postprocess import multi_image_nms


def decode_detections(
    raw: torch.Tensor,
    *,
    strides: tuple[int, ...] | list[int],
    input_size: tuple[int, int] | None = None,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_det: int = 100,
    class_agnostic: bool = False,
    pre_nms_topk: int = 1000,
    classes: Sequence[int] | torch.Tensor | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Decode and suppress raw predictions.

    Args:
        raw: [B, A, 4 + 1 + C] model output.
        strides: the model's strides.
        input_size: (height, width) of the network input; inferred from A if square.
        score_threshold: minimum obj * class probability (kept when >=).
        iou_threshold: NMS IoU threshold.
        max_det: detections kept per image.
        class_agnostic: suppress across classes too.
        pre_nms_topk: candidates per image entering NMS.
        classes: keep only these class indices; applied before the top-k and NMS, so
            `max_det` and `pre_nms_topk` are spent on these classes alone. None: all.

    Returns:
        B dicts {boxes float32 [K, 4] xyxy input px, scores float32 [K] (descending),
        labels int64 [K]}, K <= max_det.

    Raises:
        ValueError: `raw` of the wrong shape, or a class index outside 0..C-1.
    """
    if raw.dim() != 3 or raw.shape[-1] < 6:
        raise ValueError(f"raw must be [B, A, 4 + 1 + C] with C >= 1, got {list(raw.shape)}")
    batch, num_anchors, channels = raw.shape
    num_classes = channels - 5
    if input_size is None:
        side = square_size_from_anchors(num_anchors, strides)
        input_size = (side, side)
    raw = raw.detach().float()
    centers, anchor_strides = make_grid(*input_size, strides, device=raw.device)
    boxes = decode_boxes(raw[..., :4], centers, anchor_strides)  # [B, A, 4]
    class_logits = raw[..., 5:]
    class_ids = None
    if classes is not None:
        class_ids = torch.as_tensor(classes, dtype=torch.long, device=raw.device).unique()
        if class_ids.numel() and not 0 <= int(class_ids.min()) <= int(class_ids.max()) < num_classes:
            raise ValueError(f"classes {class_ids.tolist()}: indices must be in 0..{num_classes - 1}")
        class_logits = class_logits.index_select(-1, class_ids)
    scores = raw[..., 4:5].sigmoid() * class_logits.sigmoid()  # [B, A, C'] (C' = len(classes) or C)
    choices = scores.shape[-1]

    k = min(pre_nms_topk, num_anchors * choices)
    top_scores, top_index = scores.flatten(1).topk(k, dim=1)  # [B, k], sorted descending
    top_boxes = boxes.gather(1, (top_index // choices).unsqueeze(-1).expand(batch, k, 4))
    top_labels = top_index % choices
    if class_ids is not None:
        top_labels = class_ids[top_labels]

    image_index = torch.arange(batch, device=raw.device).repeat_interleave(k)
    flat_boxes, flat_scores, flat_labels = top_boxes.reshape(-1, 4), top_scores.reshape(-1), top_labels.reshape(-1)
    kept_per_image = multi_image_nms(
        flat_boxes, flat_scores, flat_labels, image_index, iou_threshold, num_images=batch,
        score_threshold=score_threshold, max_det=max_det, class_agnostic=class_agnostic,
    )
    return [
        {"boxes": flat_boxes[kept], "scores": flat_scores[kept], "labels": flat_labels[kept]}
        for kept in kept_per_image
    ]
