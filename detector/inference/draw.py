"""Draw detections on a BGR image (in place) with one stable colour per class.

Usage:

    draw_detections(frame_bgr, result)   # result: detections.Detections
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from typing import Any

import cv2
import numpy as np


@lru_cache(maxsize=1024)
def class_color(label: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour for a class index (golden-ratio hue steps)."""
    hue = (label * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(blue * 255), int(green * 255), int(red * 255)


def draw_detections(image: np.ndarray, detections: Any, thickness: int | None = None) -> np.ndarray:
    """Draw boxes and "name score" tags on `image` (BGR uint8 [H, W, 3]), in place.

    Args:
        image: the frame to draw on; modified and returned.
        detections: anything with `boxes` [K, 4] xyxy px, `scores` [K], `labels` [K], `names` [K].
        thickness: line width; default scales with the image size.

    Returns:
        `image`.
    """
    height, width = image.shape[:2]
    thickness = thickness or max(1, round(min(height, width) / 300))
    font_scale = max(0.35, min(height, width) / 900)
    for box, score, label, name in zip(
        detections.boxes, detections.scores, detections.labels, detections.label_names, strict=True
    ):
        draw_tagged_box(
            image, box, f"{name} {float(score):.2f}", class_color(int(label)), thickness, font_scale
        )
    return image


def draw_tagged_box(
    image: np.ndarray,
    box: Any,
    text: str,
    color: tuple[int, int, int],
    thickness: int,
    font_scale: float,
) -> None:
    """One xyxy box with a filled tag holding `text` (white), in place."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    # Tag above the box, or inside it when the box touches the top edge.
    top = y1 - text_h - baseline if y1 - text_h - baseline >= 0 else y1
    cv2.rectangle(image, (x1, top), (x1 + text_w, top + text_h + baseline), color, -1)
    cv2.putText(
        image,
        text,
        (x1, top + text_h),
        cv2.FONT_HERSHEY_SIMPLEX,
        font_scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
