"""VOC AP50: hand-computed cases (area and 11-point), difficult handling, and a
devkit-style loop as the slow reference for the vectorised matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.data.record import SampleRecord
from detector.evaluation.voc_metric import voc_ap, voc_ap_per_class
from detector.postprocess import box_iou


def _pred(boxes, scores, labels):
    return {
        "boxes": np.asarray(boxes, float).reshape(-1, 4),
        "scores": np.asarray(scores, float),
        "labels": np.asarray(labels, int),
    }


# Three true boxes of class 0, far apart; detections in descending score:
# 0.9 hits g1, 0.8 hits nothing, 0.7 hits g2, 0.6 duplicates g1.
GT = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
DETS = _pred(
    [[0, 0, 10, 9], [60, 60, 70, 70], [20, 20, 30, 29], [1, 0, 10, 10]],
    [0.9, 0.8, 0.7, 0.6],
    [0, 0, 0, 0],
)


def test_hand_computed_area_and_11point():
    record = SampleRecord("a.jpg", 100, 100, GT, [0, 0, 0], [False] * 3, image_id=1)
    # recall 1/3 1/3 2/3 2/3, precision 1 1/2 2/3 1/2
    # area: envelope 1 up to recall 1/3, 2/3 up to 2/3, then 0 -> 1/3 + 2/9 = 5/9
    assert voc_ap_per_class([record], {1: DETS}, 1)[0] == pytest.approx(5 / 9)
    # 11-point: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t >= .7 -> 0  => 6/11
    assert voc_ap_per_class([record], {1: DETS}, 1, use_11point=True)[0] == pytest.approx(6 / 11)


def test_voc_ap_curve_definitions():
    recall = np.array([0.2, 0.4, 0.4, 0.8])
    precision = np.array([1.0, 0.5, 0.4, 0.6])
    # envelope: 1 on (0, .2], .6 on (.2, .8], 0 after -> .2 + .6 * .6
    assert voc_ap(recall, precision) == pytest.approx(0.2 + 0.36)
    # 11-point: t=0,.1,.2 -> 1; t=.3..0.8 -> .6 (6 points); t=.9, 1 -> 0
    assert voc_ap(recall, precision, use_11point=True) == pytest.approx((3 + 6 * 0.6) / 11)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), use_11point=True) == 0.0


def test_11point_thresholds_are_exact_tenths():
    """Recall exactly 0.3 reaches the 0.3 point (the devkit's arange gives 0.30000000000000004)."""
    record = SampleRecord(
        "a.jpg",
        1000,
        100,
        [[100 * i, 0, 100 * i + 50, 50] for i in range(10)],
        [0] * 10,
        [False] * 10,
        image_id=1,
    )
    dets = _pred(record.boxes[:3], [0.9, 0.8, 0.7], [0, 0, 0])
    assert voc_ap_per_class([record], {1: dets}, 1, use_11point=True)[0] == pytest.approx(4 / 11)
    assert voc_ap_per_class([record], {1: dets}, 1)[0] == pytest.approx(0.3)


def test_difficult_boxes_are_neither_positive_nor_negative():
    # g4 is difficult: a detection on it (even the best-scored one) changes nothing
    record = SampleRecord(
        "a.jpg", 100, 100, GT + [[80, 80, 95, 95]], [0] * 4, [False, False, False, True], image_id=1
    )
    dets = _pred(
        np.concatenate([[[80, 80, 95, 95]], DETS["boxes"]]), [0.95, *DETS["scores"]], [0] * 5
    )
    assert voc_ap_per_class([record], {1: dets}, 1)[0] == pytest.approx(5 / 9)
    # but a detection whose best box is difficult with IoU <= 0.5 is a false positive
    low = _pred(
        np.concatenate([[[80, 80, 95, 86]], DETS["boxes"]]), [0.95, *DETS["scores"]], [0] * 5
    )
    # recall 0 1/3 1/3 2/3 2/3 precision 0 1/2 1/3 1/2 2/5 -> 1/3 * 1/2 + 1/3 * 1/2
    assert voc_ap_per_class([record], {1: low}, 1)[0] == pytest.approx(1 / 3)
    only_difficult = SampleRecord("b.jpg", 100, 100, [[0, 0, 10, 10]], [0], [True], image_id=2)
    assert np.isnan(
        voc_ap_per_class([only_difficult], {2: _pred([[0, 0, 10, 10]], [1.0], [0])}, 1)[0]
    )


def test_iou_must_exceed_half_strictly_and_classes_do_not_mix():
    record = SampleRecord("a.jpg", 100, 100, [[0, 0, 10, 10]], [0], [False], image_id=1)
    half = _pred([[0, 0, 10, 5]], [0.9], [0])  # IoU exactly 0.5
    assert (
        box_iou(torch.from_numpy(half["boxes"]), torch.from_numpy(record.boxes).double())[0, 0]
        == 0.5
    )
    assert voc_ap_per_class([record], {1: half}, 1)[0] == 0.0
    wrong_class = _pred([[0, 0, 10, 10]], [0.9], [1])
    aps = voc_ap_per_class([record], {1: wrong_class}, 2)
    assert aps[0] == 0.0 and np.isnan(aps[1])
    assert voc_ap_per_class([record], {}, 1)[0] == 0.0  # no detections at all


def reference_voc_ap(records, predictions, label, use_11point):
    """The devkit's voc_eval loop, on continuous coordinates (no +1)."""
    gts = {
        r.image_id: {
            "boxes": r.boxes[r.labels == label],
            "difficult": r.ignore[r.labels == label],
            "taken": np.zeros(int((r.labels == label).sum()), bool),
        }
        for r in records
    }
    npos = sum(int((~g["difficult"]).sum()) for g in gts.values())
    dets = [
        (s, image_id, b)
        for image_id, p in predictions.items()
        for b, s, lab in zip(p["boxes"], p["scores"], p["labels"], strict=True)
        if lab == label
    ]
    dets.sort(key=lambda d: -d[0])  # stable, like the vectorised version
    tp, fp = [], []
    for _, image_id, box in dets:
        g = gts[image_id]
        best, best_iou = -1, -np.inf
        for j, gt_box in enumerate(g["boxes"]):
            ix = max(0.0, min(box[2], gt_box[2]) - max(box[0], gt_box[0]))
            iy = max(0.0, min(box[3], gt_box[3]) - max(box[1], gt_box[1]))
            union = (
                (box[2] - box[0]) * (box[3] - box[1])
                + (gt_box[2] - gt_box[0]) * (gt_box[3] - gt_box[1])
                - ix * iy
            )
            iou = ix * iy / union
            if iou > best_iou:
                best, best_iou = j, iou
        if best_iou > 0.5:
            if g["difficult"][best]:
                tp.append(0), fp.append(0)
            elif not g["taken"][best]:
                g["taken"][best] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
    if use_11point:
        return sum(max(precision[recall >= t / 10], default=0.0) for t in range(11)) / 11
    mrec, mpre = [0.0, *recall, 1.0], [0.0, *precision, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum(
        (mrec[i + 1] - mrec[i]) * mpre[i + 1]
        for i in range(len(mrec) - 1)
        if mrec[i + 1] != mrec[i]
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_11point", [False, True])
def test_vectorised_equals_devkit_loop(seed, use_11point):
    rng = np.random.default_rng(seed)
    records, predictions = [], {}
    for i in range(12):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (n, 2))], 1)
        records.append(
            SampleRecord(
                f"{i}.jpg", 120, 120, boxes, rng.integers(0, 3, n), rng.random(n) < 0.2, image_id=i
            )
        )
        k = int(rng.integers(0, 8))
        src = boxes[rng.integers(0, n, k)] if n else rng.uniform(0, 60, (k, 4))
        pred_boxes = src + rng.normal(0, 3, (k, 4))
        pred_boxes[:, 2:] = np.maximum(pred_boxes[:, 2:], pred_boxes[:, :2] + 1)
        predictions[i] = {
            "boxes": pred_boxes,
            "scores": rng.random(k).round(1),  # ties included
            "labels": rng.integers(0, 3, k),
        }
    aps = voc_ap_per_class(records, predictions, 3, use_11point=use_11point)
    for label in range(3):
        has_positives = any(((r.labels == label) & ~r.ignore).any() for r in records)
        if not has_positives:
            assert np.isnan(aps[label])
            continue
        assert aps[label] == pytest.approx(
            reference_voc_ap(records, predictions, label, use_11point), abs=1e-12
        )
