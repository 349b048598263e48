"""Compiled greedy NMS / merge loop for CPU tensors (numba is a dependency of the package).

    from detector._postprocess.greedy_numba import AVAILABLE, greedy_keep_numba, greedy_owner_numba

Why numba: exact greedy NMS is sequential (each decision depends on the earlier
kept boxes), so tensor ops pay Python overhead per block or per kept box; a
compiled loop matches a C++ kernel without shipping C++ in the package. Per kept box
it examines only the boxes of its group whose x1 lies in a window where an overlap is
possible (a sweep over the group sorted by x1), so boxes spread over a large image (the
detections of many tiles) cost far less than all pairs. numba is a
dependency, but where it cannot be imported (a platform without wheels)
`greedy.greedy_keep_torch` gives the same results without it. The IoU arithmetic
mirrors the torch path operation by operation (same dtype, same order, same union
lower bound) so both agree bit for bit.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import torch
from torch import Tensor

# Imported on first use, not here: `import detector.postprocess` stays light for
# training, which only needs the IoU functions. find_spec only guards a platform
# where the dependency could not be installed.
AVAILABLE = importlib.util.find_spec("numba") is not None

__all__ = ["AVAILABLE", "greedy_keep_numba", "greedy_owner_numba"]


def _greedy_loop(boxes, groups, threshold, eps, ios):  # pragma: no cover - compiled
    num_boxes = boxes.shape[0]
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    zero = boxes.dtype.type(0)
    widths = np.maximum(x2 - x1, zero)
    areas = widths * np.maximum(y2 - y1, zero)
    owner = np.full(num_boxes, -1, dtype=np.int64)  # -1: not yet suppressed
    begin = 0
    while begin < num_boxes:  # one group (class, image) at a time: they never interact
        end = begin + 1
        while end < num_boxes and groups[end] == groups[begin]:
            end += 1
        # A box j can overlap box i only if x1[j] < x2[i] and x2[j] > x1[i], so (with
        # x2[j] <= x1[j] + widest) x1[j] > x1[i] - widest: where the group spans far more
        # than its widest box (the detections of many tiles), a window of the group sorted
        # by x1 holds every candidate; it is widened by a relative margin for rounding, and
        # extra candidates are checked exactly, so the decisions are the plain loop's. A
        # group of wide boxes (one image's raw output) keeps the plain, contiguous scan.
        widest = widths[begin:end].max()
        sweep = 4 * widest < x2[begin:end].max() - x1[begin:end].min()
        by_x1 = np.arange(begin, begin)  # (typed empty; filled for a sweep)
        sorted_x1 = x1[begin:begin].copy()
        if sweep:
            by_x1 = np.argsort(x1[begin:end], kind="mergesort") + begin
            sorted_x1 = x1[by_x1]
        for i in range(begin, end):
            if owner[i] >= 0:
                continue
            owner[i] = i
            if areas[i] <= zero:
                continue  # a zero-area or inverted box overlaps nothing
            low, high = i + 1, end
            if sweep:
                margin = (abs(x1[i]) + widest) * 1e-5
                low = np.searchsorted(sorted_x1, x1[i] - widest - margin)
                high = np.searchsorted(sorted_x1, x2[i])
            for k in range(low, high):
                j = by_x1[k] if sweep else k
                if owner[j] >= 0:
                    continue  # i itself, an earlier box, or already taken
                width = min(x2[i], x2[j]) - max(x1[i], x1[j])
                height = min(y2[i], y2[j]) - max(y1[i], y1[j])
                if width <= zero or height <= zero:
                    continue  # overlap 0 is never above a threshold >= 0
                intersection = width * height
                if ios:
                    denominator = max(min(areas[i], areas[j]), eps)
                else:
                    denominator = max(areas[i] + areas[j] - intersection, eps)
                if intersection / denominator > threshold:
                    owner[j] = i
        begin = end
    return owner


@functools.cache
def _compiled_loop():
    """Compile once per process; cache=True keeps the machine code on disk between runs."""
    import numba

    return numba.njit(cache=True, nogil=True)(_greedy_loop)


def greedy_owner_numba(
    boxes: Tensor, groups: Tensor | None, threshold: float, *, ios: bool = False
) -> Tensor:
    """The greedy pass on CPU, returning which kept box suppressed each box.

    Args:
        boxes: CPU Tensor[N, 4] xyxy, float32 or float64, sorted by (group, decreasing score).
        groups: int64 Tensor[N] sorted ascending, or None for a single group.
        threshold: suppress when the overlap > threshold (compared in the boxes' dtype).
        ios: overlap = intersection over the smaller box's area; else IoU.
    Returns:
        int64 Tensor[N]: owner[j] = j for a kept box, else the first kept box (in sorted
        order) of its group whose overlap with it exceeds `threshold`.
    """
    array = boxes.detach().contiguous().numpy()
    if groups is None:
        group_array = np.zeros(array.shape[0], dtype=np.int64)
    else:
        group_array = groups.detach().contiguous().numpy()
    scalar = array.dtype.type  # compare in the boxes' dtype, as torch does
    owner = _compiled_loop()(array, group_array, scalar(threshold), scalar(1e-7), bool(ios))
    return torch.from_numpy(owner)


def greedy_keep_numba(boxes: Tensor, groups: Tensor | None, iou_threshold: float) -> Tensor:
    """Greedy suppression on CPU; same contract as `greedy.greedy_keep`.

    Args:
        boxes: CPU Tensor[N, 4] xyxy, float32 or float64, sorted by (group, decreasing score).
        groups: int64 Tensor[N] sorted ascending, or None for a single group.
        iou_threshold: suppress when IoU > iou_threshold (compared in the boxes' dtype).
    Returns:
        bool Tensor[N] of kept sorted boxes.
    """
    owner = greedy_owner_numba(boxes, groups, iou_threshold)
    return owner == torch.arange(owner.shape[0])
