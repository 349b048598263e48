"""Dataset scan behind `detector data check`: counts, skipped files, box sizes.

    from detector.data.inspection.check import check_dataset
    report = check_dataset(load_config("configs/voc.yaml").data)
    report.problems()  # [] when both splits have usable images

The scan reads each split with `detector.data.catalog.read_split` (so it applies
exactly the skip and box policies training uses) and summarises the records.
Box sizes are measured in original-image pixels; small / medium / large use
COCO's area thresholds (under 32^2, under 96^2, the rest). Given the network's
input side, the scan also measures object sizes as the network sees them and
suggests a tile size (`data.slice.size`) when most objects shrink below 8 px
(detector/data/inspection/object_sizes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detector.config import DataConfig
from detector.data.catalog import read_split
from detector.data.formats.annotations import ReadStats
from detector.data.inspection.object_sizes import ObjectSizes, object_sizes, suggest_tile_size
from detector.data.record import SkippedSample

SMALL_AREA = 32.0**2
MEDIUM_AREA = 96.0**2


@dataclass
class BoxSizeStats:
    """Width/height summary (pixels) and COCO area buckets of a split's boxes."""

    count: int
    width_min: float
    width_median: float
    width_max: float
    height_min: float
    height_median: float
    height_max: float
    small: int  # area < 32^2
    medium: int  # 32^2 <= area < 96^2
    large: int  # area >= 96^2


@dataclass
class SplitReport:
    """What `data check` found in one split."""

    split: str
    num_entries: int  # configured entries (split files, folders, JSON files)
    num_images: int  # usable images
    num_empty: int  # usable images without any box (kept as negatives)
    boxes_per_class: dict[str, int]  # boxes used for training (ignored ones excluded)
    ignored_per_class: dict[str, int]  # VOC difficult / COCO crowd boxes
    skipped: list[SkippedSample]
    read_stats: ReadStats
    box_sizes: BoxSizeStats | None  # None when the split has no box
    object_sizes: ObjectSizes | None = None  # with a network size given, when there are boxes

    @property
    def num_boxes(self) -> int:
        return sum(self.boxes_per_class.values())

    @property
    def num_ignored(self) -> int:
        return sum(self.ignored_per_class.values())


@dataclass
class CheckReport:
    """Both splits of a dataset."""

    format: str
    root: str
    names: list[str]
    splits: list[SplitReport] = field(default_factory=list)
    suggested_tile_size: int | None = None  # from the train split's object sizes

    def problems(self) -> list[str]:
        """Reasons the dataset cannot be trained on; empty when it can."""
        return [
            f"{report.split}: no usable image ({report.num_entries} entries, "
            f"{len(report.skipped)} skipped)"
            for report in self.splits
            if report.num_images == 0
        ]


def box_size_stats(widths: np.ndarray, heights: np.ndarray) -> BoxSizeStats | None:
    """Summarise box widths and heights (pixels); None for no boxes."""
    if len(widths) == 0:
        return None
    areas = widths * heights
    return BoxSizeStats(
        count=len(widths),
        width_min=float(widths.min()),
        width_median=float(np.median(widths)),
        width_max=float(widths.max()),
        height_min=float(heights.min()),
        height_median=float(np.median(heights)),
        height_max=float(heights.max()),
        small=int((areas < SMALL_AREA).sum()),
        medium=int(((areas >= SMALL_AREA) & (areas < MEDIUM_AREA)).sum()),
        large=int((areas >= MEDIUM_AREA).sum()),
    )


def check_split(
    data_cfg: DataConfig, split: str, *, decode: bool = False, network_size: int | None = None
) -> tuple[SplitReport, list[str]]:
    """Scan one split; with `network_size` (model.image_size) also measure object sizes at input
    (through data.slice's tiles too, when it is set).

    Returns:
        (the report, the class names the split was read with).
    """
    split_records, read_stats = read_split(data_cfg, split, decode=decode)
    names = split_records.names
    boxes_per_class = dict.fromkeys(names, 0)
    ignored_per_class = dict.fromkeys(names, 0)
    widths, heights = [], []
    num_empty = 0
    for record in split_records.records:
        num_empty += len(record.boxes) == 0
        for label, ignored in zip(record.labels.tolist(), record.ignore.tolist(), strict=True):
            counts = ignored_per_class if ignored else boxes_per_class
            counts[names[label]] += 1
        used = record.boxes[~record.ignore]
        widths.append(used[:, 2] - used[:, 0])
        heights.append(used[:, 3] - used[:, 1])
    all_widths = np.concatenate(widths) if widths else np.zeros(0, np.float32)
    all_heights = np.concatenate(heights) if heights else np.zeros(0, np.float32)
    report = SplitReport(
        split=split,
        num_entries=len(data_cfg.train if split == "train" else data_cfg.val),
        num_images=len(split_records.records),
        num_empty=num_empty,
        boxes_per_class=boxes_per_class,
        ignored_per_class=ignored_per_class,
        skipped=split_records.skipped,
        read_stats=read_stats,
        box_sizes=box_size_stats(all_widths, all_heights),
    )
    if network_size is not None:
        report.object_sizes = object_sizes(
            split_records.records,
            network_size=network_size,
            slice_size=data_cfg.slice.size if data_cfg.slice is not None else None,
        )
    return report, names


def check_dataset(
    data_cfg: DataConfig, *, decode: bool = False, network_size: int | None = None
) -> CheckReport:
    """Scan the train and val splits of a dataset.

    Args:
        data_cfg: the `data:` section.
        decode: fully decode every image (slow; also finds truncated files).
        network_size: model.image_size: measure object sizes at the network input and
            suggest a tile size from the train split's (`suggest_tile_size`); None: don't.

    Returns:
        A `CheckReport`; `problems()` lists why it is unusable, if it is.

    Raises:
        ValueError, FileNotFoundError: as `load_split` (annotation errors, missing files).
    """
    report = CheckReport(format=data_cfg.format, root=data_cfg.root, names=[])
    for split in ("train", "val"):
        split_report, names = check_split(data_cfg, split, decode=decode, network_size=network_size)
        report.splits.append(split_report)
        report.names = report.names or names
        if split == "train" and split_report.object_sizes is not None and network_size is not None:
            report.suggested_tile_size = suggest_tile_size(
                split_report.object_sizes, network_size=network_size
            )
    return report
