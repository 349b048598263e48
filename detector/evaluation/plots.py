"""Evaluation plots as PNG files: PR curves per class at IoU 0.5 and a confusion matrix.

    from detector.evaluation.plots import save_eval_plots
    paths = save_eval_plots(result, records, predictions, names, "runs/eval")
    # -> [runs/eval/pr_curves.png, runs/eval/confusion_matrix.png]

The PR curves are read from COCOeval's accumulated precision (IoU 0.5, all areas,
100 detections), so they are the curves whose mean is the reported AP50. The
confusion matrix is computed here: detections above a score threshold are matched
one-to-one to ground-truth boxes of any class at IoU >= 0.5, highest IoU first;
row = true class, column = predicted class, with a "background" row (detections
matching nothing: false positives) and column (boxes no detection matched: misses).
Detections that only overlap an ignored (crowd/difficult) box are left out.
Uses matplotlib's Agg backend: no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from detector.data.formats.coco import default_category_ids  # noqa: E402
from detector.data.record import SampleRecord  # noqa: E402
from detector.defaults import DEFAULT_SCORE_THRESHOLD  # noqa: E402
from detector.evaluation.voc_metric import box_iou_arrays  # noqa: E402


def confusion_matrix(
    records: Sequence[SampleRecord],
    predictions: Mapping[int, Mapping[str, Any]],
    num_classes: int,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> np.ndarray:
    """Counts [C + 1, C + 1]: [true class, predicted class], index C = background."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    background = num_classes
    for record in records:
        pred = predictions.get(record.image_id, {})
        scores = np.asarray(pred.get("scores", np.zeros(0)), np.float64).reshape(-1)
        keep = scores >= score_threshold
        pred_boxes = np.asarray(pred.get("boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)[
            keep
        ]
        pred_labels = np.asarray(pred.get("labels", np.zeros(0)), np.int64).reshape(-1)[keep]
        gt_boxes, gt_labels = record.boxes[~record.ignore], record.labels[~record.ignore]
        iou = box_iou_arrays(gt_boxes, pred_boxes)  # [G, D]
        gt_used = np.zeros(len(gt_boxes), bool)
        pred_used = np.zeros(len(pred_boxes), bool)
        gt_index, pred_index = np.nonzero(iou >= iou_threshold)
        by_iou = np.argsort(-iou[gt_index, pred_index], kind="stable")
        for g, d in zip(
            gt_index[by_iou], pred_index[by_iou], strict=True
        ):  # greedy, highest IoU first
            if not gt_used[g] and not pred_used[d]:
                gt_used[g] = pred_used[d] = True
                matrix[gt_labels[g], pred_labels[d]] += 1
        np.add.at(matrix, (gt_labels[~gt_used], background), 1)
        unmatched = ~pred_used
        if record.ignore.any() and unmatched.any():
            on_ignored = (
                box_iou_arrays(pred_boxes[unmatched], record.boxes[record.ignore]).max(axis=1)
                >= iou_threshold
            )
            unmatched[np.flatnonzero(unmatched)[on_ignored]] = False
        np.add.at(matrix, (background, pred_labels[unmatched]), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path) -> Path:
    """Save the matrix as a heat map, each row normalised to 1 (counts in the cells)."""
    labels = [*names, "background"]
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 30:  # counts stay readable
        for i, j in zip(*np.nonzero(matrix), strict=True):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    ax.set_title("confusion matrix")
    return _save(fig, path)


def plot_pr_curves(
    coco_eval: Any, names: Sequence[str], category_ids: Sequence[int], path: str | Path
) -> Path:
    """Precision-recall at IoU 0.5 per class (and their mean), from an accumulated COCOeval."""
    params = coco_eval.params
    precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
    iou_50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    curves = precision[
        iou_50, :, :, params.areaRngLbl.index("all"), len(params.maxDets) - 1
    ]  # [R, K]
    recall = np.asarray(params.recThrs)
    fig, ax = plt.subplots(figsize=(7, 6))
    with_gt = []
    for name, category in zip(names, category_ids, strict=True):
        curve = curves[:, list(params.catIds).index(category)]
        if (curve < 0).all():  # no ground truth: no curve
            continue
        with_gt.append(curve)
        label = f"{name} {curve.mean():.3f}" if len(names) <= 20 else None
        ax.plot(recall, curve, linewidth=1, alpha=0.7, label=label)
    if with_gt:
        mean_curve = np.mean(with_gt, axis=0)
        ax.plot(
            recall,
            mean_curve,
            color="black",
            linewidth=2.5,
            label=f"all classes {mean_curve.mean():.3f}",
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="recall",
        ylabel="precision",
        title="precision-recall at IoU 0.5 (legend: AP50)",
    )
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def save_eval_plots(
    result: Any,
    records: Sequence[SampleRecord],
    predictions: Mapping[int, Mapping[str, Any]],
    names: Sequence[str],
    out_dir: str | Path,
    *,
    category_ids: Sequence[int] | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> list[Path]:
    """Write pr_curves.png and confusion_matrix.png into `out_dir`; returns their paths.

    Args:
        result: an EvalResult from `evaluate_detections` (its `coco_eval` is used).
        category_ids: the ids the evaluation used (default 1..C).
        score_threshold: detections below it are left out of the confusion matrix.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = list(category_ids) if category_ids is not None else default_category_ids(len(names))
    matrix = confusion_matrix(records, predictions, len(names), score_threshold=score_threshold)
    return [
        plot_pr_curves(result.coco_eval, names, ids, out_dir / "pr_curves.png"),
        plot_confusion_matrix(matrix, names, out_dir / "confusion_matrix.png"),
    ]


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
