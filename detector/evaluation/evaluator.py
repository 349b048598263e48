"""COCO metrics (pycocotools' COCOeval, bbox) for records and per-image predictions.

    from detector.evaluation.evaluator import evaluate_detections
    result = evaluate_detections(split.records, predictions, split.names, dataset_format="voc")
    result.stats["AP"], result.per_class["dog"]["AP50"], result.voc["mAP"]
    print(result.summary)            # pycocotools' own 12-line table

The ground truth and the results are built in memory as pycocotools' own objects
(no JSON round trip) and scored by pycocotools' unmodified COCOeval, so every
number equals what pycocotools prints for the same data written to JSON files.
Semantics inherited from COCOeval, stated here because they surprise people:

- `ignore` boxes (VOC difficult, COCO iscrowd) are COCO crowd regions: a detection
  matching one is neither a true nor a false positive. (A crowd region's overlap is
  intersection over the *detection's* area, and it can absorb several detections.)
- maxDets: only the 100 highest-scoring detections per image *and category* are
  counted; pycocotools applies the limit per (image, category) pair. The COCO
  challenge additionally limits submissions to 100 per image, which is what
  `eval.max_det: 100` in the config does when predicting.
- Box areas for the small/medium/large ranges are box width*height (the records
  carry no segmentation areas), so APs/APm/APl can differ slightly from COCO's
  official numbers computed with mask areas.
- A stat whose area range has no ground truth is -1, as pycocotools reports it.
  A class without ground truth has no AP: its per-class values are NaN in Python
  and null in JSON, and its detections do not count anywhere.
- No predictions at all gives AP 0 (pycocotools' own loadRes([]) would raise).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.config import VOC_METRICS
from detector.data.record import SampleRecord
from detector.evaluation.coco_format import (
    check_category_ids,
    predictions_to_coco_results,
    records_to_coco,
)
from detector.evaluation.voc_metric import voc_ap_per_class

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class EvalResult:
    """What one evaluation produced.

    Attributes:
        stats: the 12 COCO stats, keys `STAT_KEYS`, floats in 0..1 (-1: no ground truth).
        per_class: name -> {"AP": AP@[.5:.95], "AP50": AP@.5, "num_gt": non-ignored boxes};
            NaN APs for classes without ground truth.
        voc: None, or {"metric": "area"|"11point", "AP50": {name: AP}, "mAP": mean over
            classes with ground truth}.
        summary: pycocotools' summarize() table as text.
        num_images, num_predictions: what was scored.
        coco_eval: the accumulated COCOeval (its `eval["precision"]` feeds the PR plots).
    """

    stats: dict[str, float]
    per_class: dict[str, dict[str, float]]
    voc: dict[str, Any] | None
    summary: str
    num_images: int
    num_predictions: int
    coco_eval: COCOeval | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON document `detector evaluate --json` writes (NaN -> null)."""

        def clean(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, float) and math.isnan(value):
                return None
            return value

        out: dict[str, Any] = {key: self.stats[key] for key in STAT_KEYS}
        out["per_class"] = clean(self.per_class)
        if self.voc is not None:
            out["voc"] = clean(self.voc)
        out["num_images"] = self.num_images
        out["num_predictions"] = self.num_predictions
        return out


def _quiet() -> contextlib.AbstractContextManager:
    """pycocotools prints progress lines on every call; capture them instead."""
    return contextlib.redirect_stdout(io.StringIO())


def coco_ground_truth(gt: dict[str, Any]) -> COCO:
    """A pycocotools COCO object from a ground-truth dict (as `records_to_coco` builds)."""
    coco = COCO()
    coco.dataset = gt
    with _quiet():
        coco.createIndex()
    return coco


def coco_detections(coco_gt: COCO, results: Sequence[Mapping[str, Any]]) -> COCO:
    """The results COCO object pycocotools' `loadRes` would build for bbox results.

    Same fields as loadRes (id from 1 in list order, area = w*h, iscrowd 0), minus
    the polygon it adds for segm evaluation; unlike loadRes it accepts an empty list.
    The input dicts are not modified.
    """
    annotations = [
        {**r, "area": r["bbox"][2] * r["bbox"][3], "id": i + 1, "iscrowd": 0}
        for i, r in enumerate(results)
    ]
    coco = COCO()
    coco.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": annotations,
    }
    with _quiet():
        coco.createIndex()
    return coco


def run_cocoeval(coco_gt: COCO, coco_dt: COCO) -> tuple[COCOeval, str]:
    """evaluate + accumulate + summarize (bbox); returns the evaluator and its table."""
    coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
    with _quiet():
        coco_eval.evaluate()
        coco_eval.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        coco_eval.summarize()
    return coco_eval, table.getvalue()


def per_class_ap(
    coco_eval: COCOeval, names: Sequence[str], category_ids: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Per-class AP@[.5:.95] and AP@.5 from the accumulated precision array.

    precision is [T iou, R recall, K category, A area, M maxDets] with K in the order of
    `params.catIds` (sorted ids), so each class is looked up by its category id, never
    by position. Values equal COCOeval's own summary run with `params.catIds=[id]`.
    """
    params = coco_eval.params
    precision = coco_eval.eval["precision"]
    area_all = params.areaRngLbl.index("all")
    max_det = len(params.maxDets) - 1  # the largest maxDets (100)
    iou_50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    gt_counts = {c: 0 for c in category_ids}
    for ann in coco_eval.cocoGt.dataset["annotations"]:
        if not ann.get("iscrowd", 0):
            gt_counts[ann["category_id"]] += 1
    out: dict[str, dict[str, float]] = {}
    for name, category in zip(names, category_ids, strict=True):
        k = list(params.catIds).index(category)
        values = {}
        for key, block in (
            ("AP", precision[:, :, k, area_all, max_det]),
            ("AP50", precision[iou_50, :, k, area_all, max_det]),
        ):
            valid = block[block > -1]  # -1 marks "no ground truth", as in summarize()
            values[key] = float(np.mean(valid)) if valid.size else float("nan")
        values["num_gt"] = gt_counts[category]
        out[name] = values
    return out


def resolve_voc_metric(voc_metric: str, dataset_format: str | None) -> str | None:
    """'auto' -> 'area' for VOC data, otherwise off; returns 'area', '11point' or None."""
    if voc_metric not in VOC_METRICS:
        raise ValueError(f"voc_metric {voc_metric!r} is not one of {list(VOC_METRICS)}")
    if voc_metric == "auto":
        return "area" if dataset_format == "voc" else None
    return None if voc_metric == "none" else voc_metric


def evaluate_detections(
    records: list[SampleRecord],
    predictions: Mapping[int, Mapping[str, Any]],
    names: list[str],
    *,
    category_ids: list[int] | None = None,
    voc_metric: str = "auto",
    dataset_format: str | None = None,
) -> EvalResult:
    """Score per-image predictions against the records with COCOeval (and the VOC metric).

    Args:
        records: ground truth; `ignore` boxes are crowd/difficult regions.
        predictions: image_id -> {"boxes": [K, 4] xyxy original-image px, "scores": [K],
            "labels": [K] int 0..C-1}; images missing from it have no detections.
            Every image id must belong to `records` (else CocoFormatError naming it).
        names: class names, index = label.
        category_ids: COCO id per label (default 1..C); only changes the ids written,
            never the numbers.
        voc_metric: "auto" (VOC data: area), "area", "11point" or "none".
        dataset_format: "voc" | "coco" | "yolo", used by voc_metric="auto".

    Returns:
        EvalResult (see its attributes).
    """
    if not records:
        raise ValueError("no images to evaluate: the split has no usable records")
    ids = check_category_ids(category_ids, names)
    metric = resolve_voc_metric(voc_metric, dataset_format)
    gt = records_to_coco(records, names, ids)
    results = predictions_to_coco_results(predictions, ids, image_ids=(r.image_id for r in records))
    coco_gt = coco_ground_truth(gt)
    coco_eval, summary = run_cocoeval(coco_gt, coco_detections(coco_gt, results))
    stats = {key: float(value) for key, value in zip(STAT_KEYS, coco_eval.stats, strict=True)}
    voc = None
    if metric is not None:
        aps = voc_ap_per_class(records, predictions, len(names), use_11point=metric == "11point")
        voc = {
            "metric": metric,
            "AP50": {name: float(ap) for name, ap in zip(names, aps, strict=True)},
            "mAP": float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan"),
        }
    return EvalResult(
        stats=stats,
        per_class=per_class_ap(coco_eval, names, ids),
        voc=voc,
        summary=summary,
        num_images=len(records),
        num_predictions=len(results),
        coco_eval=coco_eval,
    )


def format_table(result: EvalResult) -> str:
    """A readable text table: the 12 stats, then per-class AP, AP50 (and VOC AP50)."""
    lines = [
        "  ".join(f"{key:>6}" for key in STAT_KEYS),
        "  ".join(f"{result.stats[key]:6.3f}" for key in STAT_KEYS),
        "",
    ]
    voc_aps = result.voc["AP50"] if result.voc else None
    width = max([len("class")] + [len(name) for name in result.per_class])
    header = f"{'class':<{width}}  {'GT':>6}  {'AP':>6}  {'AP50':>6}"
    if voc_aps is not None:
        header += f"  {'VOC AP50 (' + result.voc['metric'] + ')':>20}"
    lines.append(header)

    def fmt(value: float, size: int = 6) -> str:
        return f"{'-':>{size}}" if math.isnan(value) else f"{value:{size}.3f}"

    for name, values in result.per_class.items():
        line = (
            f"{name:<{width}}  {values['num_gt']:>6d}  {fmt(values['AP'])}  {fmt(values['AP50'])}"
        )
        if voc_aps is not None:
            line += f"  {fmt(voc_aps[name], 20)}"
        lines.append(line)
    if voc_aps is not None:
        lines.append(
            f"{'mAP':<{width}}  {'':>6}  {fmt(result.stats['AP'])}  {fmt(result.stats['AP50'])}"
            f"  {fmt(result.voc['mAP'], 20)}"
        )
    return "\n".join(lines)
