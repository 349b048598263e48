"""Batched letterbox preprocessing that runs on the model's device.

    batch, letterboxes = preprocess_batch([frame_bgr], size=448, device=torch.device("cuda"))
    raw = model(batch)                                   # float [B, 3, 448, 448], 0..255 RGB

On the CPU each image is resized by `resize_image`, the one resize of training
and of the evaluation loader, so the batch equals `letterbox_image`'s pixels (and
a training sample's without augmentation) exactly: `Detector`, `detector evaluate`,
validation and training see the same input. On other devices the host only
uploads the uint8 pixels (through pinned memory on CUDA, without blocking) and the
colour flip, resize and padding happen there: `resize_pixels` runs the same
filters on floats, at most one grey level from the CPU's pixels. Geometry
(`compute_letterbox`) and pad value (`PAD_VALUE`) are `detector.data.letterbox`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from detector.data.letterbox import (
    PAD_VALUE,
    Letterbox,
    compute_letterbox,
    resize_image,
    resize_pixels,
)


def _upload(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack same-shape uint8 HxWx3 arrays into a uint8 [n, H, W, 3] tensor on `device`."""
    height, width = images[0].shape[:2]
    if device.type == "cuda":
        # Pinned staging buffer: the copy to the GPU is asynchronous, so the host
        # can go on decoding the next frames while it runs.
        staging = torch.empty((len(images), height, width, 3), dtype=torch.uint8, pin_memory=True)
        for slot, image in zip(staging, images, strict=True):
            slot.copy_(torch.from_numpy(np.ascontiguousarray(image)))
        return staging.to(device, non_blocking=True)
    if len(images) == 1:
        return torch.from_numpy(np.ascontiguousarray(images[0]))[None]
    return torch.from_numpy(np.stack(images))


def preprocess_batch(
    images: Sequence[np.ndarray],
    size: int,
    device: torch.device | str = "cpu",
    *,
    color: str = "bgr",
) -> tuple[torch.Tensor, list[Letterbox]]:
    """Letterbox a list of images into one network-input batch on `device`.

    Args:
        images: B uint8 arrays [H_i, W_i, 3]; sizes may differ (images of the same
            size are resized together in one call).
        size: side S of the square network input.
        device: where the batch is built (and the model runs).
        color: channel order of `images`, "bgr" (OpenCV) or "rgb".

    Returns:
        (batch float32 [B, 3, S, S] RGB in 0..255 with padding 114, one Letterbox
        per image giving the geometry for `boxes_to_original`).
    """
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if len(images) == 0:
        raise ValueError("preprocess_batch needs at least one image")
    device = torch.device(device)
    for index, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image {index}: expected uint8 [H, W, 3], got {image.dtype} {list(image.shape)}"
            )
    batch = torch.full((len(images), 3, size, size), float(PAD_VALUE), device=device)
    letterboxes: list[Letterbox | None] = [None] * len(images)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape[:2], []).append(index)
    for (height, width), indices in groups.items():
        lb = compute_letterbox(height, width, size)
        group = [images[i] for i in indices]
        if device.type == "cpu":
            # The uint8 kernels of training and evaluation: the very same pixels.
            group = [resize_image(image, lb.new_width, lb.new_height) for image in group]
        pixels = _upload(group, device)  # uint8 [n, h, w, 3]
        pixels = pixels.permute(0, 3, 1, 2)  # [n, 3, h, w], a channels-last view
        if color == "bgr":
            pixels = pixels.flip(1)
        # Elsewhere (CUDA) there are float kernels only: same filters, rounded to levels.
        pixels = pixels.float() if device.type == "cpu" else resize_pixels(pixels, lb)
        index_tensor = torch.tensor(indices, device=device)
        rows = slice(lb.pad_top, lb.pad_top + lb.new_height)
        cols = slice(lb.pad_left, lb.pad_left + lb.new_width)
        if len(indices) == len(images):
            batch[:, :, rows, cols] = pixels
        else:
            padded = batch.index_select(0, index_tensor)
            padded[:, :, rows, cols] = pixels
            batch.index_copy_(0, index_tensor, padded)
        for i in indices:
            letterboxes[i] = lb
    return batch, letterboxes  # type: ignore[return-value]
