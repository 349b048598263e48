"""The greedy suppression pass behind `nms`, `batched_nms`, `multi_image_nms` and the merge.

    keep = greedy_keep(sorted_boxes, sorted_groups, iou_threshold=0.5)  # bool [N]
    owner = greedy_owner(sorted_boxes, sorted_groups, 0.5, ios=True)    # int64 [N]

Input boxes are already sorted by group, then by decreasing score. A box is kept
when no earlier kept box *of its group* overlaps it with IoU > iou_threshold; boxes
of different groups never interact, so class-aware NMS needs no coordinate offsets
(nothing to overflow in float16). `greedy_owner` runs the same pass and also says which
kept box removed each box (tile merging fuses them), with IoU or IOS (intersection over
the smaller area) as the overlap. Two implementations give identical results:

- a compiled loop (numba, a required dependency: pyproject.toml) for CPU tensors:
  the same algorithm as a C++ sort-and-suppress kernel;
- a blockwise pure-torch pass, used on CUDA, and on the CPU only where numba cannot
  be imported (a platform without its wheels) or a test asks for it: per block of
  sorted boxes, one IoU matrix against earlier kept boxes and one within the block,
  then a fixed-point iteration that settles the in-block greedy order exactly. Its
  Python loop is per block (N / block_size steps), not per box.
"""

from __future__ import annotations

import torch
from torch import Tensor

from detector._postprocess import greedy_numba

__all__ = ["greedy_keep", "greedy_keep_torch", "greedy_owner"]

# "auto": numba on CPU when importable, else torch. Tests set "torch" to cover the fallback.
CPU_BACKEND = "auto"
# Boxes per block of the torch pass: bigger blocks mean fewer Python steps but B^2 work
# inside each block; a GPU affords far bigger ones. Tests shrink them to cross blocks.
CPU_BLOCK_SIZE = 128
CUDA_BLOCK_SIZE = 1024

# Same lower bound on the union as detector._postprocess.iou, so every path agrees.
_EPS = 1e-7


def _area(boxes: Tensor) -> Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def _overlaps(rows: Tensor, columns: Tensor, iou_threshold: float, ios: bool = False) -> Tensor:
    """Bool [R, C]: IoU(rows[r], columns[c]) > iou_threshold, computed as in the IoU module
    (with `ios`: intersection over the smaller of the two areas instead)."""
    # One [R, C] tensor per coordinate instead of broadcasting [R, C, 2] corner pairs:
    # contiguous kernels, and the same arithmetic as the IoU module bit for bit.
    row_x1, row_y1, row_x2, row_y2 = rows[:, :, None].unbind(1)  # each [R, 1]
    column_x1, column_y1, column_x2, column_y2 = columns.T.contiguous()  # each [C]
    width = (torch.minimum(row_x2, column_x2) - torch.maximum(row_x1, column_x1)).clamp_(min=0)
    height = (torch.minimum(row_y2, column_y2) - torch.maximum(row_y1, column_y1)).clamp_(min=0)
    intersection = width * height
    if ios:
        smaller = torch.minimum(_area(rows)[:, None], _area(columns)[None, :]).clamp_(min=_EPS)
        return intersection / smaller > iou_threshold
    union = (_area(rows)[:, None] + _area(columns)[None, :] - intersection).clamp_(min=_EPS)
    return intersection / union > iou_threshold


def greedy_keep_torch(
    boxes: Tensor,
    groups: Tensor | None,
    iou_threshold: float,
    *,
    block_size: int = 128,
    ios: bool = False,
) -> Tensor:
    """Pure-torch greedy pass; see the module docstring. Returns bool [N] in input order."""
    num_boxes = boxes.shape[0]
    keep = torch.zeros(num_boxes, dtype=torch.bool, device=boxes.device)
    kept_boxes = boxes[:0]
    kept_groups = groups[:0] if groups is not None else None
    for start in range(0, num_boxes, block_size):
        block = boxes[start : start + block_size]
        block_groups = groups[start : start + block_size] if groups is not None else None

        # 1. Earlier blocks: kept boxes are final there, so one matrix settles them.
        previous, previous_groups = kept_boxes, kept_groups
        if block_groups is not None and previous.shape[0] > 0:
            # Sorted by group: only kept boxes from the block's first group on can matter.
            # (.item() is a host sync on CUDA: one per block, not per box.)
            first = int(torch.searchsorted(kept_groups, block_groups[:1]).item())
            previous, previous_groups = previous[first:], previous_groups[first:]
        candidates = torch.ones(block.shape[0], dtype=torch.bool, device=boxes.device)
        if previous.shape[0] > 0:
            suppress = _overlaps(previous, block, iou_threshold, ios)
            if block_groups is not None:
                suppress &= previous_groups[:, None] == block_groups[None, :]
            candidates = ~suppress.any(dim=0)

        # 2. Inside the block: suppress[i, j] for i < j among candidates. The greedy
        # answer is the unique k with k[j] = candidates[j] and no kept i < j suppressing j;
        # iterating that equation from k = candidates reaches it after at most
        # (longest suppression chain + 1) steps, typically 2-4.
        suppress = torch.triu(_overlaps(block, block, iou_threshold, ios), diagonal=1)
        if block_groups is not None:
            suppress &= block_groups[:, None] == block_groups[None, :]
        suppress &= candidates[:, None]
        block_keep = candidates
        while True:
            updated = candidates & ~(suppress & block_keep[:, None]).any(dim=0)
            if torch.equal(updated, block_keep):
                break
            block_keep = updated

        keep[start : start + block.shape[0]] = block_keep
        kept_boxes = torch.cat((kept_boxes, block[block_keep]))
        if block_groups is not None:
            kept_groups = torch.cat((kept_groups, block_groups[block_keep]))
    return keep


def _use_numba(boxes: Tensor) -> bool:
    if CPU_BACKEND == "numba" and not greedy_numba.AVAILABLE:
        raise RuntimeError("CPU_BACKEND is 'numba' but numba is not installed")
    wanted = CPU_BACKEND in ("auto", "numba")
    return boxes.device.type == "cpu" and wanted and greedy_numba.AVAILABLE


def _block_size(boxes: Tensor) -> int:
    return CPU_BLOCK_SIZE if boxes.device.type == "cpu" else CUDA_BLOCK_SIZE


@torch.no_grad()
def greedy_keep(boxes: Tensor, groups: Tensor | None, iou_threshold: float) -> Tensor:
    """Greedy suppression over boxes sorted by (group, decreasing score).

    Args:
        boxes: Tensor[N, 4] xyxy, float32 or float64, sorted as described.
        groups: int64 Tensor[N] sorted ascending (class, image or both), or None for one group.
        iou_threshold: suppress a box when its IoU with a kept box exceeds this.
    Returns:
        bool Tensor[N]: which of the sorted boxes are kept.
    """
    if _use_numba(boxes):
        return greedy_numba.greedy_keep_numba(boxes, groups, iou_threshold)
    return greedy_keep_torch(boxes, groups, iou_threshold, block_size=_block_size(boxes))


@torch.no_grad()
def greedy_owner(
    boxes: Tensor, groups: Tensor | None, threshold: float, *, ios: bool = False
) -> Tensor:
    """The greedy pass, returning for each box the kept box that suppressed it.

    The keep decisions are `greedy_keep`'s (with `ios`: intersection over the smaller
    box as the overlap); a suppressed box belongs to the first kept box of its group,
    in sorted order, that overlaps it by more than `threshold`: the box whose turn in
    the greedy loop removed it.

    Args:
        boxes: Tensor[N, 4] xyxy, float32 or float64, sorted by (group, decreasing score).
        groups: int64 Tensor[N] sorted ascending, or None for one group.
        threshold: overlap above which a box is suppressed.
        ios: overlap = intersection / smaller area; else IoU.
    Returns:
        int64 Tensor[N] on `boxes.device`: owner[j] = j for kept boxes, else < j.
    """
    if _use_numba(boxes):
        return greedy_numba.greedy_owner_numba(boxes, groups, threshold, ios=ios)
    block_size = _block_size(boxes)
    keep = greedy_keep_torch(boxes, groups, threshold, block_size=block_size, ios=ios)
    kept = torch.nonzero(keep).squeeze(1)  # ascending sorted positions
    owner = torch.arange(boxes.shape[0], device=boxes.device)
    for start in range(0, boxes.shape[0], block_size):
        rows = torch.arange(start, min(start + block_size, boxes.shape[0]), device=boxes.device)
        # [R, K]: which earlier kept boxes of the row's group overlap it; the first one owns it.
        hits = _overlaps(boxes[rows], boxes[kept], threshold, ios) & (kept[None, :] < rows[:, None])
        if groups is not None:
            hits &= groups[rows][:, None] == groups[kept][None, :]
        first = torch.where(hits.any(dim=1), kept[hits.int().argmax(dim=1)], rows)
        owner[start : start + block_size] = torch.where(keep[rows], rows, first)
    return owner
