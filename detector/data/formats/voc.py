"""PASCAL VOC reader: split files + XML annotations -> `SampleRecord`s.

    records, skipped = read_voc_split(
        Path("datasets/VOCdevkit/VOC2007/ImageSets/Main/trainval.txt"), names, min_box_size=1.0)

Layout: a split file `<dir>/ImageSets/Main/<split>.txt` lists image ids (first
token of each line, so the per-class files `<class>_<split>.txt` work too); image
`<dir>/JPEGImages/<id>.jpg` (or the XML's `<filename>` when that .jpg is absent),
annotation `<dir>/Annotations/<id>.xml`.

Conventions, stated once:

- VOC coordinates are 1-based and inclusive: `xmin=1, xmax=10` covers the first
  ten pixel columns. They become 0-based continuous coordinates as
  `(xmin - 1, ymin - 1, xmax, ymax)`, so that box has `x1=0, x2=10`.
- `<difficult>1</difficult>` sets `ignore=True` (kept, not dropped: evaluation
  treats it as "don't care"); a missing `<difficult>` means 0.
- The image size always comes from the image header (EXIF-aware); a missing or
  wrong `<size>` is therefore harmless, and mismatches are counted in `ReadStats`.
- An unknown class name, a missing or non-numeric coordinate, NaN, xmax < xmin
  or malformed XML raise `AnnotationError` (a `ValueError`) naming the file and
  the object. So does a `<filename>` that is absolute or contains `..` (it
  would read an image outside the dataset).
- A missing image or annotation file skips the sample (reported, see
  `detector.data.images`); an XML without objects is a negative image, kept.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from detector.data.formats.annotations import (
    AnnotationError,
    ReadStats,
    check_boxes_xyxy,
    clip_and_filter,
)
from detector.data.images import DEFAULT_MAX_IMAGE_PIXELS, ImageReadError, probe_images
from detector.data.record import SampleRecord, SkippedSample


@dataclass
class VocAnnotation:
    """The parsed content of one VOC XML file.

    Attributes:
        filename: `<filename>` or None.
        size: (height, width) from `<size>`, or None when missing or not positive.
        boxes: float32 [N, 4] xyxy, 0-based continuous pixels (converted from VOC's 1-based).
        labels: int64 [N] indices into the class names.
        difficult: bool [N].
    """

    filename: str | None
    size: tuple[int, int] | None
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


def _text(element: ElementTree.Element, tag: str) -> str | None:
    child = element.find(tag)
    return child.text.strip() if child is not None and child.text else None


def _parse_size(root: ElementTree.Element) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    try:
        height, width = (
            int(float(_text(size, "height") or 0)),
            int(float(_text(size, "width") or 0)),
        )
    except (ValueError, OverflowError):  # "abc", "inf"
        return None
    return (height, width) if height > 0 and width > 0 else None


def _checked_filename(xml_path: Path, filename: str | None) -> str | None:
    """`<filename>` as given, refused when it would leave the JPEGImages folder.

    An absolute path (POSIX or Windows) or a `..` component could point the
    reader at any file on the machine; VOC's `<filename>` is a bare file name.
    """
    if filename is None:
        return None
    posix, windows = PurePosixPath(filename), PureWindowsPath(filename)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts:
        raise AnnotationError(
            f"{xml_path}: <filename> {filename!r} escapes the dataset's JPEGImages folder "
            "(absolute or with '..'); VOC expects a file name such as 000005.jpg"
        )
    return filename


def parse_voc_xml(xml_path: Path, names: list[str]) -> VocAnnotation:
    """Parse one VOC annotation file.

    Args:
        xml_path: the `.xml` file.
        names: class names; an object's `<name>` must be one of them.

    Returns:
        A `VocAnnotation` with boxes in 0-based continuous xyxy pixels.

    Raises:
        AnnotationError: malformed XML, unknown class, missing/non-numeric/NaN
            coordinate, an inverted box, or a `<filename>` that leaves the image
            folder (absolute or with `..`); the message names the file and object.
    """
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (
        ElementTree.ParseError,
        ValueError,
        LookupError,
    ) as exc:  # LookupError: unknown encoding
        raise AnnotationError(f"{xml_path}: malformed XML ({exc})") from None
    class_index = {name: index for index, name in enumerate(names)}
    boxes, labels, difficult, descriptions = [], [], [], []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = _text(obj, "name")
        where = f"object {number} ({name})"
        if name not in class_index:
            raise AnnotationError(
                f"{xml_path}: object {number} has unknown class {name!r} "
                f"(data.names: {', '.join(names)})"
            )
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationError(f"{xml_path}: {where} has no <bndbox>")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = _text(bndbox, tag)
            try:
                coords.append(float(text))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise AnnotationError(
                    f"{xml_path}: {where} has a missing or non-numeric <{tag}>: {text!r}"
                ) from None
        flag = _text(obj, "difficult") or "0"
        boxes.append(coords)
        labels.append(class_index[name])
        difficult.append(flag not in ("0", "0.0", "false", "False"))
        descriptions.append(where)
    raw = check_boxes_xyxy(np.array(boxes, np.float64).reshape(-1, 4), str(xml_path), descriptions)
    # 1-based inclusive -> 0-based continuous: only the minimum corner moves.
    raw[:, 0:2] -= 1.0
    return VocAnnotation(
        filename=_checked_filename(xml_path, _text(root, "filename")),
        size=_parse_size(root),
        boxes=raw,
        labels=np.array(labels, np.int64),
        difficult=np.array(difficult, bool),
    )


def voc_dataset_dir(split_file: Path) -> Path:
    """`<dir>` of a split file `<dir>/ImageSets/Main/<split>.txt`; raises ValueError otherwise."""
    if split_file.parent.name != "Main" or split_file.parent.parent.name != "ImageSets":
        raise AnnotationError(
            f"{split_file}: a VOC split file must be <dir>/ImageSets/Main/<split>.txt "
            "(see datasets/README.md)"
        )
    return split_file.parent.parent.parent


def read_voc_split(
    split_file: Path,
    names: list[str],
    *,
    min_box_size: float,
    decode: bool = False,
    stats: ReadStats | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[list[SampleRecord], list[SkippedSample]]:
    """Read every sample listed in one VOC split file.

    Args:
        split_file: `<dir>/ImageSets/Main/<split>.txt`.
        names: class names (label order).
        min_box_size: boxes narrower or shorter than this after clipping are dropped.
        decode: fully decode each image at start-up instead of reading its header.
        stats: box-policy counts are added here.
        max_pixels: images whose header claims more pixels are skipped.

    Returns:
        (records with image_id 0..N-1 in file order and source_id = the VOC id,
        skipped samples with their reasons).

    Raises:
        FileNotFoundError: the split file does not exist.
        ValueError: a bad layout or annotation (see `parse_voc_xml`).
    """
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: VOC split file not found (see datasets/README.md)")
    base = voc_dataset_dir(split_file)
    try:
        text = split_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(
            f"{split_file}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
        ) from None
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    stats = stats if stats is not None else ReadStats()

    skipped: list[SkippedSample] = []
    pending: list[tuple[str, Path, VocAnnotation]] = []
    for image_id in ids:
        xml_path = base / "Annotations" / f"{image_id}.xml"
        image_path = base / "JPEGImages" / f"{image_id}.jpg"
        if not xml_path.is_file():
            skipped.append(SkippedSample(str(image_path), f"annotation file not found: {xml_path}"))
            continue
        annotation = parse_voc_xml(xml_path, names)
        if not image_path.exists() and annotation.filename:
            alternative = base / "JPEGImages" / annotation.filename
            image_path = alternative if alternative.exists() else image_path
        pending.append((image_id, image_path, annotation))

    records: list[SampleRecord] = []
    sizes = probe_images(
        [image_path for _, image_path, _ in pending], decode=decode, max_pixels=max_pixels
    )
    for (image_id, image_path, annotation), size in zip(pending, sizes, strict=True):
        if isinstance(size, ImageReadError):
            skipped.append(SkippedSample(size.path, size.reason))
            continue
        height, width = size
        if annotation.size is not None and annotation.size != (height, width):
            stats.size_mismatches += 1
        boxes, labels, ignore = clip_and_filter(
            annotation.boxes,
            annotation.labels,
            annotation.difficult,
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
                source_id=image_id,
            )
        )
    return records, skipped


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def write_voc_xml(
    xml_path: Path,
    *,
    filename: str,
    width: int,
    height: int,
    boxes: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    difficult: np.ndarray | None = None,
) -> None:
    """Write one VOC annotation file (the inverse of `parse_voc_xml`).

    Args:
        xml_path: file to write (its folder must exist).
        filename: image file name stored in `<filename>`.
        width, height: image size stored in `<size>`.
        boxes: [N, 4] xyxy 0-based continuous pixels; written 1-based as
            `xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2` (4 decimals at most).
        labels: int [N] indices into `names`.
        difficult: bool [N] or None (all 0).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult, bool)
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "filename").text = filename
    size = ElementTree.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(int(value))
    for box, label, flag in zip(
        boxes, np.asarray(labels).tolist(), difficult.tolist(), strict=True
    ):
        obj = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(obj, "name").text = names[label]
        ElementTree.SubElement(obj, "difficult").text = str(int(flag))
        bndbox = ElementTree.SubElement(obj, "bndbox")
        for tag, value in zip(
            ("xmin", "ymin", "xmax", "ymax"), (box[0] + 1, box[1] + 1, box[2], box[3]), strict=True
        ):
            ElementTree.SubElement(bndbox, tag).text = _number(value)
    ElementTree.indent(root)
    ElementTree.ElementTree(root).write(xml_path, encoding="utf-8", xml_declaration=False)
