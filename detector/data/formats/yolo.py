"""YOLO txt reader: image folders or list files, one `.txt` of normalised boxes per image.

    records, skipped = read_yolo_source(Path("datasets/coco128/images/train2017"),
                                        names, min_box_size=1.0)

Conventions, stated once:

- A source is an image folder (searched recursively for .jpg .jpeg .png .bmp
  .tif .tiff .webp) or a text file listing one image path per line; relative
  paths in a list file are relative to the list file's folder.
- The label file of `.../images/.../x.jpg` is `.../labels/.../x.txt` (the last
  `images` folder in the path becomes `labels`); a path without an `images`
  folder is an error.
- Each non-blank line is `class cx cy w h`: an integer class index into
  `data.names` and the box centre and size normalised to 0..1 by the image's
  width and height. The box becomes `xyxy = ((cx - w/2) W, (cy - h/2) H,
  (cx + w/2) W, (cy + h/2) H)` in pixels of the EXIF-oriented image.
- An empty label file and a missing label file both mean "no objects": the
  image is kept as a negative (missing files are counted in `ReadStats`).
- A line without exactly 5 numbers, a class index out of range, NaN or a
  negative size raise `AnnotationError` (a `ValueError`) naming the file and the line.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from detector.data.formats.annotations import (
    AnnotationError,
    ReadStats,
    check_boxes_xyxy,
    clip_and_filter,
)
from detector.data.images import DEFAULT_MAX_IMAGE_PIXELS, ImageReadError, probe_images
from detector.data.record import SampleRecord, SkippedSample

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def yolo_label_path(image_path: Path) -> Path:
    """The label file of an image: the last `images` folder becomes `labels`, suffix `.txt`."""
    parts = list(image_path.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts).with_suffix(".txt")
    raise AnnotationError(
        f"{image_path}: YOLO layout needs an 'images' folder in the path (its labels "
        "are read from the matching 'labels' folder)"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(
            f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
        ) from None


def list_yolo_images(source: Path) -> list[Path]:
    """Images of a source: a folder (recursive, sorted) or a list file (in its order)."""
    if source.is_dir():
        return sorted(
            p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    if source.is_file():
        lines = [line.strip() for line in _read_text(source).splitlines()]
        for number, line in enumerate(lines, start=1):
            if "\0" in line:
                raise AnnotationError(f"{source}: line {number}: a path with a NUL character")
        return [
            path if path.is_absolute() else source.parent / path
            for path in map(Path, filter(None, lines))
        ]
    raise FileNotFoundError(
        f"{source}: YOLO image folder or list file not found (see datasets/README.md)"
    )


def parse_yolo_labels(label_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one label file.

    Args:
        label_path: the `.txt` file (must exist).
        num_classes: class indices must be in 0..num_classes-1.

    Returns:
        (boxes float32 [N, 4] normalised cxcywh, labels int64 [N]).

    Raises:
        AnnotationError: naming the file and line for a malformed line, an
            out-of-range class, a non-finite value, a negative size or bytes that
            are not UTF-8.
    """
    boxes, labels = [], []
    for line_number, line in enumerate(_read_text(label_path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_path}: line {line_number}"
        if len(fields) != 5:
            raise AnnotationError(
                f"{where}: expected 'class cx cy w h', got {len(fields)} values: {line.strip()!r}"
            )
        try:
            class_value = float(fields[0])
            values = [float(field) for field in fields[1:]]
        except ValueError:
            raise AnnotationError(f"{where}: not a number in {line.strip()!r}") from None
        if not class_value.is_integer() or not 0 <= class_value < num_classes:
            raise AnnotationError(
                f"{where}: class index {fields[0]} out of range 0..{num_classes - 1} (data.names)"
            )
        if not all(math.isfinite(value) for value in values) or values[2] < 0 or values[3] < 0:
            raise AnnotationError(f"{where}: bad box {fields[1:]} (NaN, infinite or negative size)")
        boxes.append(values)
        labels.append(int(class_value))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def read_yolo_source(
    source: Path,
    names: list[str],
    *,
    min_box_size: float,
    decode: bool = False,
    stats: ReadStats | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[list[SampleRecord], list[SkippedSample]]:
    """Read one YOLO image folder or list file with its labels.

    Args:
        source: image folder or list file.
        names: class names (label order); indices in the files refer to them.
        min_box_size: boxes narrower or shorter than this after clipping are dropped.
        decode: fully decode each image at start-up instead of reading its header.
        stats: box-policy counts and missing label files are added here.
        max_pixels: images whose header claims more pixels are skipped.

    Returns:
        (records with image_id 0..N-1 and source_id = file stem, skipped samples).
    """
    stats = stats if stats is not None else ReadStats()
    image_paths = list_yolo_images(source)
    annotations = []
    for image_path in image_paths:
        label_path = yolo_label_path(image_path)
        if label_path.is_file():
            annotations.append(parse_yolo_labels(label_path, len(names)))
        else:
            stats.missing_label_files += 1
            annotations.append((np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))

    records: list[SampleRecord] = []
    skipped: list[SkippedSample] = []
    sizes = probe_images(image_paths, decode=decode, max_pixels=max_pixels)
    for image_path, (cxcywh, labels), size in zip(image_paths, annotations, sizes, strict=True):
        if isinstance(size, ImageReadError):
            skipped.append(SkippedSample(size.path, size.reason))
            continue
        height, width = size
        cxcywh = cxcywh.astype(np.float64)
        xyxy = np.concatenate(
            [cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1
        )
        xyxy *= np.array([width, height, width, height], np.float64)
        xyxy = check_boxes_xyxy(xyxy, str(yolo_label_path(image_path)))
        boxes, labels, ignore = clip_and_filter(
            xyxy,
            labels,
            np.zeros(len(labels), bool),
            width=width,
            height=height,
            min_box_size=min_box_size,
            stats=stats,
        )
        records.append(
            SampleRecord(
                image_path=str(image_path),
                width=width,
                height=height,
                boxes=boxes,
                labels=labels,
                ignore=ignore,
                image_id=len(records),
                source_id=image_path.stem,
            )
        )
    return records, skipped
