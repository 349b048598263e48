"""SAHI's own postprocess (`GREEDYNMM`, `NMS`) on our tensors: the reference that
tests/test_postprocess_merge_vs_sahi.py and `tools/benchmark.py slicing` hold
`merge_detections` against.

    from benchmarks.sahi_merge import object_predictions, sahi_postprocess
    predictions = object_predictions(boxes, scores, labels)  # SAHI's ObjectPrediction list
    boxes, scores, labels = sahi_postprocess(
        predictions, method="nmm", match_metric="ios", match_threshold=0.5
    )

`sahi` is a test reference (tools/bootstrap.py TEST_REFERENCES, installed without its
dependencies: its metadata asks for opencv-python beside our opencv-python-headless); the
modules used here import with what the dev extra installs plus shapely. Its postprocess is
class-aware here (`class_agnostic=False`), as `merge_detections` is. SAHI clamps negative
coordinates to 0 when it builds an `ObjectPrediction` (it rejects negative boxes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

# Our method and metric names -> SAHI's postprocess class name and metric name.
SAHI_POSTPROCESS = {"nmm": "GreedyNMMPostprocess", "nms": "NMSPostprocess"}
SAHI_METRIC = {"ios": "IOS", "iou": "IOU"}


def sahi_import_error() -> str | None:
    """None where SAHI's postprocess imports, else the reason as one line."""
    try:
        import sahi.postprocess.combine  # noqa: F401
        import sahi.prediction  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def sahi_backend() -> str:
    """The postprocess backend SAHI resolves on this machine (numpy, numba or torchvision)."""
    from sahi.postprocess.backends import resolve_backend

    return resolve_backend()


def object_predictions(boxes: Tensor, scores: Tensor, labels: Tensor) -> list[Any]:
    """SAHI `ObjectPrediction`s of xyxy image-pixel boxes [N, 4], scores [N], labels [N]."""
    from sahi.prediction import ObjectPrediction

    return [
        ObjectPrediction(bbox=box, score=score, category_id=label)
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)
    ]


def sahi_greedy_groups(
    boxes: Tensor, scores: Tensor, labels: Tensor, *, match_metric: str, match_threshold: float
) -> dict[int, list[int]]:
    """SAHI's class-aware greedy NMM pass alone (`batched_greedy_nmm`, before its re-check).

    Args:
        boxes: xyxy [N, 4]; scores: [N]; labels: integer [N].
        match_metric: "ios" or "iou"; match_threshold: in [0, 1].
    Returns:
        kept input index -> the input indices it takes out, by decreasing score.
    """
    from sahi.postprocess.combine import batched_greedy_nmm

    predictions = np.concatenate(
        [boxes.numpy(), scores.numpy()[:, None], labels.numpy()[:, None]], axis=1
    ).astype(np.float32)  # SAHI's own layout and dtype (ObjectPredictionList.tonumpy)
    groups = batched_greedy_nmm(predictions, SAHI_METRIC[match_metric], match_threshold)
    return {int(kept): [int(i) for i in taken] for kept, taken in groups.items()}


def sahi_postprocess(
    predictions: list[Any], *, method: str, match_metric: str, match_threshold: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Run SAHI's class-aware `GreedyNMMPostprocess` ("nmm") or `NMSPostprocess` ("nms").

    Args:
        predictions: SAHI `ObjectPrediction`s (`object_predictions`).
        method: "nmm" or "nms"; match_metric: "ios" or "iou"; match_threshold: in [0, 1].
    Returns:
        boxes float64 [K, 4] xyxy, scores float64 [K], labels int64 [K], by decreasing
        score (ties: SAHI's output order).
    """
    from sahi.postprocess import combine

    postprocess = getattr(combine, SAHI_POSTPROCESS[method])(
        match_threshold=match_threshold,
        match_metric=SAHI_METRIC[match_metric],
        class_agnostic=False,
    )
    # A copy: SAHI writes each merged prediction back into the list it is given.
    merged = postprocess(list(predictions))
    boxes = torch.tensor(
        [[float(value) for value in p.bbox.to_xyxy()] for p in merged], dtype=torch.float64
    ).reshape(-1, 4)
    scores = torch.tensor([float(p.score.value) for p in merged], dtype=torch.float64)
    labels = torch.tensor([int(p.category.id) for p in merged], dtype=torch.int64)
    order = torch.sort(scores, descending=True, stable=True).indices
    return boxes[order], scores[order], labels[order]
