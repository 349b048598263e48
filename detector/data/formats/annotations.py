"""Box checks and the clip/drop policy shared by the VOC, COCO and YOLO readers.

    boxes = check_boxes_xyxy(raw_boxes, where="Annotations/000005.xml")   # raises on NaN / x2<x1
    boxes, labels, ignore = clip_and_filter(boxes, labels, ignore, width=500, height=375,
                                            min_box_size=1.0, stats=stats)

Policy, identical for the three formats:

- A non-finite coordinate or an inverted box (x2 < x1 or y2 < y1) is an
  annotation error: `AnnotationError` (a `ValueError`) naming the file and the
  object. Never skipped. The three readers raise only this type for bad content.
- Boxes are clipped to the image (`0 <= x <= width`, `0 <= y <= height`); a box
  partly outside keeps its inside part.
- A box whose width or height after clipping is below `min_box_size` pixels, or
  is zero (a box entirely outside the image, a zero-size COCO box), is dropped
  together with its label and ignore flag. `ReadStats` counts both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class AnnotationError(ValueError):
    """Annotation content that cannot be read; the message starts with the file
    (and names the entry)."""


@dataclass
class ReadStats:
    """What the readers changed while applying the box policy (reported by `data check`)."""

    boxes_clipped: int = 0  # boxes that reached outside the image and were cut to it
    boxes_dropped: int = 0  # boxes under min_box_size (or zero-size) after clipping
    missing_label_files: int = 0  # YOLO images without a .txt (kept as negatives)
    size_mismatches: int = 0  # annotated size (VOC <size>, COCO width/height) != the image's

    def add(self, other: ReadStats) -> None:
        """Accumulate another reader's counts into this one."""
        self.boxes_clipped += other.boxes_clipped
        self.boxes_dropped += other.boxes_dropped
        self.missing_label_files += other.missing_label_files
        self.size_mismatches += other.size_mismatches


def check_boxes_xyxy(
    boxes: np.ndarray, where: str, object_names: list[str] | None = None
) -> np.ndarray:
    """Reject non-finite and inverted boxes.

    Args:
        boxes: [N, 4] xyxy (any numeric dtype).
        where: the annotation file (and more), put at the start of the error.
        object_names: optional per-box descriptions ("object 3", "line 7") for errors.

    Returns:
        float32 [N, 4], the same boxes.

    Raises:
        AnnotationError: naming `where` and the first bad box.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    for index in np.flatnonzero(~finite | inverted):
        name = object_names[index] if object_names else f"box {index}"
        what = "a non-finite coordinate" if not finite[index] else "x2 < x1 or y2 < y1"
        raise AnnotationError(f"{where}: {name} has {what}: {boxes[index].tolist()}")
    return boxes.astype(np.float32)


def clip_and_filter(
    boxes: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray,
    *,
    width: int,
    height: int,
    min_box_size: float,
    stats: ReadStats | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip boxes to the image and drop the ones too small to learn from.

    Args:
        boxes: float32 [N, 4] xyxy absolute pixels, already checked (finite, not inverted).
        labels: int64 [N]; ignore: bool [N] (kept aligned with the boxes).
        width, height: image size in pixels.
        min_box_size: minimum width and height in pixels after clipping; zero-size
            boxes are dropped whatever its value.
        stats: counts of clipped and dropped boxes are added here when given.

    Returns:
        (boxes float32 [M, 4], labels int64 [M], ignore bool [M]) with M <= N.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    clipped = boxes.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
    box_w = clipped[:, 2] - clipped[:, 0]
    box_h = clipped[:, 3] - clipped[:, 1]
    keep = (box_w >= min_box_size) & (box_h >= min_box_size) & (box_w > 0) & (box_h > 0)
    if stats is not None:
        changed = (clipped != boxes).any(axis=1)
        stats.boxes_clipped += int((changed & keep).sum())
        stats.boxes_dropped += int((~keep).sum())
    return clipped[keep], np.asarray(labels, np.int64)[keep], np.asarray(ignore, bool)[keep]
