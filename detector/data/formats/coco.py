"""COCO JSON reader: instances files -> `SampleRecord`s, and the category-id mapping.

    names, category_ids = coco_category_ids(json.load(open(ann_file))["categories"], names=None)
    records, skipped, names = read_coco(Path("datasets/coco/val2017"),
                                        Path("datasets/coco/annotations/instances_val2017.json"),
                                        names=None, min_box_size=1.0)

Conventions, stated once:

- COCO category ids are not contiguous (1..90 with gaps for the 80 classes).
  Labels are contiguous indices into `names`; `category_ids[label]` gives the
  id back, for writing results in COCO's own ids. `names` omitted means every
  category in increasing id order; given, it selects and orders classes
  (annotations of other categories are left out) and a name that is not a
  category of the file is an error.
- `iscrowd=1` annotations are kept with `ignore=True`.
- `bbox` is `[x, y, width, height]` in 0-based continuous pixels: `xyxy = (x, y,
  x + width, y + height)`. A zero width or height is dropped (see
  `detector.data.formats.annotations`); a negative one, NaN or a missing bbox is an
  error naming the file and the annotation id.
- Images without annotations are kept as negatives. `image_id` is COCO's own id.
- The image size comes from the image header, like the other formats; a
  disagreeing `width`/`height` in the JSON is counted in `ReadStats`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from detector.data.formats.annotations import (
    AnnotationError,
    ReadStats,
    check_boxes_xyxy,
    clip_and_filter,
)
from detector.data.images import DEFAULT_MAX_IMAGE_PIXELS, ImageReadError, probe_images
from detector.data.record import SampleRecord, SkippedSample


def default_category_ids(num_classes: int) -> list[int]:
    """COCO category ids `1..num_classes` for labels `0..num_classes - 1` of data without ids
    of its own (VOC, YOLO): the one place this mapping is written."""
    return list(range(1, num_classes + 1))


def coco_category_ids(
    categories: list[dict[str, Any]], names: list[str] | None = None
) -> tuple[list[str], list[int]]:
    """Map COCO categories to contiguous labels.

    Args:
        categories: the file's `categories` list of `{"id": int, "name": str}`.
        names: class names to keep, in label order; None keeps all, sorted by id.

    Returns:
        (names, category_ids): `names[label]` and `category_ids[label]` for each
        contiguous label 0..K-1.

    Raises:
        AnnotationError: a category that is not {id: int, name: str}, a duplicate
            id or name, or a name not among the categories.
    """
    for category in categories:
        if not (
            isinstance(category, dict)
            and isinstance(category.get("id"), int)
            and not isinstance(category["id"], bool)
            and isinstance(category.get("name"), str)
        ):
            raise AnnotationError(
                f"a category must be {{id: integer, name: string}}, got {category!r}"
            )
    if len({category["id"] for category in categories}) != len(categories):
        raise AnnotationError("two categories share an id")
    by_name: dict[str, int] = {}
    for category in sorted(categories, key=lambda c: c["id"]):
        if category["name"] in by_name:
            raise AnnotationError(f"category name {category['name']!r} appears twice")
        by_name[category["name"]] = int(category["id"])
    if names is None:
        return list(by_name), list(by_name.values())
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise AnnotationError(
            f"data.names: {unknown[0]!r} is not a category of this file "
            f"(categories: {', '.join(by_name)})"
        )
    return list(names), [by_name[name] for name in names]


def load_coco_json(annotation_file: Path) -> dict[str, Any]:
    """Read and sanity-check an instances JSON file; errors name the file."""
    if not annotation_file.is_file():
        raise FileNotFoundError(
            f"{annotation_file}: COCO annotation file not found (see datasets/README.md)"
        )
    try:
        content = json.loads(annotation_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{annotation_file}: malformed JSON ({exc})") from None
    if not isinstance(content, dict):
        raise AnnotationError(
            f"{annotation_file}: expected a JSON object with images, annotations, categories"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            raise AnnotationError(f"{annotation_file}: missing or non-list {key!r}")
    return content


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _annotation_box(annotation: dict[str, Any], where: str) -> list[float]:
    bbox = annotation.get("bbox")
    try:
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            raise TypeError
        x, y, width, height = (float(value) for value in bbox)
    except (TypeError, OverflowError):  # OverflowError: an integer beyond float range
        raise AnnotationError(
            f"{where}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}"
        ) from None
    return [x, y, x + width, y + height]


def _hashable(value: Any) -> bool:
    return isinstance(value, (int, str, float, bool, type(None)))


def read_coco(
    images_dir: Path,
    annotation_file: Path,
    *,
    names: list[str] | None,
    min_box_size: float,
    decode: bool = False,
    stats: ReadStats | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[list[SampleRecord], list[SkippedSample], list[str]]:
    """Read one COCO instances file and its image folder.

    Args:
        images_dir: folder the `file_name`s are relative to.
        annotation_file: the instances JSON.
        names: classes to keep, in label order; None: all categories in id order.
        min_box_size: boxes narrower or shorter than this after clipping are dropped.
        decode: fully decode each image at start-up instead of reading its header.
        stats: box-policy counts are added here.
        max_pixels: images whose header claims more pixels are skipped.

    Returns:
        (records in the file's image order, skipped samples, names).

    Raises:
        FileNotFoundError: no annotation file. AnnotationError (a ValueError):
            malformed content (message names the file and the annotation or image id).
    """
    content = load_coco_json(annotation_file)
    stats = stats if stats is not None else ReadStats()
    try:
        names, category_ids = coco_category_ids(content["categories"], names)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"{annotation_file}: bad categories ({exc})") from None
    label_of = {category_id: label for label, category_id in enumerate(category_ids)}
    known_categories = {category["id"] for category in content["categories"]}

    images: dict[int, dict[str, Any]] = {}
    for image in content["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise AnnotationError(
                f"{annotation_file}: an image entry lacks 'id' or 'file_name': {image!r}"
            )
        if isinstance(image["id"], bool) or not isinstance(image["id"], int):
            raise AnnotationError(f"{annotation_file}: image id {image['id']!r} is not an integer")
        if (
            not isinstance(image["file_name"], str)
            or not image["file_name"]
            or "\0" in image["file_name"]
        ):
            raise AnnotationError(
                f"{annotation_file}: image {image['id']} has file_name {image['file_name']!r}, "
                "not a path string"
            )
        if image["id"] in images:
            raise AnnotationError(f"{annotation_file}: image id {image['id']} appears twice")
        images[image["id"]] = image

    per_image: dict[int, list[tuple[list[float], int, bool]]] = {
        image_id: [] for image_id in images
    }
    for index, annotation in enumerate(content["annotations"]):
        if not isinstance(annotation, dict):
            raise AnnotationError(
                f"{annotation_file}: annotations[{index}] is not an object: {annotation!r}"
            )
        where = f"{annotation_file}: annotation {annotation.get('id')}"
        category_id = annotation.get("category_id")
        if not _hashable(category_id) or category_id not in known_categories:
            raise AnnotationError(f"{where} has category_id {category_id!r}, not in 'categories'")
        if not _hashable(annotation.get("image_id")) or annotation.get("image_id") not in per_image:
            raise AnnotationError(
                f"{where} refers to image_id {annotation.get('image_id')!r}, not in 'images'"
            )
        box = _annotation_box(annotation, where)
        check_boxes_xyxy(np.array([box]), where, ["bbox"])
        if category_id in label_of:
            per_image[annotation["image_id"]].append(
                (box, label_of[category_id], bool(annotation.get("iscrowd", 0)))
            )

    image_ids = list(images)
    paths = [images_dir / images[image_id]["file_name"] for image_id in image_ids]
    records: list[SampleRecord] = []
    skipped: list[SkippedSample] = []
    for image_id, path, size in zip(
        image_ids, paths, probe_images(paths, decode=decode, max_pixels=max_pixels), strict=True
    ):
        if isinstance(size, ImageReadError):
            skipped.append(SkippedSample(size.path, size.reason))
            continue
        height, width = size
        declared = (images[image_id].get("height"), images[image_id].get("width"))
        if None not in declared and declared != (height, width):
            stats.size_mismatches += 1
        objects = per_image[image_id]
        boxes, labels, ignore = clip_and_filter(
            np.array([box for box, _, _ in objects], np.float32).reshape(-1, 4),
            np.array([label for _, label, _ in objects], np.int64),
            np.array([crowd for _, _, crowd in objects], bool),
            width=width,
            height=height,
            min_box_size=min_box_size,
            stats=stats,
        )
        records.append(
            SampleRecord(
                image_path=str(path),
                width=width,
                height=height,
                boxes=boxes,
                labels=labels,
                ignore=ignore,
                image_id=int(image_id),
                source_id=int(image_id),
            )
        )
    return records, skipped, names
