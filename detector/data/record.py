"""The one sample record every dataset reader produces.

Boxes are absolute-pixel xyxy floats in the coordinates of the image as decoded
(EXIF orientation applied), with 0-based continuous coordinates: a box covering
pixel columns 0..9 inclusive has x1=0, x2=10.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SampleRecord:
    """One image and its annotations.

    Attributes:
        image_path: path of the image file.
        width, height: size of the decoded (EXIF-oriented) image in pixels.
        boxes: float32 [N, 4] xyxy absolute pixels.
        labels: int64 [N] contiguous class indices into the dataset's names.
        ignore: bool [N]; True for VOC `difficult` and COCO `iscrowd` boxes, which
            evaluation treats as "don't care" and training does not learn from.
        image_id: int id, unique within the split (COCO: the file's own image id).
        source_id: the id in the source format (VOC/YOLO file stem, COCO image id).
        window: None for the whole image; for a tile of it (detector/data/tiles.py) the
            (x1, y1, x2, y2) pixels of the decoded image the record describes: width,
            height and boxes are then the tile's, and the dataset crops the image to it.
    """

    image_path: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    image_id: int = 0
    source_id: str | int = ""
    window: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.ignore = np.asarray(self.ignore, dtype=bool).reshape(-1)
        n = len(self.boxes)
        if len(self.labels) != n or len(self.ignore) != n:
            raise ValueError(
                f"{self.image_path}: {n} boxes but {len(self.labels)} labels and "
                f"{len(self.ignore)} ignore flags"
            )


@dataclass
class SkippedSample:
    """A sample left out of a split, with the reason (reported at start-up)."""

    path: str
    reason: str


@dataclass
class SplitRecords:
    """The usable records of one split, the skipped ones, and the class names."""

    records: list[SampleRecord]
    skipped: list[SkippedSample]
    names: list[str]
