"""One sequence's ground truth and predictions, frame by frame, ready for the metrics.

    data = sequence_data(read_mot("gt.txt"), read_mot("pred.txt"), num_frames=None)

Ground-truth rows marked 0 (column 7) are dropped, as MOTChallenge does for
ignored objects; evaluation is class-agnostic (every remaining box counts,
whatever its class). Ids are relabelled to 0..K-1 in increasing id order and
boxes keep their file order within a frame, so the matching (and its tie
breaks) is the same as TrackEval's MOTChallenge reader on the same files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.tracking.association import box_iou_numpy
from detector.tracking.mot import MotFormatError, MotRows


@dataclass
class SequenceData:
    """Per-frame ids and similarities of one sequence.

    Attributes:
        name: the sequence name.
        num_frames: frames 1..num_frames are evaluated.
        gt_ids, pred_ids: per frame, int64 [G_t] / [P_t] ids relabelled to 0..K-1.
        similarity: per frame, float64 [G_t, P_t] box IoU.
        num_gt_ids, num_pred_ids: distinct ids.
        num_gt_dets, num_pred_dets: boxes over the sequence.
    """

    name: str
    num_frames: int
    gt_ids: list[np.ndarray]
    pred_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    num_gt_ids: int
    num_pred_ids: int
    num_gt_dets: int
    num_pred_dets: int


def _per_frame(
    rows: MotRows, keep: np.ndarray, num_frames: int
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Split kept rows by frame (file order inside a frame); ids relabelled 0..K-1."""
    frames, ids, boxes = rows.frames[keep], rows.ids[keep], rows.boxes_xywh[keep]
    unique_ids, relabelled = np.unique(ids, return_inverse=True)
    order = np.argsort(frames, kind="stable")  # stable: file order within each frame
    bounds = np.searchsorted(frames[order], np.arange(1, num_frames + 2))
    per_ids, per_boxes = [], []
    for frame in range(num_frames):
        index = order[bounds[frame] : bounds[frame + 1]]
        per_ids.append(relabelled[index].astype(np.int64))
        xywh = boxes[index]
        per_boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
    return per_ids, per_boxes, len(unique_ids)


def sequence_data(
    gt: MotRows, pred: MotRows, num_frames: int | None = None, name: str = ""
) -> SequenceData:
    """Check frame ranges and build a SequenceData.

    Args:
        gt: ground-truth rows (mark 0 rows are ignored).
        pred: predicted rows.
        num_frames: sequence length; None takes the ground truth's last frame.
        name: sequence name for messages and tables.

    Raises:
        MotFormatError: a prediction on a frame outside 1..num_frames (naming file and line).
    """
    if num_frames is None:
        num_frames = int(gt.frames.max()) if len(gt) else int(pred.frames.max()) if len(pred) else 0
    for rows in (gt, pred):
        outside = np.flatnonzero(rows.frames > num_frames)
        if len(outside):
            first = int(outside[0])
            raise MotFormatError(
                f"{rows.path}:{int(rows.lines[first])}: "
                f"frame {int(rows.frames[first])} is past the "
                f"sequence's last frame {num_frames} (the ground truth's last frame, or --frames)"
            )
    gt_ids, gt_boxes, num_gt_ids = _per_frame(gt, gt.marks != 0, num_frames)
    pred_ids, pred_boxes, num_pred_ids = _per_frame(pred, np.ones(len(pred), bool), num_frames)
    similarity = [box_iou_numpy(g, p) for g, p in zip(gt_boxes, pred_boxes, strict=True)]
    return SequenceData(
        name=name,
        num_frames=num_frames,
        gt_ids=gt_ids,
        pred_ids=pred_ids,
        similarity=similarity,
        num_gt_ids=num_gt_ids,
        num_pred_ids=num_pred_ids,
        num_gt_dets=sum(len(i) for i in gt_ids),
        num_pred_dets=sum(len(i) for i in pred_ids),
    )
