"""Tile geometry for sliced inference: overlapping tiles that cover an image exactly.

    >>> from detector.postprocess import tile_grid
    >>> tile_grid(1500, 1000, size=640, overlap=0.2)[:3]
    [(0, 0, 640, 640), (512, 0, 1152, 640), (860, 0, 1500, 640)]

Along each axis the tiles start every `stride = size - floor(overlap * size)` pixels
(neighbours share `floor(overlap * size)` pixels), and the last tile is shifted inward
to end exactly at the image edge: no tile reaches past the image, none is padded, and
the count is the smallest one at that step that reaches the edge,
`1 + ceil((length - size) / stride)`. The training tiles of `data.slice`
(detector/data/tiles.py) follow the same rule, with the same argument order. An image
side shorter than the tile gives one tile of that side's length (the policy for a tile
larger than the image: the tile shrinks to the image; the network input is padded, the
geometry is not).
"""

from __future__ import annotations

import math

__all__ = ["MIN_TILE_SIZE", "check_tile_size", "tile_grid", "tile_starts"]

MIN_TILE_SIZE = 32  # the smallest side the package's models take (their largest stride)


def _check_overlap(overlap: float) -> None:
    if not (isinstance(overlap, (int, float)) and 0.0 <= float(overlap) < 1.0):
        raise ValueError(f"slice overlap must be in [0, 1), got {overlap}")


def check_tile_size(tile_size: int, max_stride: int = MIN_TILE_SIZE) -> None:
    """Raise ValueError unless `tile_size` is an int >= 32 and a multiple of `max_stride`.

    Args:
        tile_size: tile side in pixels.
        max_stride: the model's largest stride (its inputs must be multiples of it).
    """
    if isinstance(tile_size, bool) or not isinstance(tile_size, int):
        raise ValueError(f"slice size must be an integer number of pixels, got {tile_size!r}")
    if tile_size < MIN_TILE_SIZE:
        raise ValueError(f"slice size {tile_size} is below the minimum of {MIN_TILE_SIZE} px")
    if tile_size % max_stride:
        nearest = max(max_stride, round(tile_size / max_stride) * max_stride)
        raise ValueError(
            f"slice size {tile_size} is not a multiple of the model's largest "
            f"stride {max_stride} (try {nearest})"
        )


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of the tiles along one axis of `length` pixels.

    Args:
        length: image side in pixels (>= 1).
        size: tile side in pixels (>= 1).
        overlap: neighbours share `floor(overlap * size)` pixels; in [0, 1).
    Returns:
        increasing offsets; the last is `max(length - size, 0)`.
    """
    _check_overlap(overlap)
    if length < 1 or size < 1:
        raise ValueError(f"length and tile size must be >= 1, got {length} and {size}")
    if length <= size:
        return [0]
    stride = size - math.floor(overlap * size)
    count = 1 + math.ceil((length - size) / stride)
    last = length - size
    return [min(index * stride, last) for index in range(count)]


def tile_grid(
    width: int, height: int, size: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """The tiles of a `width` x `height` image, row by row.

    Args:
        width, height: image size in pixels (>= 1).
        size: tile side in pixels; a side shorter than this gives one tile of that length.
        overlap: neighbours share `floor(overlap * size)` pixels; in [0, 1).
    Returns:
        (x1, y1, x2, y2) integer pixel tiles, half-open (x2, y2 excluded), all inside the
        image, together covering every pixel.
    """
    rows = tile_starts(height, size, overlap)
    columns = tile_starts(width, size, overlap)
    tile_width, tile_height = min(size, width), min(size, height)
    return [(x, y, x + tile_width, y + tile_height) for y in rows for x in columns]
