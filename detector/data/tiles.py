"""Tiles of large images: the grid, boxes cut to a tile, and the tile samples of a training epoch.

    tile_grid(1000, 600, size=512, overlap=0.2)
    # [(0, 0, 512, 512), (410, 0, 922, 512), (488, 0, 1000, 512),
    #  (0, 88, 512, 600), (410, 88, 922, 600), (488, 88, 1000, 600)]
    boxes, labels, ignore = cut_boxes(record.boxes, record.labels, record.ignore,
                                      (410, 0, 922, 512), min_area_ratio=0.5, min_box_size=1.0)
    samples, summary = training_samples(records, size=512, overlap=0.2, min_area_ratio=0.5,
                                        empty_rate=0.1, full_images=1, network_size=512,
                                        min_box_size=1.0, seed=0)

The grid rule (`detector.postprocess.tile_grid`, the one sliced inference uses):
along each axis tiles start every `size - floor(overlap * size)` pixels from 0, as
few as cover the side, and the last one is shifted inward to end exactly at the
image edge; tiles never reach past the image and are never padded. A side no longer
than `size` is one tile of that side (an image smaller than a tile is one tile, the
whole image).

What becomes of the boxes (docs/sliced-training.md says why):
- a box is clipped to the tile; it stays a target when at least `min_area_ratio`
  of its area is inside and the clipped part is at least `min_box_size` wide and
  high; otherwise it is kept with `ignore=True`, so its visible part is neither
  learned as an object nor as background (the loss leaves cells inside ignored
  boxes out of the objectness term, detector/model/loss.py);
- a box that does not reach into the tile is not part of it.

A training epoch (`training_samples`) holds every tile with at least one target,
`round(empty_rate * E)` of the E tiles without one (drawn once per run from
`seed`), and each whole image `full_images` times (True: once), in which objects
whose longest side the letterbox to `network_size` shrinks below FULL_IMAGE_MIN_SIDE
pixels are ignored (the tiles teach them at native size). The copies of a whole
image are separate samples, each augmented anew: at equal budget a tile-trained
model meets each whole image once per (long) epoch where a letterboxed model meets
it once per short one, so its full-image pass learns the large objects from ~13x
fewer whole-image samples unless they come more often (docs/sliced-training.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from detector.data.record import SampleRecord
from detector.postprocess import tile_grid  # the one grid rule, shared with sliced inference

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the full image
FULL_IMAGE_MIN_SIDE = 8.0  # px at network input: smaller objects are ignored in whole-image samples


def cut_boxes(
    boxes: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray,
    window: Window,
    *,
    min_area_ratio: float,
    min_box_size: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes of one tile, in tile pixels.

    Args:
        boxes: float [N, 4] xyxy pixels of the full image; labels int64 [N]; ignore bool [N].
        window: the tile (x1, y1, x2, y2) in full-image pixels.
        min_area_ratio: a clipped box stays a target when at least this fraction of its area
            is inside the tile; below it the box is marked ignore.
        min_box_size: a clipped box narrower or lower than this (px) is marked ignore too.

    Returns:
        boxes float32 [K, 4] xyxy tile pixels (clipped to the tile), labels int64 [K],
        ignore bool [K]: the boxes with a positive-area part inside the tile, in input order;
        ignore is the input flag or a cut that leaves too little.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = window
    clipped = np.stack(
        [
            boxes[:, 0].clip(x1, x2),
            boxes[:, 1].clip(y1, y2),
            boxes[:, 2].clip(x1, x2),
            boxes[:, 3].clip(y1, y2),
        ],
        axis=1,
    )
    sides = clipped[:, 2:] - clipped[:, :2]  # [N, 2]
    inside = (sides > 0).all(axis=1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept_area = sides[:, 0] * sides[:, 1]
    # Compared as a product, not a quotient: a box wholly inside keeps ratio 1 exactly.
    too_little = (kept_area < min_area_ratio * area) | (sides < min_box_size).any(axis=1)
    shifted = clipped[inside] - np.array([x1, y1, x1, y1], np.float32)
    flags = np.asarray(ignore, bool)[inside] | too_little[inside]
    return shifted.astype(np.float32), np.asarray(labels, np.int64)[inside], flags


def tile_record(
    record: SampleRecord, window: Window, *, min_area_ratio: float, min_box_size: float
) -> SampleRecord:
    """`record` cut to `window`: a record of the tile (its `window` set, boxes in tile pixels)."""
    boxes, labels, ignore = cut_boxes(
        record.boxes,
        record.labels,
        record.ignore,
        window,
        min_area_ratio=min_area_ratio,
        min_box_size=min_box_size,
    )
    return dataclasses.replace(
        record,
        width=window[2] - window[0],
        height=window[3] - window[1],
        boxes=boxes,
        labels=labels,
        ignore=ignore,
        window=window,
    )


@dataclass
class TilingSummary:
    """What `training_samples` made of a split (printed when training starts)."""

    images: int
    tiles: int  # all tiles of all images
    tiles_with_objects: int
    empty_kept: int  # of the tiles - tiles_with_objects empty ones
    full_images: int

    @property
    def samples(self) -> int:
        return self.tiles_with_objects + self.empty_kept + self.full_images

    def __str__(self) -> str:
        empty = self.tiles - self.tiles_with_objects
        full = f" + {self.full_images} whole images" if self.full_images else ""
        return (
            f"{self.images} images -> {self.tiles} tiles: {self.tiles_with_objects} with "
            f"objects, {self.empty_kept} of {empty} empty kept{full} = {self.samples} samples "
            "per epoch"
        )


def _full_image_record(record: SampleRecord, network_size: int) -> SampleRecord:
    """`record` with its boxes that the letterbox to `network_size` shrinks below
    FULL_IMAGE_MIN_SIDE marked ignore."""
    scale = network_size / max(record.width, record.height)
    longest = (record.boxes[:, 2:] - record.boxes[:, :2]).max(axis=1, initial=0.0) * scale
    return dataclasses.replace(record, ignore=record.ignore | (longest < FULL_IMAGE_MIN_SIDE))


def training_samples(
    records: list[SampleRecord],
    *,
    size: int,
    overlap: float,
    min_area_ratio: float,
    empty_rate: float,
    full_images: bool | int,
    network_size: int,
    min_box_size: float,
    seed: int,
) -> tuple[list[SampleRecord], TilingSummary]:
    """The samples of one training epoch: tiles of every image (and the whole images).

    Args:
        records: the split's image records.
        size, overlap: the tile grid (`tile_grid`).
        min_area_ratio, min_box_size: what a cut box needs to stay a target (`cut_boxes`).
        empty_rate: fraction of the tiles without a target that are kept, in [0, 1].
        full_images: copies of each whole image per epoch (True: 1, False: 0).
        network_size: model.image_size (for the whole images' small-object rule).
        seed: draws which empty tiles are kept.

    Returns:
        (records, summary): tile records (`window` set) then whole-image records, in image order.

    Raises:
        ValueError: nothing to train on (every tile empty, empty_rate 0, no whole images).
    """
    tiles = [
        tile_record(record, window, min_area_ratio=min_area_ratio, min_box_size=min_box_size)
        for record in records
        for window in tile_grid(record.width, record.height, size, overlap)
    ]
    # Empty: no target (no box, or only ignored ones).
    empty = [index for index, tile in enumerate(tiles) if tile.ignore.all()]
    keep = round(empty_rate * len(empty))
    chosen = {empty[int(j)] for j in np.random.default_rng(seed).permutation(len(empty))[:keep]}
    empty_set = set(empty)
    samples = [
        tile for index, tile in enumerate(tiles) if index not in empty_set or index in chosen
    ]
    copies = int(full_images)
    if copies < 0:
        raise ValueError(f"full_images must be >= 0 (or true/false), got {full_images}")
    for _ in range(copies):
        samples += [_full_image_record(record, network_size) for record in records]
    summary = TilingSummary(
        images=len(records),
        tiles=len(tiles),
        tiles_with_objects=len(tiles) - len(empty),
        empty_kept=keep,
        full_images=len(records) * copies,
    )
    if not samples:
        raise ValueError(
            f"data.slice: all {summary.tiles} tiles hold no object, "
            "data.slice.empty_rate is 0 and data.slice.full_images is false: "
            "nothing to train on"
        )
    return samples, summary
