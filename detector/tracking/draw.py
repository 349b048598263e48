"""Draw tracks on a BGR frame: one colour per track id, "#id name score" tags and a short trail.

Usage:

    trails = Trails(length=30)
    trails.update(result)                 # after each frame's TrackedDetections
    draw_tracks(frame_bgr, result, trails)
"""

from __future__ import annotations

from collections import deque
from typing import Any

import cv2
import numpy as np

from detector.inference.draw import class_color, draw_tagged_box

UNTRACKED_COLOR = (160, 160, 160)


class Trails:
    """Recent box centres of each track (bottom-centre would suit people; shapes use the centre).

    Memory is bounded: `length` points per track, and tracks the tracker no longer
    holds are dropped by `prune`.
    """

    def __init__(self, length: int = 30) -> None:
        self.length = max(1, int(length))
        self.points: dict[int, deque[tuple[int, int]]] = {}

    def update(self, result: Any) -> None:
        for track_id, box in zip(result.track_ids.tolist(), result.boxes.tolist(), strict=True):
            if track_id < 1:
                continue
            trail = self.points.setdefault(track_id, deque(maxlen=self.length))
            trail.append((int(round((box[0] + box[2]) / 2)), int(round((box[1] + box[3]) / 2))))

    def prune(self, held_ids: np.ndarray) -> None:
        held = set(held_ids.tolist())
        for track_id in [i for i in self.points if i not in held]:
            del self.points[track_id]


def draw_tracks(
    image: np.ndarray, result: Any, trails: Trails | None = None, thickness: int | None = None
) -> np.ndarray:
    """Draw tracked boxes (id colour, "#id name score"), untracked ones thin grey, and trails;
    in place.

    Args:
        image: BGR uint8 [H, W, 3].
        result: `TrackedDetections` (boxes, scores, names, track_ids).
        trails: recent centres per id; None draws none.
        thickness: line width; default scales with the image size.
    """
    height, width = image.shape[:2]
    thickness = thickness or max(1, round(min(height, width) / 300))
    font_scale = max(0.35, min(height, width) / 900)
    if trails is not None:
        current = set(result.track_ids.tolist())
        for track_id, points in trails.points.items():
            if track_id in current and len(points) > 1:
                cv2.polylines(
                    image,
                    [np.array(points, np.int32)],
                    False,
                    class_color(track_id),
                    thickness,
                    cv2.LINE_AA,
                )
    for box, score, name, track_id in zip(
        result.boxes, result.scores, result.label_names, result.track_ids.tolist(), strict=True
    ):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        if track_id < 1:
            cv2.rectangle(image, (x1, y1), (x2, y2), UNTRACKED_COLOR, 1, cv2.LINE_AA)
            continue
        draw_tagged_box(
            image,
            box,
            f"#{track_id} {name} {float(score):.2f}",
            class_color(track_id),
            thickness,
            font_scale,
        )
    return image
