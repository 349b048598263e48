"""Convert records and predictions to and from the COCO JSON formats, with ids checked.

    gt = records_to_coco(split.records, split.names)                  # COCO ground-truth dict
    results = predictions_to_coco_results(predictions, category_ids(split.names),
                                          image_ids=[r.image_id for r in split.records])
    json.dump(results, open("predictions.json", "w"))                 # standard COCO results
    predictions = load_coco_results("predictions.json", category_ids(split.names))

Internally a class is a contiguous label `0..C-1` (an index into `names`); COCO files
use category ids, which may be any distinct integers (COCO 2017's run 1..90 with gaps).
`category_ids[label]` is the COCO id of `label`. Without an explicit list the ids are
`1..C` (COCO's convention; VOC and YOLO data have no ids of their own). Every
conversion checks ids both ways and raises naming the offending id, because
pycocotools silently scores an unknown or shifted category id as a miss (AP 0).

Boxes: records and predictions hold xyxy pixels; COCO holds `[x, y, width, height]`.
Widths are computed in float64 so that the JSON written and the objects built in
memory hold bit-identical numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detector.data.formats.coco import default_category_ids
from detector.data.record import SampleRecord

FLOAT32_MAX = float(np.finfo(np.float32).max)


class CocoFormatError(ValueError):
    """Ids or fields that do not match the ground truth they are scored against."""


def check_category_ids(category_ids: Sequence[int] | None, names: Sequence[str]) -> list[int]:
    """Validate (or default) the label -> category id list for `names`.

    Returns:
        list of `len(names)` distinct ints.
    """
    if category_ids is None:
        return default_category_ids(len(names))
    ids = [int(c) for c in category_ids]
    if len(ids) != len(names):
        raise CocoFormatError(f"{len(ids)} category ids for {len(names)} class names")
    if len(set(ids)) != len(ids):
        duplicate = next(c for c in ids if ids.count(c) > 1)
        raise CocoFormatError(f"category id {duplicate} is given to more than one class")
    return ids


def boxes_xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """xyxy [N, 4] -> COCO `[x, y, width, height]` [N, 4], float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def boxes_xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO `[x, y, width, height]` [N, 4] -> xyxy [N, 4], float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def records_to_coco(
    records: list[SampleRecord], names: list[str], category_ids: list[int] | None = None
) -> dict[str, Any]:
    """COCO ground truth (the `instances_*.json` layout) for a list of records.

    Args:
        records: the split's samples; `image_id`s must be unique.
        names: class names; `labels` index into it.
        category_ids: COCO id per label (default `1..C`).

    Returns:
        dict with `images` (id, width, height, file_name), `annotations` (id from 1,
        image_id, category_id, bbox xywh, area = box width*height, iscrowd = the
        record's `ignore` flag) and `categories` (id, name). Annotation ids start at 1
        because pycocotools reads id 0 as "unmatched".
    """
    ids = check_category_ids(category_ids, names)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[int] = set()
    for record in records:
        image_id = int(record.image_id)
        if image_id in seen:
            raise CocoFormatError(f"image id {image_id} appears twice ({record.image_path})")
        seen.add(image_id)
        images.append(
            {
                "id": image_id,
                "width": int(record.width),
                "height": int(record.height),
                "file_name": Path(record.image_path).name,
            }
        )
        if len(record.labels) and (record.labels.min() < 0 or record.labels.max() >= len(ids)):
            bad = int(record.labels[(record.labels < 0) | (record.labels >= len(ids))][0])
            raise CocoFormatError(f"{record.image_path}: label {bad} is outside 0..{len(ids) - 1}")
        xywh = boxes_xyxy_to_xywh(record.boxes)
        areas = (xywh[:, 2] * xywh[:, 3]).tolist()
        for box, area, label, crowd in zip(
            xywh.tolist(), areas, record.labels.tolist(), record.ignore.tolist(), strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[label],
                    "bbox": box,
                    "area": area,
                    "iscrowd": int(crowd),
                }
            )
    categories = [{"id": c, "name": n} for c, n in zip(ids, names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _check_prediction(
    image_id: int, pred: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (boxes [K,4], scores [K], labels [K]) of one image's prediction dict, checked."""
    try:
        boxes = np.asarray(pred["boxes"], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(pred["scores"], dtype=np.float64).reshape(-1)
        labels = np.asarray(pred["labels"]).reshape(-1)
    except KeyError as exc:
        raise CocoFormatError(f"prediction for image {image_id} has no {exc.args[0]!r}") from None
    if not (len(boxes) == len(scores) == len(labels)):
        raise CocoFormatError(
            f"prediction for image {image_id}: {len(boxes)} boxes, {len(scores)} scores, "
            f"{len(labels)} labels"
        )
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise CocoFormatError(f"prediction for image {image_id} has non-finite boxes or scores")
    return boxes, scores, labels.astype(np.int64)


def predictions_to_coco_results(
    predictions: Mapping[int, Mapping[str, Any]],
    category_ids: Sequence[int],
    *,
    image_ids: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """Per-image predictions -> the standard COCO results list.

    Args:
        predictions: image_id -> {"boxes": [K, 4] xyxy original-image px,
            "scores": [K], "labels": [K] int labels 0..C-1}.
        category_ids: COCO id per label.
        image_ids: when given, every prediction's image id must be one of them.

    Returns:
        list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}, images in
        the order of `predictions`, boxes in their given order.
    """
    ids = np.asarray(list(category_ids), dtype=np.int64)
    known = None if image_ids is None else {int(i) for i in image_ids}
    results: list[dict[str, Any]] = []
    for image_id, pred in predictions.items():
        image_id = int(image_id)
        if known is not None and image_id not in known:
            raise CocoFormatError(
                f"prediction for image id {image_id}, which is not in the ground truth"
            )
        boxes, scores, labels = _check_prediction(image_id, pred)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(ids)):
            bad = int(labels[(labels < 0) | (labels >= len(ids))][0])
            raise CocoFormatError(
                f"prediction for image {image_id}: label {bad} is outside 0..{len(ids) - 1}"
            )
        for box, score, category in zip(
            boxes_xyxy_to_xywh(boxes).tolist(), scores.tolist(), ids[labels].tolist(), strict=True
        ):
            results.append(
                {"image_id": image_id, "category_id": category, "bbox": box, "score": score}
            )
    return results


def _is_number(value: Any) -> bool:
    """An int or float that is not a bool (JSON true/false would pass as 1/0)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: int | float) -> float | None:
    """`value` as a finite float, or None (NaN, infinity, an int beyond float range)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _parse_result_entry(
    item: Any, index: int, source: str, image_aliases: Mapping[str, int] | None
) -> tuple[int, int, list[float], float]:
    """Check one COCO results entry; (image_id, category_id, bbox xywh, score) or CocoFormatError.

    Ids must be JSON integers (a string image id is resolved through
    `image_aliases`); a float or boolean id is refused rather than truncated.
    bbox must be 4 finite numbers with width and height >= 0; score finite.
    """
    where = f"{source}: entry {index}"
    if not isinstance(item, Mapping) or not {"image_id", "category_id", "bbox", "score"} <= set(
        item
    ):
        raise CocoFormatError(f"{where} is not a detection with image_id, category_id, bbox, score")
    image_id, category = item["image_id"], item["category_id"]
    if isinstance(image_id, str):
        alias = (image_aliases or {}).get(image_id)
        if alias is None or alias < 0:
            why = (
                "is ambiguous (several images share it)"
                if alias is not None
                else "matches no image"
            )
            raise CocoFormatError(f"{source}: image id {image_id!r} (entry {index}) {why}")
        image_id = alias
    elif isinstance(image_id, bool) or not isinstance(image_id, int):
        raise CocoFormatError(
            f"{where}: image_id {image_id!r} must be an integer or an image name string"
        )
    if isinstance(category, bool) or not isinstance(category, int):
        raise CocoFormatError(f"{where}: category_id {category!r} must be an integer")
    raw_box = item["bbox"]
    if (
        not isinstance(raw_box, (list, tuple))
        or len(raw_box) != 4
        or not all(map(_is_number, raw_box))
    ):
        raise CocoFormatError(
            f"{where}: bbox must be 4 finite numbers [x, y, width, height], got {raw_box!r}"
        )
    bbox = [_finite(value) for value in raw_box]
    if None in bbox:
        raise CocoFormatError(
            f"{where}: bbox must be 4 finite numbers [x, y, width, height], got {raw_box!r}"
        )
    x, y, width, height = bbox  # type: ignore[misc]
    if width < 0 or height < 0:
        raise CocoFormatError(f"{where}: bbox width and height must be >= 0, got {raw_box!r}")
    if max(abs(x), abs(y), abs(x + width), abs(y + height)) > FLOAT32_MAX:  # kept as float32 xyxy
        raise CocoFormatError(f"{where}: bbox {raw_box!r} is beyond float32 range")
    score = _finite(item["score"]) if _is_number(item["score"]) else None
    if score is None:
        raise CocoFormatError(f"{where}: score must be a finite number, got {item['score']!r}")
    return int(image_id), int(category), bbox, score  # type: ignore[return-value]


def coco_results_to_predictions(
    results: Sequence[Mapping[str, Any]],
    category_ids: Sequence[int],
    *,
    image_ids: Iterable[int] | None = None,
    image_aliases: Mapping[str, int] | None = None,
    source: str = "results",
) -> dict[int, dict[str, np.ndarray]]:
    """The inverse of `predictions_to_coco_results`.

    Args:
        results: list of {"image_id", "category_id", "bbox" xywh, "score"}.
        category_ids: COCO id per label; an unknown category id raises naming it.
        image_ids: when given, an unknown image id raises naming it; every one of these
            images gets an entry (empty arrays when it has no detections).
        image_aliases: string image ids another tool may write (VOC/YOLO file stems such
            as "000005", file names) -> our integer image id. A string image_id is only
            ever resolved through this table (never parsed as a number: "000005" is not
            image 5), and an unknown or ambiguous string raises naming it.
        source: what to call the input in error messages (e.g. the file name).

    Returns:
        image_id -> {"boxes": float32 [K, 4] xyxy, "scores": float32 [K], "labels": int64 [K]}.
    """
    label_of = {int(c): label for label, c in enumerate(category_ids)}
    known = None if image_ids is None else [int(i) for i in image_ids]
    known_set = None if known is None else set(known)
    grouped: dict[int, list[tuple[list[float], float, int]]] = {i: [] for i in known or []}
    for index, item in enumerate(results):
        image_id, category, bbox, score = _parse_result_entry(item, index, source, image_aliases)
        if known_set is not None and image_id not in known_set:
            raise CocoFormatError(
                f"{source}: image id {image_id} (entry {index}) is not in the ground truth"
            )
        if category not in label_of:
            raise CocoFormatError(
                f"{source}: category id {category} (entry {index}) is not one of the dataset's "
                f"{sorted(label_of)}"
            )
        grouped.setdefault(image_id, []).append((bbox, score, label_of[category]))
    predictions: dict[int, dict[str, np.ndarray]] = {}
    for image_id, items in grouped.items():
        boxes = boxes_xywh_to_xyxy(
            np.array([b for b, _, _ in items], dtype=np.float64).reshape(-1, 4)
        )
        predictions[image_id] = {
            "boxes": boxes.astype(np.float32),
            "scores": np.array([s for _, s, _ in items], dtype=np.float32),
            "labels": np.array([lab for _, _, lab in items], dtype=np.int64),
        }
    return predictions


def load_coco_results(
    path: str | Path,
    category_ids: Sequence[int],
    *,
    image_ids: Iterable[int] | None = None,
    image_aliases: Mapping[str, int] | None = None,
) -> dict[int, dict[str, np.ndarray]]:
    """Read a COCO results JSON file into per-image predictions
    (see `coco_results_to_predictions`)."""
    path = Path(path)
    if not path.is_file():
        raise CocoFormatError(f"{path}: predictions file not found")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CocoFormatError(f"{path}: not valid JSON ({exc or 'nested too deeply'})") from None
    if not isinstance(results, list):
        raise CocoFormatError(f"{path}: expected a JSON list of detections (COCO results format)")
    return coco_results_to_predictions(
        results, category_ids, image_ids=image_ids, image_aliases=image_aliases, source=str(path)
    )


def image_id_aliases(records: Sequence[SampleRecord]) -> dict[str, int]:
    """String names of each record -> its image id: source id, file name and file stem.

    A name shared by two different images maps to -1 (ambiguous), which
    `coco_results_to_predictions` reports instead of guessing.
    """
    aliases: dict[str, int] = {}
    for record in records:
        path = Path(record.image_path)
        for name in {str(record.source_id), path.name, path.stem}:
            previous = aliases.setdefault(name, record.image_id)
            if previous != record.image_id:
                aliases[name] = -1
    return aliases


def save_coco_results(path: str | Path, results: list[dict[str, Any]]) -> None:
    """Write a COCO results list as JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results), encoding="utf-8")
