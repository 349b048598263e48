"""Soft-NMS against a slow, readable reference loop and hand-computed decays.

.venv/bin/python -m pytest tests/test_postprocess_soft_nms.py -q
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.nms import clustered_boxes
from detector.postprocess import soft_nms


def ref_iou(a: list[float], b: list[float]) -> float:
    def area(box: list[float]) -> float:
        return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)

    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(
        min(a[3], b[3]) - max(a[1], b[1]), 0.0
    )
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def reference_soft_nms(boxes, scores, method, iou_threshold, sigma, score_threshold):
    box_list, current = boxes.double().tolist(), scores.double().tolist()
    remaining = [i for i in range(len(current)) if current[i] >= score_threshold]
    keep, kept_scores = [], []
    while remaining:
        best = max(remaining, key=lambda i: (current[i], -i))  # highest score, then lowest index
        keep.append(best)
        kept_scores.append(current[best])
        remaining.remove(best)
        for i in remaining:
            iou = ref_iou(box_list[best], box_list[i])
            if method == "linear":
                current[i] *= 1 - iou if iou > iou_threshold else 1.0
            else:
                current[i] *= math.exp(-iou * iou / sigma)
        remaining = [i for i in remaining if current[i] >= score_threshold]
    return keep, kept_scores


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("seed", range(4))
def test_soft_nms_matches_reference_loop(seed: int, method: str) -> None:
    generator = torch.Generator().manual_seed(seed)
    boxes, scores, _ = clustered_boxes(60, num_objects=4, image_size=300.0, generator=generator)
    if seed % 2:
        scores = (scores * 10).round() / 10  # ties: the lower index is taken first
    options = dict(method=method, iou_threshold=0.3, sigma=0.5, score_threshold=0.05)
    expected_keep, expected_scores = reference_soft_nms(boxes, scores, **options)
    keep, new_scores = soft_nms(boxes.double(), scores.double(), **options)
    assert keep.dtype == torch.int64 and keep.tolist() == expected_keep
    torch.testing.assert_close(
        new_scores, torch.tensor(expected_scores, dtype=torch.float64), rtol=0, atol=1e-12
    )
    keep32, scores32 = soft_nms(boxes, scores, **options)
    assert torch.equal(keep32, keep) and scores32.dtype == torch.float32
    assert (new_scores[1:] <= new_scores[:-1]).all()  # selection order is by decayed score


def test_soft_nms_hand_computed() -> None:
    boxes = torch.tensor([[0.0, 0.0, 4.0, 1.0], [0.0, 0.0, 2.0, 1.0], [10.0, 10.0, 11.0, 11.0]])
    scores = torch.tensor([0.9, 0.8, 0.3])
    keep, new_scores = soft_nms(boxes, scores, method="linear", iou_threshold=0.3)
    assert keep.tolist() == [0, 1, 2]  # 0.8 * (1 - 0.5) = 0.4 still beats 0.3
    torch.testing.assert_close(new_scores, torch.tensor([0.9, 0.4, 0.3]))
    keep, new_scores = soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    torch.testing.assert_close(new_scores[1], torch.tensor(0.8 * math.exp(-0.25 / 0.5)))
