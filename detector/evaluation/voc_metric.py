"""PASCAL VOC AP50 per class: the VOC2007 11-point and the VOC2010+ area definitions.

    from detector.evaluation.voc_metric import voc_ap_per_class
    aps = voc_ap_per_class(records, predictions, num_classes=20, use_11point=True)  # [C]

Matching follows the VOC devkit: per class, detections are taken in descending
score order; each is compared with every ground-truth box of its class in its
image and assigned to the one of highest IoU (even if that one is already taken).
IoU > 0.5 (strictly) with a box not yet taken is a true positive; with a box already
taken, or at most 0.5, a false positive. A detection assigned to a *difficult* box
(`record.ignore`) is neither, and difficult boxes do not count as positives.

Differences from the devkit, stated: boxes are 0-based continuous xyxy, so IoU
needs no "+1" (the readers already turned VOC's inclusive pixel indices into
continuous coordinates, which gives the same widths); equal scores keep their
input order (a stable sort); the 11 recall points are exactly k/10 (the devkit's
`np.arange(0, 1.1, 0.1)` makes 0.30000000000000004 of 0.3). A class without
non-difficult ground truth has AP NaN and is left out of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detector.data.record import SampleRecord


def box_iou_arrays(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """`detector.postprocess.box_iou` on numpy xyxy boxes [N, 4] x [M, 4] -> float64 [N, M].

    torch loads only when this runs.
    """
    import torch

    from detector.postprocess import box_iou

    first = torch.from_numpy(np.asarray(boxes1, np.float64).reshape(-1, 4))
    second = torch.from_numpy(np.asarray(boxes2, np.float64).reshape(-1, 4))
    return box_iou(first, second).numpy()


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, use_11point: bool = False) -> float:
    """Average precision from a recall/precision curve (detections in score order).

    Args:
        recall, precision: [D] cumulative values after each detection.
        use_11point: VOC2007: mean over recall thresholds 0, 0.1, ..., 1 of the highest
            precision at recall >= threshold (0 where the curve never gets there).
            Otherwise VOC2010+: the area under the curve made monotonically decreasing.
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if use_11point:
        thresholds = np.arange(11) / 10.0
        reached = recall[None, :] >= thresholds[:, None]  # [11, D]
        best = np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0)
        return float(best.mean())
    # Sentinels: the curve starts at recall 0 and ends at recall 1 with precision 0.
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope (max to the right)
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _assign_detections(
    records: Sequence[SampleRecord], predictions: Mapping[int, Mapping[str, Any]]
) -> dict[str, np.ndarray]:
    """Every detection with its best same-class ground-truth box (the devkit's argmax).

    Returns flat arrays over all detections: score, label, best_iou (-1 when the image
    has no box of that class), gt_index (a global index over all records' boxes, -1
    when none) and gt_difficult.
    """
    columns: dict[str, list[np.ndarray]] = {
        k: [] for k in ("score", "label", "best_iou", "gt_index", "gt_difficult")
    }
    offset = 0
    for record in records:
        pred = predictions.get(record.image_id)
        num_gt = len(record.boxes)
        if pred is not None and len(pred["scores"]):
            boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)
            labels = np.asarray(pred["labels"], np.int64).reshape(-1)
            iou = box_iou_arrays(boxes, record.boxes)  # [D, G]
            same_class = labels[:, None] == record.labels[None, :]
            iou = np.where(same_class, iou, -1.0)  # only boxes of the detection's class compete
            if num_gt:
                best = iou.argmax(axis=1)
                best_iou = iou[np.arange(len(boxes)), best]
            else:
                best = np.zeros(len(boxes), np.int64)
                best_iou = np.full(len(boxes), -1.0)
            has_gt = best_iou >= 0
            columns["score"].append(np.asarray(pred["scores"], np.float64).reshape(-1))
            columns["label"].append(labels)
            columns["best_iou"].append(best_iou)
            columns["gt_index"].append(np.where(has_gt, best + offset, -1))
            columns["gt_difficult"].append(
                has_gt & record.ignore[best] if num_gt else np.zeros(len(boxes), bool)
            )
        offset += num_gt
    dtypes = {
        "score": np.float64,
        "label": np.int64,
        "best_iou": np.float64,
        "gt_index": np.int64,
        "gt_difficult": bool,
    }
    return {
        k: np.concatenate(v).astype(dtypes[k]) if v else np.zeros(0, dtypes[k])
        for k, v in columns.items()
    }


def voc_ap_per_class(
    records: Sequence[SampleRecord],
    predictions: Mapping[int, Mapping[str, Any]],
    num_classes: int,
    *,
    iou_threshold: float = 0.5,
    use_11point: bool = False,
) -> np.ndarray:
    """VOC AP per class.

    Args:
        records: ground truth; `ignore` marks difficult boxes.
        predictions: image_id -> {"boxes" [K, 4] xyxy, "scores" [K], "labels" [K]}.
        num_classes: C.
        iou_threshold: a detection needs IoU strictly above this.
        use_11point: VOC2007 11-point AP instead of the area under the curve.

    Returns:
        float64 [C]; NaN for classes without non-difficult ground truth.
    """
    dets = _assign_detections(records, predictions)
    gt_labels = np.concatenate([r.labels for r in records]) if records else np.zeros(0, np.int64)
    gt_difficult = np.concatenate([r.ignore for r in records]) if records else np.zeros(0, bool)
    aps = np.full(num_classes, np.nan)
    for label in range(num_classes):
        num_positives = int(np.sum((gt_labels == label) & ~gt_difficult))
        if num_positives == 0:
            continue
        in_class = np.flatnonzero(dets["label"] == label)
        order = in_class[np.argsort(-dets["score"][in_class], kind="stable")]
        overlaps = dets["best_iou"][order] > iou_threshold
        difficult = overlaps & dets["gt_difficult"][order]
        order, overlaps = order[~difficult], overlaps[~difficult]  # neither TP nor FP
        # The first detection (in score order) over a box takes it; later ones are duplicates.
        true_positive = np.zeros(len(order), bool)
        candidates = np.flatnonzero(overlaps)
        _, first = np.unique(dets["gt_index"][order[candidates]], return_index=True)
        true_positive[candidates[first]] = True
        tp = np.cumsum(true_positive)
        fp = np.cumsum(~true_positive)
        recall = tp / num_positives
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps[label] = voc_ap(recall, precision, use_11point=use_11point)
    return aps
