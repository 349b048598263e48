"""Box formats, areas and clipping: pure tensor functions (public via `detector.postprocess`).

    >>> from detector.postprocess import box_xyxy_to_cxcywh
    >>> box_xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 10.0, 20.0]]))
    tensor([[ 5., 10., 10., 20.]])

Formats, each named in full in the function names:

- ``xyxy``: corners ``(x1, y1, x2, y2)``, the package's public format;
- ``xywh``: top-left corner and size ``(x1, y1, w, h)`` (COCO JSON);
- ``cxcywh``: centre and size ``(cx, cy, w, h)`` (grid heads).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_cxcywh_to_xywh",
    "box_cxcywh_to_xyxy",
    "box_xywh_to_cxcywh",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_xyxy_to_xywh",
    "clip_boxes_to_image",
]


def check_boxes(boxes: Tensor, name: str = "boxes", *, matrix: bool = True) -> None:
    """Raise ValueError unless `boxes` is a tensor of shape [N, 4] ([..., 4] when not `matrix`)."""
    if not isinstance(boxes, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if matrix and (boxes.dim() != 2 or boxes.shape[-1] != 4):
        raise ValueError(f"{name} must have shape [N, 4], got {list(boxes.shape)}")
    if not matrix and (boxes.dim() == 0 or boxes.shape[-1] != 4):
        raise ValueError(f"{name} must have shape [..., 4], got {list(boxes.shape)}")


def check_vector(values: Tensor, length: int, name: str) -> None:
    """Raise ValueError unless `values` is a 1-D tensor with `length` entries."""
    if not isinstance(values, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if values.dim() != 1 or values.shape[0] != length:
        raise ValueError(
            f"{name} must have shape [{length}] (one per box), got {list(values.shape)}"
        )


def compute_dtype(boxes: Tensor) -> Tensor:
    """Return `boxes` in float32 when it is half precision or integer, else unchanged.

    float16 has an 11-bit mantissa: at 4096 px a corner is only resolved to 2-4 px and a
    product of sides overflows past 65504, so areas and IoUs are computed in float32.
    """
    if boxes.dtype in (torch.float16, torch.bfloat16) or not boxes.is_floating_point():
        return boxes.float()
    return boxes


def box_xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """Convert corners ``(x1, y1, x2, y2)`` to corner-and-size ``(x1, y1, w, h)``.

    Args:
        boxes: Tensor[..., 4] in xyxy.
    Returns:
        Tensor[..., 4] in xywh, same dtype.
    """
    check_boxes(boxes, matrix=False)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def box_xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert corner-and-size ``(x1, y1, w, h)`` to corners ``(x1, y1, x2, y2)``.

    Args:
        boxes: Tensor[..., 4] in xywh.
    Returns:
        Tensor[..., 4] in xyxy, same dtype.
    """
    check_boxes(boxes, matrix=False)
    x1, y1, width, height = boxes.unbind(-1)
    return torch.stack((x1, y1, x1 + width, y1 + height), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert corners ``(x1, y1, x2, y2)`` to centre-and-size ``(cx, cy, w, h)``.

    Args:
        boxes: Tensor[..., 4] in xyxy.
    Returns:
        Tensor[..., 4] in cxcywh, same dtype.
    """
    check_boxes(boxes, matrix=False)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert centre-and-size ``(cx, cy, w, h)`` to corners ``(x1, y1, x2, y2)``.

    Args:
        boxes: Tensor[..., 4] in cxcywh.
    Returns:
        Tensor[..., 4] in xyxy, same dtype.
    """
    check_boxes(boxes, matrix=False)
    cx, cy, width, height = boxes.unbind(-1)
    half_width, half_height = width / 2, height / 2
    return torch.stack(
        (cx - half_width, cy - half_height, cx + half_width, cy + half_height), dim=-1
    )


def box_xywh_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert corner-and-size ``(x1, y1, w, h)`` to centre-and-size ``(cx, cy, w, h)``.

    Args:
        boxes: Tensor[..., 4] in xywh.
    Returns:
        Tensor[..., 4] in cxcywh, same dtype.
    """
    check_boxes(boxes, matrix=False)
    x1, y1, width, height = boxes.unbind(-1)
    return torch.stack((x1 + width / 2, y1 + height / 2, width, height), dim=-1)


def box_cxcywh_to_xywh(boxes: Tensor) -> Tensor:
    """Convert centre-and-size ``(cx, cy, w, h)`` to corner-and-size ``(x1, y1, w, h)``.

    Args:
        boxes: Tensor[..., 4] in cxcywh.
    Returns:
        Tensor[..., 4] in xywh, same dtype.
    """
    check_boxes(boxes, matrix=False)
    cx, cy, width, height = boxes.unbind(-1)
    return torch.stack((cx - width / 2, cy - height / 2, width, height), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of xyxy boxes; a side with x2 < x1 (or y2 < y1) counts as length 0.

    Clamping makes an inverted box empty (area 0) instead of giving a positive area
    when both sides are inverted, so IoUs stay in [0, 1].

    Args:
        boxes: Tensor[..., 4] in xyxy.
    Returns:
        Tensor[...] of areas, float32 for half-precision or integer input, else boxes' dtype.
    """
    check_boxes(boxes, matrix=False)
    boxes = compute_dtype(boxes)
    width = (boxes[..., 2] - boxes[..., 0]).clamp(min=0)
    height = (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    return width * height


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp xyxy boxes into an image: x into [0, width], y into [0, height].

    Args:
        boxes: Tensor[..., 4] in xyxy pixels.
        size: ``(height, width)`` of the image (the order of ``image.shape[:2]``).
    Returns:
        A new Tensor[..., 4] of the same dtype; the input is not modified.
    """
    check_boxes(boxes, matrix=False)
    if len(size) != 2 or min(size) < 0:
        raise ValueError(f"size must be (height, width) with non-negative entries, got {size!r}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)
