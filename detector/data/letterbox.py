"""Letterbox geometry: fit an image into a square network input and map boxes back.

The image is resized by one factor so its longer side fits `size` and the rest is
padded evenly on both sides. Because the resized width and height are rounded to
whole pixels, the exact per-axis factors (`scale_x`, `scale_y`) are kept so that
`boxes_to_original(boxes_to_input(b)) == b` up to float rounding.

The pixels are made in one way for every path (the evaluation loader through
`letterbox_image`, `Detector` through `detector.inference.preprocess`):
`resize_pixels` (bilinear, antialiased when shrinking, rounded to whole grey
levels) and padding with `PAD_VALUE`. On the CPU both give identical pixels; on
CUDA the float kernel may round a level differently from the CPU uint8 kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 114  # the grey every letterbox pads with (training, evaluation, inference, export)


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


def resize_pixels(pixels: torch.Tensor, lb: Letterbox) -> torch.Tensor:
    """Resize images [n, C, H, W] to `lb`'s (new_height, new_width), as every letterbox does.

    Bilinear, antialiased when shrinking (it plays the role of an area filter: plain
    bilinear aliases on large downscales, a 4k frame into 448). uint8 input (the CPU
    path) stays uint8; float input comes back rounded to whole levels in 0..255.
    """
    if (lb.new_height, lb.new_width) == tuple(pixels.shape[-2:]):
        return pixels
    shrink = lb.new_width < lb.orig_width
    resized = F.interpolate(pixels, size=(lb.new_height, lb.new_width), mode="bilinear",
                            align_corners=False, antialias=shrink)
    if resized.dtype == torch.uint8:
        return resized
    return resized.round_().clamp_(0, 255)


def letterbox_image(image: np.ndarray, size: int, fill: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Resize (`resize_pixels`) and pad an HxWxC uint8 image into `size` x `size`."""
    lb = compute_letterbox(image.shape[0], image.shape[1], size)
    # A channels-last view: torch's uint8 CPU kernel for it is the fast one.
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    resized = resize_pixels(pixels, lb)[0].permute(1, 2, 0).numpy()
    out = np.full((size, size, image.shape[2]), fill, dtype=image.dtype)
    out[lb.pad_top:lb.pad_top + lb.new_height, lb.pad_left:lb.pad_left + lb.new_width] = resized
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
