"""Raw grid predictions -> per-image detections (boxes, scores, labels).

    dets = decode_detections(raw, strides=(8, 16, 32), input_size=(192, 192),
                             score_threshold=0.001, iou_threshold=0.6, max_det=100)
    dets[0]["boxes"]   # float32 [K, 4] xyxy network-input pixels

Each (cell, class) pair is a candidate with score = sigmoid(objectness) *
sigmoid(class logit), so one cell can report several classes (better recall for
COCO-style AP). `decode_boxes_scores` computes the dense boxes and scores
(exactly what an exported graph outputs); `select_detections` does the rest: the
`pre_nms_topk` best candidates per image, taken for the whole batch at once, at
or above `score_threshold` go through class-aware NMS for all images in one call
(`detector.postprocess.multi_image_nms`; class-agnostic on request), and the
`max_det` best survivors are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detector.model.head import decode_boxes, make_grid, square_size_from_anchors
from detector.postprocess import multi_image_nms


def decode_boxes_scores(
    raw: torch.Tensor,
    *,
    strides: tuple[int, ...] | list[int],
    input_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense half of decoding: every cell's box and every (cell, class) score.

    This is what an exported graph computes after the network (see
    detector/export/graph.py), so both inference backends hand the same two
    tensors to `select_detections`.

    Args:
        raw: [B, A, 4 + 1 + C] model output.
        strides: the model's strides.
        input_size: (height, width) of the network input; inferred from A if square.

    Returns:
        boxes float32 [B, A, 4] xyxy input px, scores float32 [B, A, C] =
        sigmoid(objectness) * sigmoid(class logit).

    Raises:
        ValueError: `raw` of the wrong shape.
    """
    if raw.dim() != 3 or raw.shape[-1] < 6:
        raise ValueError(f"raw must be [B, A, 4 + 1 + C] with C >= 1, got {list(raw.shape)}")
    num_anchors = raw.shape[1]
    if input_size is None:
        side = square_size_from_anchors(num_anchors, strides)
        input_size = (side, side)
    raw = raw.detach().float()
    centers, anchor_strides = make_grid(*input_size, strides, device=raw.device)
    boxes = decode_boxes(raw[..., :4], centers, anchor_strides)  # [B, A, 4]
    scores = raw[..., 4:5].sigmoid() * raw[..., 5:].sigmoid()  # [B, A, C]
    return boxes, scores


def select_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    *,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_det: int = 100,
    class_agnostic: bool = False,
    pre_nms_topk: int = 1000,
    classes: Sequence[int] | torch.Tensor | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The sparse half of decoding: top-k candidates, class filter, NMS, `max_det`.

    Args:
        boxes: float [B, A, 4] xyxy input px (from `decode_boxes_scores` or an
            exported graph).
        scores: float [B, A, C] per (cell, class) probabilities.
        score_threshold, iou_threshold, max_det, class_agnostic, pre_nms_topk,
            classes: as in `decode_detections`.

    Returns:
        B dicts {boxes float32 [K, 4], scores float32 [K] (descending), labels int64 [K]}.

    Raises:
        ValueError: mismatched shapes, or a class index outside 0..C-1.
    """
    if (
        boxes.dim() != 3
        or boxes.shape[-1] != 4
        or scores.dim() != 3
        or scores.shape[:2] != boxes.shape[:2]
    ):
        raise ValueError(
            f"boxes must be [B, A, 4] and scores [B, A, C], "
            f"got {list(boxes.shape)} and {list(scores.shape)}"
        )
    batch, num_anchors, num_classes = scores.shape
    boxes, scores = boxes.float(), scores.float()
    class_ids = None
    if classes is not None:
        class_ids = torch.as_tensor(classes, dtype=torch.long, device=scores.device).unique()
        if (
            class_ids.numel()
            and not 0 <= int(class_ids.min()) <= int(class_ids.max()) < num_classes
        ):
            raise ValueError(
                f"classes {class_ids.tolist()}: indices must be in 0..{num_classes - 1}"
            )
        scores = scores.index_select(-1, class_ids)  # [B, A, C'] (C' = len(classes))
    choices = scores.shape[-1]

    k = min(pre_nms_topk, num_anchors * choices)
    top_scores, top_index = scores.flatten(1).topk(k, dim=1)  # [B, k], sorted descending
    top_boxes = boxes.gather(1, (top_index // choices).unsqueeze(-1).expand(batch, k, 4))
    top_labels = top_index % choices
    if class_ids is not None:
        top_labels = class_ids[top_labels]

    image_index = torch.arange(batch, device=scores.device).repeat_interleave(k)
    flat_boxes, flat_scores, flat_labels = (
        top_boxes.reshape(-1, 4),
        top_scores.reshape(-1),
        top_labels.reshape(-1),
    )
    kept_per_image = multi_image_nms(
        flat_boxes,
        flat_scores,
        flat_labels,
        image_index,
        iou_threshold,
        num_images=batch,
        score_threshold=score_threshold,
        max_det=max_det,
        class_agnostic=class_agnostic,
    )
    return [
        {"boxes": flat_boxes[kept], "scores": flat_scores[kept], "labels": flat_labels[kept]}
        for kept in kept_per_image
    ]


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
    """Decode and suppress raw predictions (`decode_boxes_scores` then `select_detections`).

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
    boxes, scores = decode_boxes_scores(raw, strides=strides, input_size=input_size)
    return select_detections(
        boxes,
        scores,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_det=max_det,
        class_agnostic=class_agnostic,
        pre_nms_topk=pre_nms_topk,
        classes=classes,
    )
