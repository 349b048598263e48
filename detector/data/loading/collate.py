"""Batch collation for detection samples, tuned for DataLoader workers.

    from detector.data.loading.collate import collate_batch
    batch = collate_batch([dataset[0], dataset[1]])   # format: detector/data/loading/dataset.py

Most of a worker's cost beyond decoding and augmenting is memory traffic between
processes, so this module keeps it down: inside a worker the images go into a
reused shared-memory segment and the targets travel by value
(detector/data/loading/shared_batch.py); glibc is told to keep freed buffers
(detector/data/loading/memory.py).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

from detector.data.loading.memory import prefault
from detector.data.loading.shared_batch import pack_targets, unpack_targets, worker_batch


def _empty_images(shape: tuple[int, int, int, int], shared: bool) -> torch.Tensor:
    """An uninitialised uint8 tensor, in torch shared memory when `shared`.

    Used where `shared_batch` cannot be (no memfd). Allocating straight in shared
    memory, as torch's default collate does, avoids `share_memory_()`'s second
    allocation and copy (~0.4 ms per 448 px image).
    """
    if not shared:
        return torch.empty(shape, dtype=torch.uint8)
    numel = int(np.prod(shape))
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if new_shared is None:  # private API; fall back to the public, slower path
        return torch.empty(shape, dtype=torch.uint8).share_memory_()
    images = torch.empty(0, dtype=torch.uint8).set_(new_shared(numel)).view(shape)
    prefault(images)
    return images


def collate_batch(samples: list[dict[str, Any]], *, reuse_segments: bool = True) -> dict[str, Any]:
    """Stack samples from `DetectionDataset` into one batch.

    Args:
        samples: dicts with image uint8 [S, S, 3] RGB, boxes float [N_i, 4],
            labels int [N_i], ignore bool [N_i] and meta (as `DetectionDataset` returns).
        reuse_segments: inside a worker, hand the images over in a pooled memfd segment
            (False: a fresh torch shared-memory tensor; tools/benchmark.py handover).

    Returns:
        {images: uint8 Tensor[B, 3, S, S], targets: B dicts of boxes float32 [N_i, 4],
        labels int64 [N_i], ignore bool [N_i], metas: B dicts}; see
        detector/data/loading/dataset.py.

    Raises:
        ValueError: an image of another size or dtype, or boxes/labels/ignore of
            different lengths (naming the sample's position in the batch).

    Images are copied once, straight into a [B, 3, S, S] uint8 tensor (in shared
    memory inside a worker, so handing it to the main process copies nothing).
    `cv2.split` into the tensor's channel planes does the HWC -> CHW transpose: ~100x
    faster than torch's strided uint8 copy (`permute(2, 0, 1)`). Each image's
    boxes/labels/ignore are views into three batch-wide tensors.
    """
    if not samples:
        raise ValueError("collate_batch: empty list of samples")
    height, width = samples[0]["image"].shape[:2]
    for index, sample in enumerate(samples):
        image = sample["image"]
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"collate_batch: image {index} is {image.dtype} {image.shape}, "
                f"expected uint8 {(height, width, 3)}"
            )
        if not len(sample["boxes"]) == len(sample["labels"]) == len(sample["ignore"]):
            raise ValueError(
                f"collate_batch: sample {index} has {len(sample['boxes'])} boxes, "
                f"{len(sample['labels'])} labels and {len(sample['ignore'])} ignore flags"
            )
    metas = [sample["meta"] for sample in samples]
    in_worker = get_worker_info() is not None
    batch = (
        worker_batch((3, height, width), samples, metas) if in_worker and reuse_segments else None
    )
    if batch is None:
        images = _empty_images((len(samples), 3, height, width), shared=in_worker)
        batch = {
            "images": images,
            "targets": unpack_targets(*pack_targets(samples)),
            "metas": metas,
        }
    planes = batch["images"].numpy()
    for index, sample in enumerate(samples):
        cv2.split(np.ascontiguousarray(sample["image"]), list(planes[index]))
    return batch
