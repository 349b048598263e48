"""Batch collation for detection samples, tuned for DataLoader workers.

    from detector.data.loading.collate import collate_batch
    batch = collate_batch([dataset[0], dataset[1]])   # format: detector/data/loading/dataset.py

Most of a worker's cost beyond decoding and augmenting is memory traffic between
processes, so this module keeps it down: inside a worker the images are written
once, straight into torch shared memory (what DataLoader hands over without a
copy), and each image's targets are views of three batch-wide tensors (three
segments per batch, not three per image); glibc is told to keep freed buffers
(detector/data/loading/memory.py). A pool of reused memfd segments for the hand-over
was measured and removed: no training speed gain (docs/benchmarks.md, "Batch hand-over").
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

from detector.data.loading.memory import prefault


def _empty_images(shape: tuple[int, int, int, int], shared: bool) -> torch.Tensor:
    """An uninitialised uint8 tensor, in torch shared memory when `shared`.

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
    prefault(images)
    return images


def collate_batch(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples from `DetectionDataset` into one batch.

    Args:
        samples: dicts with image uint8 [S, S, 3] RGB, boxes float [N_i, 4],
            labels int [N_i], ignore bool [N_i] and meta (as `DetectionDataset` returns).

    Returns:
        {images: uint8 Tensor[B, 3, S, S], targets: B dicts of boxes float32 [N_i, 4],
        labels int64 [N_i], ignore bool [N_i], metas: B dicts}; see detector/data/loading/dataset.py.

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
            raise ValueError(f"collate_batch: image {index} is {image.dtype} {image.shape}, "
                             f"expected uint8 {(height, width, 3)}")
        if not len(sample["boxes"]) == len(sample["labels"]) == len(sample["ignore"]):
            raise ValueError(f"collate_batch: sample {index} has {len(sample['boxes'])} boxes, "
                             f"{len(sample['labels'])} labels and {len(sample['ignore'])} ignore flags")
    in_worker = get_worker_info() is not None
    images = _empty_images((len(samples), 3, height, width), shared=in_worker)
    planes = images.numpy()
    for index, sample in enumerate(samples):
        cv2.split(np.ascontiguousarray(sample["image"]), list(planes[index]))
    return {"images": images, "targets": _batch_targets(samples), "metas": [sample["meta"] for sample in samples]}


def _batch_targets(samples: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
    """Per-sample target dicts whose tensors are views of three batch-wide tensors.

    A worker sends every tensor through its own shared-memory segment: three per
    batch cost far less than three per image (~0.5 ms per image in the worker and
    ~0.45 ms in the main process, docs/benchmarks.md).
    """
    counts = [len(sample["labels"]) for sample in samples]
    boxes = torch.from_numpy(np.concatenate([np.asarray(s["boxes"], np.float32).reshape(-1, 4) for s in samples]))
    labels = torch.from_numpy(np.concatenate([np.asarray(s["labels"], np.int64).reshape(-1) for s in samples]))
    ignore = torch.from_numpy(np.concatenate([np.asarray(s["ignore"], bool).reshape(-1) for s in samples]))
    return [{"boxes": b, "labels": lab, "ignore": ign}
            for b, lab, ign in zip(boxes.split(counts), labels.split(counts), ignore.split(counts), strict=True)]
