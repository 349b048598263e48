"""Matching tracks to detections: IoU of box sets and gated optimal assignment.

    iou = box_iou_numpy(track_boxes, det_boxes)          # [T, D]
    pairs, free_tracks, free_dets = match(iou, min_iou=0.2)

The assignment maximises total IoU over the pairs allowed by the gate (IoU >=
`min_iou`), through `scipy.optimize.linear_sum_assignment` (Hungarian/JV); a
pair below the gate is never made, even when the solver would pair it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou_numpy(boxes_a: np.ndarray, boxes_b: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Pairwise IoU of xyxy boxes [N, 4] and [M, 4] -> [N, M] of `dtype`.

    Zero-area boxes have IoU 0 with everything (never NaN). The metrics use
    float64 (the same arithmetic as TrackEval); the tracker float32, which halves
    the memory traffic of the [N, M] temporaries at hundreds of boxes.
    """
    a = np.asarray(boxes_a, dtype).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype).reshape(-1, 4)
    # In-place steps: the same operations as the textbook formula, fewer temporaries.
    inter = np.minimum(a[:, None, 2], b[None, :, 2])
    inter -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(inter, 0, out=inter)
    height = np.minimum(a[:, None, 3], b[None, :, 3])
    height -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(height, 0, out=height)
    inter *= height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :]
    union -= inter
    positive = union > 0
    np.divide(inter, union, out=inter, where=positive)
    inter[~positive] = 0.0
    return inter


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
    row_degree, col_degree = allowed.sum(axis=1), allowed.sum(axis=0)
    # A pair that is the only allowed one of its row and of its column is a component
    # of its own: taken as is. Only the rest (boxes close to several others) goes to
    # the solver; at hundreds of boxes that keeps the problem small.
    alone_rows, alone_cols = np.nonzero(
        allowed & (row_degree[:, None] == 1) & (col_degree[None, :] == 1)
    )
    pairs = np.stack([alone_rows, alone_cols], axis=1).astype(np.int64)
    shared_rows = row_degree > 0
    shared_rows[alone_rows] = False
    shared_cols = col_degree > 0
    shared_cols[alone_cols] = False
    live_rows, live_cols = np.flatnonzero(shared_rows), np.flatnonzero(shared_cols)
    if len(live_rows) and len(live_cols):
        sub = iou[np.ix_(live_rows, live_cols)]
        cost = np.where(sub >= min_iou, 1.0 - sub, 2.0)  # 2.0: worse than any allowed pair
        rows, cols = linear_sum_assignment(cost)
        keep = sub[rows, cols] >= min_iou
        solved = np.stack([live_rows[rows[keep]], live_cols[cols[keep]]], axis=1).astype(np.int64)
        pairs = np.concatenate([pairs, solved])
    free_rows = np.ones(rows_n, bool)
    free_rows[pairs[:, 0]] = False
    free_cols = np.ones(cols_n, bool)
    free_cols[pairs[:, 1]] = False
    return pairs, np.flatnonzero(free_rows), np.flatnonzero(free_cols)


def duplicate_mask(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    owners_of: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Greedy class-agnostic suppression: True for boxes that overlap a higher-scored one.

    Args:
        boxes: [N, 4] xyxy. scores: [N].
        iou_threshold: IoU above which the lower-scored box is a duplicate.
        owners_of: given the indices [K] of the boxes that overlap another above the
            threshold, the track each continues (int [K], -1: none); two boxes that
            continue two different tracks never suppress each other. Asked only when
            some boxes overlap (the tracker's pairing costs a solve).

    Returns:
        bool [N], True = duplicate (suppressed).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou = box_iou_numpy(boxes[order], boxes[order], dtype=np.float32)
    np.fill_diagonal(iou, 0.0)
    over = iou > iou_threshold
    crowded = np.flatnonzero(over.any(axis=1))
    if owners_of is not None and len(crowded):
        own = np.full(len(order), -1, np.int64)
        own[crowded] = np.asarray(owners_of(order[crowded])).reshape(-1)
        over &= ~((own[:, None] >= 0) & (own[None, :] >= 0) & (own[:, None] != own[None, :]))
    suppressed = np.zeros(len(order), bool)
    # Only boxes that overlap another at all need the sequential pass.
    for index in crowded.tolist():
        if not suppressed[index]:
            later = over[index].copy()
            later[: index + 1] = False
            suppressed |= later
    out = np.zeros(len(order), bool)
    out[order] = suppressed
    return out
