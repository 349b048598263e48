"""Box formats, the IoU family, non-maximum suppression and tile merging: pure functions.

    >>> import torch
    >>> from detector.postprocess import box_iou, nms, batched_nms
    >>> boxes = torch.tensor(
    ...     [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]
    ... )
    >>> scores = torch.tensor([0.9, 0.8, 0.7])
    >>> nms(boxes, scores, iou_threshold=0.5)
    tensor([0, 2])

Sliced inference: `tile_grid` cuts an image into overlapping tiles that cover it
exactly; `merge_detections` merges the tiles' detections (NMS or greedy merging).

Boxes are absolute-pixel xyxy unless a name says otherwise (``box_cxcywh_to_xyxy``).
Every function works on CPU and CUDA tensors in float16, bfloat16, float32 and float64,
never modifies its inputs, and raises ValueError on wrong shapes. The implementation
lives in ``detector/_postprocess/`` (one module per concern); import from here.
"""

from __future__ import annotations

from detector._postprocess.boxes import (
    box_area,
    box_cxcywh_to_xywh,
    box_cxcywh_to_xyxy,
    box_xywh_to_cxcywh,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes_to_image,
)
from detector._postprocess.iou import (
    box_iou,
    box_iou_aligned,
    complete_box_iou_aligned,
    distance_box_iou_aligned,
    generalized_box_iou,
    generalized_box_iou_aligned,
)
from detector._postprocess.merge import (
    MATCH_METRICS,
    MERGE_METHODS,
    MergedDetections,
    merge_detections,
)
from detector._postprocess.nms import batched_nms, multi_image_nms, nms
from detector._postprocess.soft_nms import soft_nms
from detector._postprocess.tiles import MIN_TILE_SIZE, check_tile_size, tile_grid, tile_starts

__all__ = [
    "MATCH_METRICS",
    "MERGE_METHODS",
    "MIN_TILE_SIZE",
    "MergedDetections",
    "box_area",
    "box_cxcywh_to_xywh",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_iou_aligned",
    "box_xywh_to_cxcywh",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_xyxy_to_xywh",
    "batched_nms",
    "check_tile_size",
    "clip_boxes_to_image",
    "complete_box_iou_aligned",
    "distance_box_iou_aligned",
    "generalized_box_iou",
    "generalized_box_iou_aligned",
    "merge_detections",
    "multi_image_nms",
    "nms",
    "soft_nms",
    "tile_grid",
    "tile_starts",
]
