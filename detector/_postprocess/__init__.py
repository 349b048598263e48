"""Private implementation of `detector.postprocess`; import from there instead.

from detector.postprocess import box_iou, nms, batched_nms
"""
