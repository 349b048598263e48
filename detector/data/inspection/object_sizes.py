"""Object sizes as the network sees them, and the tile size that keeps small objects visible.

    sizes = object_sizes(split.records, network_size=512, slice_size=None)
    sizes.fraction_tiny_at_input          # share of objects under 8 px after the letterbox
    suggest_tile_size(sizes, network_size=512)   # 512, or None when whole images are fine

An object's size is its longest box side in pixels. At the network input it is
scaled as the letterbox scales its image: by S / max(width, height) for input
side S, or, with tiles, S / the longest side of a tile (tiles of `tile_grid`:
`min(size, width)` x `min(size, height)`). Objects under TINY_SIDE pixels at the
input are what a stride-8 grid barely resolves; when most of them are that
small, `detector data check` suggests training and detecting on tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.data.record import SampleRecord

TINY_SIDE = 8.0  # px at network input: below this an object covers about one stride-8 cell
BUCKETS = (8.0, 16.0, 32.0, 64.0, 128.0)  # longest-side histogram edges, px


@dataclass
class SizeHistogram:
    """Counts of object sizes in the BUCKETS ranges, and their median (px)."""

    counts: list[int]  # len(BUCKETS) + 1: < 8, 8-16, 16-32, 32-64, 64-128, >= 128
    median: float

    @classmethod
    def of(cls, sides: np.ndarray) -> SizeHistogram:
        """Histogram of longest sides [N] (N >= 1)."""
        bucket = np.searchsorted(BUCKETS, sides, side="right")
        counts = np.bincount(bucket, minlength=len(BUCKETS) + 1)
        return cls(counts=[int(c) for c in counts], median=float(np.median(sides)))

    def __str__(self) -> str:
        edges = zip(BUCKETS[:-1], BUCKETS[1:], strict=True)
        labels = [
            f"<{BUCKETS[0]:g}",
            *(f"{low:g}-{high:g}" for low, high in edges),
            f">={BUCKETS[-1]:g}",
        ]
        cells = "  ".join(
            f"{label}: {count}" for label, count in zip(labels, self.counts, strict=True)
        )
        return f"{cells}  (median {self.median:.1f})"


@dataclass
class ObjectSizes:
    """Longest box sides of a split's targets (not ignored), in the image and at network input."""

    network_size: int
    native: SizeHistogram
    at_input: SizeHistogram  # whole images letterboxed to network_size
    fraction_tiny_at_input: float  # under TINY_SIDE px at input, whole images
    slice_size: int | None = None
    through_tiles: SizeHistogram | None = None  # tiles of slice_size letterboxed to network_size
    fraction_tiny_through_tiles: float | None = None


def object_sizes(
    records: list[SampleRecord], *, network_size: int, slice_size: int | None = None
) -> ObjectSizes | None:
    """Measure the targets of `records` (ignored boxes left out); None when there are none.

    Args:
        records: image records (whole images, boxes in image pixels).
        network_size: model.image_size.
        slice_size: data.slice.size, to also measure objects through tiles; None: not sliced.
    """
    native, at_input, through_tiles = [], [], []
    for record in records:
        boxes = record.boxes[~record.ignore]
        if not len(boxes):
            continue
        sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
        native.append(sides)
        at_input.append(sides * network_size / max(record.width, record.height))
        if slice_size is not None:
            tile_side = max(min(slice_size, record.width), min(slice_size, record.height))
            through_tiles.append(sides * network_size / tile_side)
    if not native:
        return None
    at_input_sides = np.concatenate(at_input)
    sizes = ObjectSizes(
        network_size=network_size,
        native=SizeHistogram.of(np.concatenate(native)),
        at_input=SizeHistogram.of(at_input_sides),
        fraction_tiny_at_input=float((at_input_sides < TINY_SIDE).mean()),
    )
    if slice_size is not None:
        tile_sides = np.concatenate(through_tiles)
        sizes.slice_size = slice_size
        sizes.through_tiles = SizeHistogram.of(tile_sides)
        sizes.fraction_tiny_through_tiles = float((tile_sides < TINY_SIDE).mean())
    return sizes


def suggest_tile_size(sizes: ObjectSizes, *, network_size: int) -> int | None:
    """A data.slice.size when most objects are under TINY_SIDE px at the input, else None.

    The tile is `network_size` (objects keep their native size) when the median object
    is at least TINY_SIDE px in the image; when even that is smaller, the tile that
    magnifies the median object to TINY_SIDE px, rounded down to a multiple of 32
    (at least 32). Under data.slice the measure is through its tiles.
    """
    tiny = (
        sizes.fraction_tiny_through_tiles
        if sizes.through_tiles is not None
        else sizes.fraction_tiny_at_input
    )
    if tiny <= 0.5:
        return None
    if sizes.native.median >= TINY_SIDE:
        return network_size
    return max(32, int(network_size * sizes.native.median / TINY_SIDE) // 32 * 32)
