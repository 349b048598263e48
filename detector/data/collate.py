"""Batch collation for detection samples, tuned for DataLoader workers.

    from detector.data.collate import collate_batch
    batch = collate_batch([dataset[0], dataset[1]])   # format: detector/data/dataset.py

Most of a worker's cost beyond decoding and augmenting is memory traffic between
processes, so this module keeps it down: one shared-memory tensor for the images,
three batch-wide tensors for all targets, pre-faulted pages, and glibc told to keep
freed buffers (see each function for the measured reason).
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_MADV_POPULATE_WRITE, _PAGE_SIZE = 23, 4096  # linux/mman.h


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None  # musl or another libc: skip the glibc-specific tuning


_LIBC = _load_libc()


def _empty_images(shape: tuple[int, int, int, int], shared: bool) -> torch.Tensor:
    """An uninitialised uint8 tensor, in shared memory when `shared` (a worker's batch).

    Allocating straight in shared memory, as torch's default collate does, avoids
    `share_memory_()`'s second allocation and copy (~0.4 ms per 448 px image).
    """
    if not shared:
        return torch.empty(shape, dtype=torch.uint8)
    numel = int(np.prod(shape))
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if new_shared is None:  # private API; fall back to the public, slower path
        return torch.empty(shape, dtype=torch.uint8).share_memory_()
    images = torch.empty(0, dtype=torch.uint8).set_(new_shared(numel)).view(shape)
    _prefault(images)
    return images


def _prefault(tensor: torch.Tensor) -> None:
    """Map all pages of a fresh tensor in one call (Linux 5.14+ MADV_POPULATE_WRITE).

    Writing a fresh shared-memory batch otherwise takes one page fault per 4 KiB,
    ~0.2 ms per 448 px image on virtual machines; any failure just skips this.
    """
    if _LIBC is None:
        return
    start = tensor.data_ptr() & ~(_PAGE_SIZE - 1)
    length = tensor.data_ptr() + tensor.numel() * tensor.element_size() - start
    _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_POPULATE_WRITE)


def collate_batch(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples from `DetectionDataset` into one batch.

    Args:
        samples: dicts with image uint8 [S, S, 3] RGB, boxes float [N_i, 4],
            labels int [N_i], ignore bool [N_i] and meta (as `DetectionDataset` returns).

    Returns:
        {images: uint8 Tensor[B, 3, S, S], targets: B dicts of boxes float32 [N_i, 4],
        labels int64 [N_i], ignore bool [N_i], metas: B dicts}; see detector/data/dataset.py.

    Images are copied once, straight into a [B, 3, S, S] uint8 tensor (allocated in
    shared memory inside a worker, so handing it to the main process copies nothing).
    `cv2.split` into the tensor's channel planes does the HWC -> CHW transpose: ~100x
    faster than torch's strided uint8 copy (`permute(2, 0, 1)`).

    Each image's boxes/labels/ignore are views into three batch-wide tensors: a worker
    hands every separate tensor to the main process through its own shared-memory
    segment and file descriptor, which cost ~1 ms per image for three tiny tensors
    (more than decoding); three per batch cost nearly nothing.
    """
    if not samples:
        raise ValueError("collate_batch: empty list of samples")
    height, width = samples[0]["image"].shape[:2]
    images = _empty_images((len(samples), 3, height, width), shared=get_worker_info() is not None)
    planes = images.numpy()
    for index, sample in enumerate(samples):
        image = sample["image"]
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(f"collate_batch: image {index} is {image.dtype} {image.shape}, "
                             f"expected uint8 {(height, width, 3)}")
        cv2.split(np.ascontiguousarray(image), list(planes[index]))
        if not len(sample["boxes"]) == len(sample["labels"]) == len(sample["ignore"]):
            raise ValueError(f"collate_batch: sample {index} has {len(sample['boxes'])} boxes, "
                             f"{len(sample['labels'])} labels and {len(sample['ignore'])} ignore flags")
    counts = [len(sample["labels"]) for sample in samples]
    boxes = torch.from_numpy(np.concatenate(
        [np.asarray(sample["boxes"], np.float32).reshape(-1, 4) for sample in samples]))
    labels = torch.from_numpy(np.concatenate(
        [np.asarray(sample["labels"], np.int64).reshape(-1) for sample in samples]))
    ignore = torch.from_numpy(np.concatenate(
        [np.asarray(sample["ignore"], bool).reshape(-1) for sample in samples]))
    targets = [
        {"boxes": b, "labels": lab, "ignore": ign}
        for b, lab, ign in zip(boxes.split(counts), labels.split(counts), ignore.split(counts), strict=True)
    ]
    return {"images": images, "targets": targets, "metas": [sample["meta"] for sample in samples]}


def keep_freed_memory() -> None:
    """Make glibc keep freed image buffers for reuse instead of returning them to the OS.

    A worker allocates and frees several ~0.5 MB arrays per image; with glibc's
    defaults these are mmapped/trimmed each time and every reuse page-faults afresh,
    which cost ~25% of a worker's time in our benchmark (docs/benchmarks.md). Only
    worker processes are tuned; elsewhere (non-glibc) this does nothing.
    """
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
