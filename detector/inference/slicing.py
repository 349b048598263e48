"""Sliced inference: tiles at native resolution, batched through the model, merged.

    from detector import Detector, SlicingOptions
    det = Detector.from_checkpoint("best.pt", slicing=SlicingOptions(size=640, overlap=0.2))
    result = det("aerial_8000x6000.jpg")          # the same Detections as without slicing

Each image is cut into `tile_grid` tiles of `size` x `size` pixels (the last row and
column shifted inward, so nothing is padded past the edge); the tiles of all images
of a call stream through the backend `batch_size` at a time, each tile copied alone
into the batch (the image itself is never copied, so memory is bounded by the tile
batch, not by the image). A side shorter than the tile gives a shorter tile, padded
in the network input with the letterbox's grey. Each tile's detections go through the
detector's own selection (score threshold, classes, NMS, max_det), are clipped to the
tile, moved to image coordinates and, with the optional letterboxed full-image pass,
merged by `detector.postprocess.merge_detections`; the best `max_det` are kept. The
full pass resizes on the host (the CPU path of `preprocess_batch`) and uploads only
the letterboxed batch, so a huge image is never copied to a GPU either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from detector.data.letterbox import PAD_VALUE
from detector.defaults import SlicingOptions
from detector.postprocess import (
    MATCH_METRICS,
    MERGE_METHODS,
    check_tile_size,
    merge_detections,
    tile_grid,
)

log = logging.getLogger(__name__)

CPU_SLICE_BATCH = 8  # a CPU gains little past this, and the batch stays ~10 MB at 640 px
GPU_SLICE_BATCH = 32  # per 16 GiB of GPU memory, up to 64


def default_slice_batch(device: torch.device) -> int:
    """Tiles per forward when the options leave it open: 8 on CPU, 32 per 16 GiB of GPU (<= 64)."""
    if device.type != "cuda":
        return CPU_SLICE_BATCH
    total = torch.cuda.get_device_properties(device).total_memory
    return int(min(64, max(8, GPU_SLICE_BATCH * total // (16 << 30))))


def check_slicing(options: SlicingOptions, *, max_stride: int, fixed_size: int | None) -> None:
    """Raise a one-line ValueError for settings this model cannot run.

    Args:
        options: the slicing settings.
        max_stride: the model's largest stride (tile sides must be multiples of it).
        fixed_size: the only input side a static export takes, or None.
    """
    if not isinstance(options, SlicingOptions):
        raise ValueError(f"slicing must be a SlicingOptions, got {type(options).__name__}")
    check_tile_size(options.size, max_stride)
    if not 0.0 <= float(options.overlap) < 1.0:
        raise ValueError(f"slice overlap must be in [0, 1), got {options.overlap}")
    if options.batch_size is not None and options.batch_size < 1:
        raise ValueError(f"slice batch must be >= 1, got {options.batch_size}")
    if options.merge not in MERGE_METHODS:
        raise ValueError(
            f"slice merge must be one of {', '.join(MERGE_METHODS)}, got {options.merge!r}"
        )
    if options.match_metric not in MATCH_METRICS:
        raise ValueError(
            f"slice match metric must be one of {', '.join(MATCH_METRICS)}, "
            f"got {options.match_metric!r}"
        )
    if not 0.0 <= float(options.match_threshold) <= 1.0:
        raise ValueError(f"slice match threshold must be in [0, 1], got {options.match_threshold}")
    if fixed_size is not None and options.size != fixed_size:
        raise ValueError(
            f"slice size {options.size}: this model was exported for {fixed_size} x "
            f"{fixed_size} inputs only (use --slice {fixed_size}, or export with --dynamic)"
        )


def slice_batch_size(options: SlicingOptions, backend: Any, source: str = "the model") -> int:
    """Tiles per forward: the options', else the device's; 1 for a backend fixed at batch 1."""
    if getattr(backend, "fixed_batch", None) == 1:
        log.warning(
            "%s: exported with a fixed batch of 1; slicing runs one tile per forward "
            "(export with --dynamic to batch tiles)",
            source,
        )
        return 1
    return options.batch_size or default_slice_batch(backend.device)


def _tiles(
    images: Sequence[np.ndarray], options: SlicingOptions
) -> Iterator[tuple[int, tuple[int, ...]]]:
    """(image index, (x1, y1, x2, y2)) of every tile of every image, lazily."""
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        for tile in tile_grid(width, height, options.size, options.overlap):
            yield index, tile


def _tile_batches(
    images: Sequence[np.ndarray],
    options: SlicingOptions,
    batch_size: int,
    device: torch.device,
    color: str,
) -> Iterator[tuple[torch.Tensor, list]]:
    """Batches float32 [n, 3, S, S] RGB 0..255 of tiles (grey padding), with their tiles."""
    tiles = _tiles(images, options)
    size = options.size
    while True:
        chunk = [tile for _, tile in zip(range(batch_size), tiles, strict=False)]
        if not chunk:
            return
        batch = torch.full((len(chunk), 3, size, size), float(PAD_VALUE), device=device)
        for slot, (index, (x1, y1, x2, y2)) in enumerate(chunk):
            # One tile's pixels copied (the view of the image is not contiguous).
            pixels = torch.from_numpy(np.ascontiguousarray(images[index][y1:y2, x1:x2]))
            pixels = pixels.to(device).permute(2, 0, 1)
            if color == "bgr":
                pixels = pixels.flip(0)
            batch[slot, :, : y2 - y1, : x2 - x1] = pixels
        yield batch, chunk


def predict_sliced_rows(
    detector: Any, images: Sequence[np.ndarray], color: str
) -> list[torch.Tensor]:
    """Sliced detections of each image: rows [K, 6] (x1, y1, x2, y2, score, label) on the device.

    Args:
        detector: a `Detector` with `slicing` set (its backend, selection and full pass).
        images: uint8 [H, W, 3] arrays in `color` order.
        color: "bgr" or "rgb".
    Returns:
        one float32 tensor per image, by decreasing score, at most `detector.max_det` rows.
    """
    options: SlicingOptions = detector.slicing
    device = detector.device
    parts: list[list[torch.Tensor]] = [[] for _ in images]
    for batch, chunk in _tile_batches(images, options, detector.slice_batch, device, color):
        for (index, (x1, y1, x2, y2)), rows in zip(chunk, detector.select_rows(batch), strict=True):
            if len(rows):
                boxes = rows[:, :4].clone()
                boxes[:, 0::2] = boxes[:, 0::2].clamp(0, x2 - x1) + x1
                boxes[:, 1::2] = boxes[:, 1::2].clamp(0, y2 - y1) + y1
                parts[index].append(torch.cat([boxes, rows[:, 4:]], dim=1))
    if options.full_image:
        for index, rows in enumerate(detector.letterboxed_rows(images, color, on_host=True)):
            parts[index].append(rows)
    merged = []
    for image_parts in parts:
        rows = torch.cat(image_parts) if image_parts else torch.zeros((0, 6), device=device)
        result = merge_detections(
            rows[:, :4],
            rows[:, 4],
            rows[:, 5].long(),
            method=options.merge,
            match_metric=options.match_metric,
            match_threshold=options.match_threshold,
        )
        merged.append(
            torch.cat(
                [result.boxes, result.scores[:, None], result.labels.float()[:, None]], dim=1
            )[: detector.max_det]
        )
    return merged
