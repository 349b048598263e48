"""The inference defaults, written once.

    from detector.defaults import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET, DEFAULT_SCORE_THRESHOLD

`Detector`, `detect`/`track`, `export` (its --nms graph and metadata), exported-file
backends and the confusion-matrix plot take them from here. A leaf that imports
nothing, so the click commands can use them without importing torch. Evaluation has
its own thresholds (`eval.score_threshold` etc. in detector/config.py).
"""

DEFAULT_SCORE_THRESHOLD = 0.25  # the boxes a user is shown
DEFAULT_IOU_THRESHOLD = 0.45  # class-aware NMS
DEFAULT_MAX_DET = 300  # detections kept per image
