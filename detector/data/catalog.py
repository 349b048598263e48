"""One entry point from a `data:` config section to the records of a split.

    from detector.config import load_config
    from detector.data.catalog import load_split
    split = load_split(load_config("configs/voc.yaml").data, "train")
    print(len(split.records), "images;", len(split.skipped), "skipped")

`data.root` is resolved against the current directory; each entry of
`data.train` / `data.val` is relative to `data.root` unless absolute (formats:
datasets/README.md). Several entries are concatenated (VOC 2007 + 2012).

Skip policy: every image is checked at start-up (exists, not empty, readable
header, JPEG/PNG end marker present, at most `data.max_image_pixels`, at least
10 px a side; with `decode=True` it is fully decoded, which also finds broken data).
A bad image becomes a `SkippedSample(path, reason)` in `SplitRecords.skipped`;
callers print the count and the list (`format_skipped`).
Annotation errors are not skipped: they raise `ValueError` naming the file.
The box policy (clip, drop under `data.min_box_size`) is in
`detector.data.formats.annotations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detector.config import DataConfig
from detector.data.formats.annotations import ReadStats
from detector.data.formats.coco import (
    coco_category_ids,
    default_category_ids,
    load_coco_json,
    read_coco,
)
from detector.data.formats.voc import read_voc_split
from detector.data.formats.yolo import read_yolo_source
from detector.data.record import SampleRecord, SkippedSample, SplitRecords


def resolve_data_path(root: str | Path, entry: str) -> Path:
    """`entry` if absolute, else `root / entry` (root itself relative to the current directory)."""
    path = Path(entry)
    return path if path.is_absolute() else Path(root) / path


def _split_entries(data_cfg: DataConfig, split: str) -> list[Any]:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return list(data_cfg.train if split == "train" else data_cfg.val)


def _coco_entry(entry: Any, where: str) -> tuple[str, str]:
    if not isinstance(entry, dict) or set(entry) != {"images", "annotations"}:
        raise ValueError(
            f"{where}: a coco entry is {{images: DIR, annotations: FILE.json}}, got {entry!r}"
        )
    return str(entry["images"]), str(entry["annotations"])


def read_split(
    data_cfg: DataConfig, split: str, *, decode: bool = False
) -> tuple[SplitRecords, ReadStats]:
    """Read a split and also return what the box policy changed.

    Args:
        data_cfg: the `data:` section.
        split: "train" or "val".
        decode: fully decode every image at start-up (slow; finds truncated files).

    Returns:
        (SplitRecords, ReadStats). VOC and YOLO image ids run 0..N-1 over all
        entries; COCO keeps its own image ids (which must be unique over entries).

    Raises:
        ValueError: bad config entry, annotation error or missing `data.names`.
        FileNotFoundError: a split file, annotation file or image folder is missing.
    """
    entries = _split_entries(data_cfg, split)
    if data_cfg.synthetic is not None:
        from detector.data.synthetic.embedded import (
            ensure_synthetic_dataset,  # only configs that use it pay
        )

        ensure_synthetic_dataset(data_cfg)
    fmt = data_cfg.format
    names = list(data_cfg.names) if data_cfg.names is not None else None
    if names is None and fmt in ("voc", "yolo"):
        raise ValueError(
            f"data.names is required for format {fmt} (the class names, in label order)"
        )

    stats = ReadStats()
    records: list[SampleRecord] = []
    skipped: list[SkippedSample] = []
    for index, entry in enumerate(entries):
        where = f"data.{split}[{index}]"
        if fmt == "coco":
            images_dir, annotation_file = _coco_entry(entry, where)
            part, part_skipped, names = read_coco(
                resolve_data_path(data_cfg.root, images_dir),
                resolve_data_path(data_cfg.root, annotation_file),
                names=names,
                min_box_size=data_cfg.min_box_size,
                decode=decode,
                stats=stats,
                max_pixels=data_cfg.max_image_pixels,
            )
        else:
            if not isinstance(entry, str):
                raise ValueError(f"{where}: a {fmt} entry is a path string, got {entry!r}")
            reader = read_voc_split if fmt == "voc" else read_yolo_source
            part, part_skipped = reader(
                resolve_data_path(data_cfg.root, entry),
                names,  # type: ignore[arg-type]
                min_box_size=data_cfg.min_box_size,
                decode=decode,
                stats=stats,
                max_pixels=data_cfg.max_image_pixels,
            )
            for record in part:  # ids unique over all entries of the split
                record.image_id += len(records)
        records.extend(part)
        skipped.extend(part_skipped)

    if fmt == "coco":
        image_ids = [record.image_id for record in records]
        if len(set(image_ids)) != len(image_ids):
            raise ValueError(f"data.{split}: the coco entries share image ids; they must be unique")
    return SplitRecords(records=records, skipped=skipped, names=names or []), stats


def load_split(data_cfg: DataConfig, split: str, *, decode: bool = False) -> SplitRecords:
    """The usable records of a split, the skipped samples and the class names.

    Args:
        data_cfg: the `data:` section (see datasets/README.md).
        split: "train" or "val".
        decode: fully decode every image at start-up instead of reading headers.

    Returns:
        SplitRecords(records, skipped, names); boxes are absolute-pixel xyxy in the
        EXIF-oriented image.
    """
    return read_split(data_cfg, split, decode=decode)[0]


def category_ids(data_cfg: DataConfig) -> list[int]:
    """COCO category id of each contiguous label, for writing results in the source's ids.

    COCO: read from the first val (else train) annotation file; VOC and YOLO have no
    ids of their own and get 1..K (`default_category_ids`, K = len(data.names)).
    """
    if data_cfg.format != "coco":
        return default_category_ids(len(data_cfg.names or []))
    entries = list(data_cfg.val) + list(data_cfg.train)
    if not entries:
        raise ValueError(
            "data.val and data.train are empty: no COCO annotation file to read categories from"
        )
    _, annotation_file = _coco_entry(entries[0], "data.val[0]" if data_cfg.val else "data.train[0]")
    content = load_coco_json(resolve_data_path(data_cfg.root, annotation_file))
    return coco_category_ids(content["categories"], data_cfg.names)[1]


def format_skipped(skipped: list[SkippedSample], split: str, limit: int | None = None) -> str:
    """A report of skipped samples: a count line, then `path: reason` lines.

    Args:
        skipped: from `SplitRecords.skipped`.
        split: name used in the count line.
        limit: print at most this many paths (None: all) and say how many more.
    """
    if not skipped:
        return f"{split}: no images skipped"
    lines = [f"{split}: {len(skipped)} image(s) skipped:"]
    shown = skipped if limit is None else skipped[:limit]
    lines += [f"  {sample.path}: {sample.reason}" for sample in shown]
    if len(shown) < len(skipped):
        lines.append(
            f"  ... and {len(skipped) - len(shown)} more (detector data check lists them all)"
        )
    return "\n".join(lines)
