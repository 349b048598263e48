"""Letterbox geometry: fit an image into a square network input and map boxes back.

The image is resized by one factor so its longer side fits `size` and the rest is
padded evenly on both sides. Because the resized width and height are rounded to
whole pixels, the exact per-axis factors (`scale_x`, `scale_y`) are kept so that
`boxes_to_original(boxes_to_input(b)) == b` up to float rounding.

The pixels are made in one way for every path: `resize_image` is the only resize
of training (the letterbox and `scale_jitter` step of the augmentation pipeline,
mosaic tiles), the evaluation loader (`letterbox_image`) and `Detector` on the CPU
(`detector.inference.preprocess`), and the pad value is `PAD_VALUE`; so a model
sees in training the pixels it is evaluated and deployed on. It is bilinear:
antialiased when shrinking by more than `ANTIALIAS_ABOVE` (torch's uint8 kernel:
of the kernels measured the least aliasing and the fastest antialiased one; cv2
INTER_AREA is slower and aliases more, docs/benchmarks.md "One resize"), else
OpenCV's INTER_LINEAR (~3x cheaper: the training pipeline's speed). On other
devices `resize_pixels` runs the same filters on floats: at most one grey level
apart (fixed-point and float rounding), never a different filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 114  # the grey every letterbox pads with (training, evaluation, inference, export)

# Shrinking by more than this factor low-passes first (antialiased bilinear); up to it,
# and when enlarging, plain bilinear. Measured (docs/benchmarks.md "One resize"):
# antialiasing every shrink costs ~0.8 ms more per training sample (VOC 500x375 -> 448,
# 1.12x), which breaks the data pipeline's speed bar, while plain bilinear's aliasing
# grows with the factor; VOC- and COCO-sized images at 448 (<= 1.49x with scale
# jitter) keep OpenCV's speed and large frames (720p: 2.9x, 1080p: 4.3x) are filtered.
ANTIALIAS_ABOVE = 1.5


@dataclass(frozen=True)
class Letterbox:
    """How an original (height, width) image was placed in the square input."""

    orig_height: int
    orig_width: int
    size: int
    new_height: int
    new_width: int
    pad_top: int
    pad_left: int

    @property
    def scale_x(self) -> float:
        return self.new_width / self.orig_width

    @property
    def scale_y(self) -> float:
        return self.new_height / self.orig_height


def compute_letterbox(height: int, width: int, size: int) -> Letterbox:
    """Geometry for fitting a `height` x `width` image into `size` x `size`."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = min(size / height, size / width)
    new_h = min(size, max(1, round(height * scale)))
    new_w = min(size, max(1, round(width * scale)))
    return Letterbox(
        orig_height=height,
        orig_width=width,
        size=size,
        new_height=new_h,
        new_width=new_w,
        pad_top=(size - new_h) // 2,
        pad_left=(size - new_w) // 2,
    )


def _antialias(orig_height: int, orig_width: int, new_height: int, new_width: int) -> bool:
    """Whether a resize shrinks either side by more than `ANTIALIAS_ABOVE` (then it low-passes)."""
    return max(orig_height / new_height, orig_width / new_width) > ANTIALIAS_ABOVE


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an HxWxC uint8 image to `height` x `width`: the one resize of every path.

    Shrinking by more than `ANTIALIAS_ABOVE`: bilinear with antialiasing (torch's
    uint8 kernel), because plain bilinear sampling aliases there (a 1920x1080 frame
    into 448 turns fine texture into false edges and speckle, which small objects
    drown in). Otherwise cv2.INTER_LINEAR, a third of the cost, which keeps the
    training pipeline's speed. Returns `image` itself when the size is unchanged.
    """
    orig_height, orig_width = image.shape[:2]
    if (height, width) == (orig_height, orig_width):
        return image
    if not _antialias(orig_height, orig_width, height, width):
        resized = cv2.resize(
            np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR
        )
        return resized.reshape(height, width, *image.shape[2:])
    pixels = torch.from_numpy(np.ascontiguousarray(image)).reshape(orig_height, orig_width, -1)
    resized = F.interpolate(
        pixels.permute(2, 0, 1)[None],
        size=(height, width),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    # torch returns planar memory: one copy to HxWxC here, or every later cv2/numpy step
    # (albumentations makes arrays contiguous in each transform) would copy it again.
    resized = np.ascontiguousarray(resized[0].permute(1, 2, 0).numpy())
    return resized.reshape(height, width, *image.shape[2:])


def resize_pixels(pixels: torch.Tensor, lb: Letterbox) -> torch.Tensor:
    """`resize_image` for image batches [n, C, H, W] on any device (float in, float out).

    The same filters as `resize_image` (antialiased bilinear above `ANTIALIAS_ABOVE`,
    plain bilinear otherwise) in float arithmetic, rounded to whole levels in 0..255: at most
    one grey level from `resize_image`'s pixels (its uint8 kernels round in fixed
    point). Used where there is no uint8 kernel: CUDA.
    """
    if (lb.new_height, lb.new_width) == tuple(pixels.shape[-2:]):
        return pixels.float()
    shrink = _antialias(pixels.shape[-2], pixels.shape[-1], lb.new_height, lb.new_width)
    resized = F.interpolate(
        pixels.float(),
        size=(lb.new_height, lb.new_width),
        mode="bilinear",
        align_corners=False,
        antialias=shrink,
    )
    return resized.round_().clamp_(0, 255)


def letterbox_image(
    image: np.ndarray, size: int, fill: int = PAD_VALUE
) -> tuple[np.ndarray, Letterbox]:
    """Resize (`resize_image`) and pad an HxWxC uint8 image into `size` x `size`."""
    lb = compute_letterbox(image.shape[0], image.shape[1], size)
    resized = resize_image(image, lb.new_width, lb.new_height)
    out = np.full((size, size, image.shape[2]), fill, dtype=image.dtype)
    out[lb.pad_top : lb.pad_top + lb.new_height, lb.pad_left : lb.pad_left + lb.new_width] = resized
    return out, lb


def boxes_to_input(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Original-image xyxy pixels [N, 4] -> network-input xyxy pixels [N, 4]."""
    out = np.asarray(boxes, dtype=np.float32).copy()
    out[:, [0, 2]] = out[:, [0, 2]] * lb.scale_x + lb.pad_left
    out[:, [1, 3]] = out[:, [1, 3]] * lb.scale_y + lb.pad_top
    return out


def boxes_to_original(boxes, lb: Letterbox, clip: bool = True):
    """Network-input xyxy pixels [N, 4] -> original-image xyxy pixels, clipped to the image.

    Works on numpy arrays and torch tensors alike (returns the same kind).
    """
    out = boxes.clone() if hasattr(boxes, "clone") else np.array(boxes, dtype=np.float32, copy=True)
    out[:, 0] = (out[:, 0] - lb.pad_left) / lb.scale_x
    out[:, 2] = (out[:, 2] - lb.pad_left) / lb.scale_x
    out[:, 1] = (out[:, 1] - lb.pad_top) / lb.scale_y
    out[:, 3] = (out[:, 3] - lb.pad_top) / lb.scale_y
    if clip:
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.orig_width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.orig_height)
    return out
