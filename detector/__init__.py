"""detector: a grid-based YOLO detector on a ResNet backbone.

    from detector import Detector, box_iou, nms, batched_nms
    from detector import ByteTracker
    from detector import SlicingOptions, merge_detections   # sliced inference (docs/slicing.md)

Attributes are imported lazily so that `import detector` (and the CLI's
`--help`) does not pay for torch, OpenCV or albumentations until they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "box_iou": "detector.postprocess",
    "nms": "detector.postprocess",
    "batched_nms": "detector.postprocess",
    "Detector": "detector.inference.predictor",
    "SlicingOptions": "detector.defaults",
    "merge_detections": "detector.postprocess",
    "load_config": "detector.config",
    "ByteTracker": "detector.tracking.tracker",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'detector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
