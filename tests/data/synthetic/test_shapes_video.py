"""The synthetic tracking video: its ground truth is valid MOT text and holds every hard case."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.data.synthetic.shapes_video import ground_truth_path, write_shapes_video
from detector.tracking.association import box_iou_numpy
from detector.tracking.mot import read_mot

NAMES = ["circle", "square", "triangle", "star", "ring"]


def test_ground_truth_beside_the_video_has_crossings_occlusions_exits_and_speed_changes(
    tmp_path: Path,
) -> None:
    video = tmp_path / "clip.mp4"
    assert write_shapes_video(video, NAMES, width=320, height=240, frames=300, fps=30) == 300
    gt = read_mot(ground_truth_path(video))  # strict reader: valid MOT text
    assert ground_truth_path(video) == tmp_path / "clip.gt.txt"
    assert set(gt.ids.tolist()) == {1, 2, 3, 4, 5, 6} and gt.frames.max() == 300
    assert set(gt.classes.tolist()) <= set(range(1, len(NAMES) + 1))

    def boxes(track_id: int) -> dict[int, np.ndarray]:
        rows = gt.ids == track_id
        xywh = gt.boxes_xywh[rows]
        return dict(
            zip(
                gt.frames[rows].tolist(),
                np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                strict=True,
            )
        )

    one, two = boxes(1), boxes(2)
    overlap = max(box_iou_numpy(one[f][None], two[f][None])[0, 0] for f in one if f in two)
    assert overlap > 0.5  # 1 and 2 cross
    centre_x = {f: (b[0] + b[2]) / 2 for f, b in one.items()}
    assert centre_x[1] < 60 and centre_x[100] > 200  # ... head-on, from left to right
    gone = sorted(set(range(1, 301)) - set(boxes(3)))
    assert 8 <= len(gone) <= 25 and gone == list(
        range(gone[0], gone[-1] + 1)
    )  # leaves once, comes back
    hidden = gt.visibility[gt.ids == 4]
    assert (
        hidden.min() < 0.3 and (gt.marks[(gt.ids == 4) | (gt.ids == 1)] == 0).any()
    )  # occluded, then ignored
    assert ((gt.visibility < 0.25) == (gt.marks == 0)).all()
    speed = np.hypot(
        *np.diff(
            np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes(6).values()]), axis=0
        ).T
    )
    assert speed.max() - np.percentile(speed, 10) > 1.0  # speed changes

    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 300
