"""Mosaic: four training images in one input, around a random centre.

    from detector.data.augment.mosaic import mosaic_centre, place_mosaic
    centre = mosaic_centre(rng, size=448, centre_range=0.5)
    tiled = place_mosaic(images, boxes, centre, size=448, fill=114,
                         min_visibility=0.3, min_size=2.0)
    tiled.image.shape   # (448, 448, 3); tiled.boxes [N, 4] xyxy; tiled.source, tiled.box_index [N]

Geometry (S = the batch's input side): each image is resized so its longer side is
S (its letterbox size and pixels: `letterbox.compute_letterbox`, `resize_image`) and
placed on a 2S x 2S canvas with one corner at the centre (cx, cy): image 0 above
and left of it (its bottom-right corner at the centre), image 1 above and right,
image 2 below and left, image 3 below and right. The centre is drawn uniformly in
[S (1 - centre_range), S (1 + centre_range)] on each axis (whole pixels). The
output is the canvas's middle S x S window, [S/2, 3S/2) on both axes, so with
centre_range <= 0.5 the four-image junction always lies inside it; the rest of
the canvas (114 grey where no image reaches) is never built.

Boxes are moved with their image, clipped to the window and then filtered by the
`box_filter` policy, like a crop: a box whose visible part is under
`min_visibility` of its whole (resized) box, or narrower or lower than `min_size`
pixels, is dropped. `source` and `box_index` say which image and which of its
boxes each kept box is, so labels and ignore flags are picked with them.

The dataset (detector/data/augment/multi_image.py) draws whether to build a mosaic,
the three partner images and the centre from the sample's own seed, then runs the
usual augmentation pipeline on the S x S result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.data.letterbox import compute_letterbox, resize_image


@dataclass
class MosaicTiles:
    """The S x S mosaic and its boxes.

    Attributes:
        image: uint8 [S, S, 3].
        boxes: float32 [N, 4] xyxy pixels of `image`.
        source: int64 [N], which of the four images each box came from.
        box_index: int64 [N], the box's row in that image's boxes.
    """

    image: np.ndarray
    boxes: np.ndarray
    source: np.ndarray
    box_index: np.ndarray


def mosaic_centre(rng: np.random.Generator, size: int, centre_range: float) -> tuple[int, int]:
    """The junction (cx, cy) on the 2S canvas, each uniform in [S(1 - r), S(1 + r)] (integers)."""
    low, high = round(size * (1 - centre_range)), round(size * (1 + centre_range))
    cx, cy = rng.integers(low, high + 1, size=2)
    return int(cx), int(cy)


def place_mosaic(
    images: list[np.ndarray],
    boxes: list[np.ndarray],
    centre: tuple[int, int],
    size: int,
    *,
    fill: int,
    min_visibility: float,
    min_size: float,
) -> MosaicTiles:
    """Tile four images around `centre` and cut the S x S window (see the module docstring).

    Args:
        images: four uint8 [H_i, W_i, 3] images.
        boxes: four float [N_i, 4] xyxy pixel arrays of those images.
        centre: (cx, cy) on the 2S x 2S canvas.
        size: S.
        fill: grey value where no image reaches.
        min_visibility, min_size: the box_filter policy.

    Returns:
        MosaicTiles.
    """
    if len(images) != 4 or len(boxes) != 4:
        raise ValueError(
            f"place_mosaic: needs 4 images and 4 box arrays, got {len(images)} and {len(boxes)}"
        )
    cx, cy = centre
    window = size // 2  # the window's top-left corner on the canvas, on both axes
    out = np.full((size, size, 3), fill, np.uint8)
    kept_boxes, sources, indices = [], [], []
    for tile, (image, tile_boxes) in enumerate(zip(images, boxes, strict=True)):
        height, width = image.shape[:2]
        geometry = compute_letterbox(height, width, size)
        new_w, new_h = geometry.new_width, geometry.new_height
        left = cx - new_w if tile in (0, 2) else cx  # canvas position of the resized image
        top = cy - new_h if tile in (0, 1) else cy
        # Its part inside the window, in output pixels and in resized-image pixels.
        x0, y0 = max(left - window, 0), max(top - window, 0)
        x1, y1 = min(left + new_w - window, size), min(top + new_h - window, size)
        if x1 > x0 and y1 > y0:
            resized = resize_image(image, new_w, new_h)
            src_x, src_y = x0 - (left - window), y0 - (top - window)
            out[y0:y1, x0:x1] = resized[src_y : src_y + (y1 - y0), src_x : src_x + (x1 - x0)]
        moved = np.asarray(tile_boxes, np.float64).reshape(-1, 4).copy()
        moved[:, [0, 2]] = moved[:, [0, 2]] * geometry.scale_x + (left - window)
        moved[:, [1, 3]] = moved[:, [1, 3]] * geometry.scale_y + (top - window)
        # Clip to the tile's part of the window too: a box never reaches into a neighbour.
        clipped = moved.copy()
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(max(x0, 0), max(x1, x0))
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(max(y0, 0), max(y1, y0))
        area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
        widths, heights = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
        visible = widths * heights
        keep = np.flatnonzero(
            (area > 0)
            & (visible >= min_visibility * area)
            & (widths >= min_size)
            & (heights >= min_size)
            & (visible > 0)
        )
        kept_boxes.append(clipped[keep])
        sources.append(np.full(len(keep), tile, np.int64))
        indices.append(keep.astype(np.int64))
    return MosaicTiles(
        image=out,
        boxes=np.concatenate(kept_boxes).astype(np.float32).reshape(-1, 4),
        source=np.concatenate(sources),
        box_index=np.concatenate(indices),
    )
