"""`Detections`: what a detector returns for one image (and what tracking, sinks and JSON read).

    result = det(image)                      # detector.Detector -> Detections
    result.boxes, result.scores, result.labels, result.names
    json.dumps(result.to_dict())

A module of its own so that the stages that consume results (tracking, sinks) need
not import the predictor that makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Detections of one image.

    Attributes:
        boxes: float32 [K, 4] xyxy pixels in the original image.
        scores: float32 [K] confidence in 0..1, descending.
        labels: int64 [K] class indices into the detector's `class_names`.
        label_names: K class names, the name of each detection's label (also
            readable as `names`, the name the README uses).
        width, height: size of the original image in pixels.
        path: the image file, when the input was a path.
        slicing: the sliced-inference settings that made them
            (`SlicingOptions.to_dict()`), None for one letterboxed pass.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    width: int
    height: int
    path: str | None = None
    slicing: dict[str, Any] | None = None

    @property
    def names(self) -> list[str]:
        """The public name of `label_names`: one class name per detection."""
        return self.label_names

    def __len__(self) -> int:
        return len(self.boxes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: {path, width, height, detections: [{box, score, label, name}]},
        plus {slicing: settings} for sliced results."""
        record = {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "detections": [
                {
                    "box": [round(float(v), 2) for v in box],
                    "score": round(float(score), 4),
                    "label": int(label),
                    "name": name,
                }
                for box, score, label, name in zip(
                    self.boxes, self.scores, self.labels, self.label_names, strict=True
                )
            ],
        }
        if self.slicing is not None:
            record["slicing"] = self.slicing
        return record
