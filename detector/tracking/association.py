"""Matching tracks to detections: IoU of box sets and gated optimal assignment.

    iou = box_iou_numpy(track_boxes, det_boxes)          # [T, D]
    pairs, free_tracks, free_dets = match(iou, min_iou=0.2)

The assignment maximises total IoU over the pairs allowed by the gate (IoU >=
`min_iou`), through `scipy.optimize.linear_sum_assignment` (Hungarian/JV); a
pair below the gate is never made, even when the solver would pair it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou_numpy(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes [N, 4] and [M, 4] -> [N, M] float64.

    Zero-area boxes have IoU 0 with everything (never NaN).
    """
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match(iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one pairing of rows (tracks) and columns (detections).

    Args:
        iou: [T, D] similarity; pairs below `min_iou` are forbidden.
        min_iou: the gate.

    Returns:
        pairs int64 [P, 2] (row, column), unmatched rows int64 [T - P],
        unmatched columns int64 [D - P].
    """
    rows_n, cols_n = iou.shape
    if rows_n == 0 or cols_n == 0:
        return np.zeros((0, 2), np.int64), np.arange(rows_n), np.arange(cols_n)
    allowed = iou >= min_iou
    # Only rows and columns with at least one allowed pair enter the solver: at 500
    # boxes most are far apart and this keeps the problem small.
    live_rows = np.flatnonzero(allowed.any(axis=1))
    live_cols = np.flatnonzero(allowed.any(axis=0))
    pairs = np.zeros((0, 2), np.int64)
    if len(live_rows) and len(live_cols):
        sub = iou[np.ix_(live_rows, live_cols)]
        cost = np.where(sub >= min_iou, 1.0 - sub, 2.0)  # 2.0: worse than any allowed pair
        rows, cols = linear_sum_assignment(cost)
        keep = sub[rows, cols] >= min_iou
        pairs = np.stack([live_rows[rows[keep]], live_cols[cols[keep]]], axis=1).astype(np.int64)
    free_rows = np.ones(rows_n, bool)
    free_rows[pairs[:, 0]] = False
    free_cols = np.ones(cols_n, bool)
    free_cols[pairs[:, 1]] = False
    return pairs, np.flatnonzero(free_rows), np.flatnonzero(free_cols)
