"""Aerial-like scenes: large images, many small objects in clusters, clutter, a few large ones.

    rng = np.random.default_rng([0, 7])
    width, height = aerial_image_size(rng, 2048)          # each side in [1024, 2048]
    image, boxes, labels = render_aerial_scene(rng, width, height, ["circle", "square", "star"])

The set behind `data.synthetic.kind: aerial` (configs/aerial.yaml), built for
sliced training and inference (docs/sliced-training.md): what
drone, satellite and inspection images look like to a detector.

- large images: each side drawn in [1024, S] for `image_size` S (S <= 1024:
  S x S), so a 512 px network input shrinks them 2-4x;
- small objects: box sides of 8-40 px (`SMALL_BOX_SIDES`, circumscribed
  radius log-uniform), 30-80 per megapixel, most of them in 2-5 clusters (parking
  lots, yards) and the rest scattered, so some tiles are empty;
- a few large objects: 1-3 per image with box sides of 15-30% of the short
  side (150-600 px), larger than a 512 px tile on the biggest images, so a
  full-image pass finds what tiles cut;
- clutter: roads (thick straight bands), field patches, unlabelled look-alikes
  of small-object size (pentagons, hexagons, cut shapes; dense.py's) and the
  line / arc / speck clutter of the shapes demo.

Everything is drawn from the scene's generator, so a seed gives the same scene.
"""

from __future__ import annotations

import cv2
import numpy as np

from detector.data.synthetic.dense import distractor_mask, draw_mask
from detector.data.synthetic.shapes import (
    PlacedShape,
    add_clutter,
    contrasting_colour,
    draw_shape,
    shape_mask,
    textured_background,
)

MIN_SIDE = 1024  # each image side is drawn in [MIN_SIDE, S] (S x S when S <= MIN_SIDE)
SMALL_BOX_SIDES = (8.0, 40.0)  # pixels: the longest box side of a small object
SMALL_PER_MEGAPIXEL = (30, 80)
CLUSTERED_FRACTION = 0.7  # of the small objects, the rest uniform over the image
CLUSTERS_PER_IMAGE = (2, 5)
LARGE_PER_IMAGE = (1, 3)
LARGE_BOX_FRACTION = (0.15, 0.30)  # of the short side: the box side of a large object
DISTRACTORS_PER_MEGAPIXEL = (15, 40)
_PROBE_RADIUS = 24.0  # radius at which a shape's box side per radius is measured


def aerial_image_size(rng: np.random.Generator, image_size: int) -> tuple[int, int]:
    """Width and height of one aerial image, each in [min(MIN_SIDE, S), S] for S = image_size."""
    if image_size < 256:
        raise ValueError(f"aerial synthetic images need image_size >= 256, got {image_size}")
    low = min(MIN_SIDE, image_size)
    width, height = (int(side) for side in rng.integers(low, image_size + 1, size=2))
    return width, height


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _radius_for_side(kind: str, angle: float, side: float) -> float:
    """Circumscribed radius at which a `kind` shape rotated by `angle` has a box side of `side`.

    The ratio depends on the shape and its rotation (a square's box is 1.41-2 radii),
    so it is measured on a probe mask at the same angle.
    """
    mask = shape_mask(kind, _PROBE_RADIUS, angle) >= 128
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    return side * _PROBE_RADIUS / float(extent)


def _per_megapixel(rng: np.random.Generator, span: tuple[int, int], width: int, height: int) -> int:
    return int(round(rng.uniform(*span) * width * height / 1e6))


def _draw_roads_and_fields(rng: np.random.Generator, image: np.ndarray) -> None:
    """Field patches (filled rectangles) and roads (straight bands 10-30 px wide), in place."""
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(2, 6))):
        x1, y1 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x2 = x1 + int(rng.integers(width // 8, width // 2))
        y2 = y1 + int(rng.integers(height // 8, height // 2))
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        patch = image[y1:y2, x1:x2]
        patch[:] = (patch * 0.5 + np.asarray(colour, np.float32) * 0.5).astype(np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:  # top to bottom
            p1, p2 = (int(rng.integers(0, width)), 0), (int(rng.integers(0, width)), height - 1)
        else:  # left to right
            p1, p2 = (0, int(rng.integers(0, height))), (width - 1, int(rng.integers(0, height)))
        grey = int(rng.integers(60, 200))
        cv2.line(image, p1, p2, (grey, grey, grey), int(rng.integers(10, 31)), cv2.LINE_AA)


def _spot(
    rng: np.random.Generator,
    width: int,
    height: int,
    radius: float,
    centre: tuple[float, float] | None,
    spread: float,
) -> tuple[float, float]:
    """A centre near `centre` (Gaussian, `spread` px) or uniform, keeping 70% of `radius` inside."""
    margin = 0.7 * radius
    if centre is None:
        x, y = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
        return float(x), float(y)
    x, y = rng.normal(centre, spread)
    return float(np.clip(x, margin, width - margin)), float(np.clip(y, margin, height - margin))


def _overlaps(box: np.ndarray, boxes: list[np.ndarray]) -> bool:
    """True when `box` covers 20% of a placed box or a placed box covers 20% of it (IoU-free:
    a small object inside a large one is refused too)."""
    if not boxes:
        return False
    placed = np.stack(boxes)  # [M, 4]
    width = np.minimum(placed[:, 2], box[2]) - np.maximum(placed[:, 0], box[0])
    height = np.minimum(placed[:, 3], box[3]) - np.maximum(placed[:, 1], box[1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    placed_area = (placed[:, 2] - placed[:, 0]) * (placed[:, 3] - placed[:, 1])
    box_area = (box[2] - box[0]) * (box[3] - box[1])
    return bool(((inter > 0.2 * placed_area) | (inter > 0.2 * box_area)).any())


def _place(
    rng: np.random.Generator,
    width: int,
    height: int,
    boxes: list[np.ndarray],
    radius: float,
    centre: tuple[float, float] | None,
    spread: float,
    attempts: int = 10,
) -> tuple[float, float] | None:
    """A free centre for a shape of `radius` (see `_overlaps`), or None after `attempts` tries."""
    for _ in range(attempts):
        cx, cy = _spot(rng, width, height, radius, centre, spread)
        if not _overlaps(np.array([cx - radius, cy - radius, cx + radius, cy + radius]), boxes):
            return cx, cy
    return None


def render_aerial_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    names: list[str],
    noise: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one aerial scene: ground and clutter, then large objects, then small ones.

    Args:
        rng: the scene's random generator (the only source of randomness).
        width, height: image size in pixels.
        names: target classes (subset of shapes.SHAPE_CLASSES); labels index into it,
            drawn with equal probability, small and large alike.
        noise: amplitude of the uniform per-pixel noise (grey levels).

    Returns:
        image uint8 [H, W, 3] RGB, boxes float32 [N, 4] xyxy pixels, labels int64 [N].
    """
    image = textured_background(rng, height, width)
    _draw_roads_and_fields(rng, image)
    add_clutter(rng, image, count=max(8, _per_megapixel(rng, (10, 20), width, height)))
    for _ in range(_per_megapixel(rng, DISTRACTORS_PER_MEGAPIXEL, width, height)):
        radius = _log_uniform(rng, *SMALL_BOX_SIDES) / 2
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        colour = contrasting_colour(rng, image[int(cy) : int(cy) + 1, int(cx) : int(cx) + 1])
        draw_mask(image, distractor_mask(rng, names, radius), cx, cy, colour)

    boxes: list[np.ndarray] = []
    labels: list[int] = []

    def draw_object(side: float, centre: tuple[float, float] | None, spread: float) -> None:
        label = int(rng.integers(len(names)))
        angle = float(rng.uniform(0, 2 * np.pi))
        radius = _radius_for_side(names[label], angle, side)
        spot = _place(rng, width, height, boxes, radius, centre, spread)
        if spot is None:  # crowded: this scene has one object fewer
            return
        cx, cy = spot
        top, left = int(max(cy - radius, 0)), int(max(cx - radius, 0))
        local = image[top : int(cy + radius) + 1, left : int(cx + radius) + 1]
        colour = contrasting_colour(rng, local)
        box = draw_shape(image, PlacedShape(names[label], cx, cy, radius, angle, colour))
        if box is not None and min(box[2] - box[0], box[3] - box[1]) >= 2:
            boxes.append(box)
            labels.append(label)

    short_side = min(width, height)
    for _ in range(int(rng.integers(LARGE_PER_IMAGE[0], LARGE_PER_IMAGE[1] + 1))):
        draw_object(rng.uniform(*LARGE_BOX_FRACTION) * short_side, None, 0.0)
    clusters = [
        (float(rng.uniform(0.1, 0.9) * width), float(rng.uniform(0.1, 0.9) * height))
        for _ in range(int(rng.integers(CLUSTERS_PER_IMAGE[0], CLUSTERS_PER_IMAGE[1] + 1)))
    ]
    spread = 0.06 * short_side
    for _ in range(_per_megapixel(rng, SMALL_PER_MEGAPIXEL, width, height)):
        clustered = rng.random() < CLUSTERED_FRACTION
        centre = clusters[int(rng.integers(len(clusters)))] if clustered else None
        draw_object(_log_uniform(rng, *SMALL_BOX_SIDES), centre, spread)
    if noise > 0:
        grain = rng.integers(-noise, noise + 1, size=image.shape, dtype=np.int16)
        image = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64).reshape(-1)
