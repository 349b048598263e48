"""Dense scenes: many small shapes, look-alike clutter, a rare class, large images.

    rng = np.random.default_rng([0, 7])
    width, height = dense_image_size(rng, 640)           # each side in [480, 640]
    image, boxes, labels = render_dense_scene(rng, width, height, ["circle", "square", "star"])

The tuning set `data.synthetic.kind: dense` (configs/dense.yaml) is built to be
unlike the embedded shapes demo, so that defaults chosen on both generalise:

- density: 20 to 60 labelled shapes per image (no empty images);
- small objects: circumscribed radius log-uniform in [6, 7% of the short side]
  pixels, so on a 480-640 px image seen by a 256 px network more than half of the
  objects are under 16 px across at network input;
- clutter that looks like objects: 10 to 30 unlabelled distractors per image,
  pentagons and hexagons (closed convex shapes of no target class) and partial
  target shapes (a shape, never a triangle, with a straight cut removing 35-65%
  of it), plus twice
  the line / arc / speck clutter of the shapes demo;
- class imbalance: the last class of `names` is drawn 10x less often than each
  of the others (`RARE_CLASS_WEIGHT`);
- images larger than the network input: each side drawn in [0.75 S, S] for
  `image_size` S (480-640 px for S = 640).

Everything is drawn from the scene's generator, so a seed gives the same scene.
"""

from __future__ import annotations

import cv2
import numpy as np

from detector.data.synthetic.shapes import (
    add_clutter,
    contrasting_colour,
    draw_labelled_shape,
    free_spot,
    shape_mask,
    textured_background,
)

RARE_CLASS_WEIGHT = 0.1  # the last class is drawn this often relative to each other class
OBJECTS_PER_IMAGE = (20, 60)  # inclusive range of labelled shapes attempted per image
DISTRACTORS_PER_IMAGE = (10, 30)
MIN_RADIUS = 6.0  # pixels of the generated image
MAX_RADIUS_FRACTION = 0.07  # of the short side
MIN_SIDE_FRACTION = 0.75  # each image side is drawn in [this * S, S]


def dense_image_size(rng: np.random.Generator, image_size: int) -> tuple[int, int]:
    """Width and height of one dense image, each uniform in [0.75 * image_size, image_size]."""
    if image_size < 64:
        raise ValueError(f"dense synthetic images need image_size >= 64, got {image_size}")
    low = int(np.ceil(MIN_SIDE_FRACTION * image_size))
    width, height = (int(side) for side in rng.integers(low, image_size + 1, size=2))
    return width, height


def class_weights(num_classes: int) -> np.ndarray:
    """Drawing probability of each class:
    equal, except the last one at RARE_CLASS_WEIGHT of the others."""
    if num_classes < 1:
        raise ValueError("need at least one class")
    weights = np.ones(num_classes)
    if num_classes > 1:
        weights[-1] = RARE_CLASS_WEIGHT
    return weights / weights.sum()


def distractor_mask(rng: np.random.Generator, names: list[str], radius: float) -> np.ndarray:
    """Coverage mask of one unlabelled look-alike: a pentagon/hexagon or a cut target shape."""
    angle = float(rng.uniform(0, 2 * np.pi))
    side = 2 * int(np.ceil(radius)) + 4
    if rng.random() < 0.5:
        sides = int(rng.integers(5, 7))
        theta = angle + np.arange(sides) * 2 * np.pi / sides
        centre = side / 2
        points = np.stack(
            [centre + radius * np.cos(theta), centre + radius * np.sin(theta)], axis=1
        )
        mask = np.zeros((side, side), np.uint8)
        cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        return mask
    # A target shape with a straight cut: keeps 35-65% of it, so it is no whole object.
    # Never a triangle: a cut parallel to a side leaves a smaller, whole triangle.
    cuttable = [name for name in names if name != "triangle"] or ["circle"]
    mask = shape_mask(str(rng.choice(cuttable)), radius, angle)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) - side / 2
    direction = float(rng.uniform(0, 2 * np.pi))
    offset = float(rng.uniform(-0.3, 0.3)) * radius
    mask[(xx * np.cos(direction) + yy * np.sin(direction)) > offset] = 0
    return mask


def draw_mask(
    image: np.ndarray,
    mask: np.ndarray,
    centre_x: float,
    centre_y: float,
    colour: tuple[int, int, int],
) -> None:
    """Alpha-blend a coverage mask centred at (centre_x, centre_y) into `image` in place."""
    side = mask.shape[0]
    left, top = int(round(centre_x - side / 2)), int(round(centre_y - side / 2))
    height, width = image.shape[:2]
    x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if x1 >= x2 or y1 >= y2:
        return
    weight = mask[y1 - top : y2 - top, x1 - left : x2 - left, None].astype(np.float32) * (1 / 255)
    region = image[y1:y2, x1:x2]
    image[y1:y2, x1:x2] = (region * (1 - weight) + np.asarray(colour, np.float32) * weight).astype(
        np.uint8
    )


def _radius(rng: np.random.Generator, short_side: int) -> float:
    """Log-uniform radius in [MIN_RADIUS, MAX_RADIUS_FRACTION * short_side]
    (as many small as large)."""
    high = max(MIN_RADIUS + 1, MAX_RADIUS_FRACTION * short_side)
    return float(np.exp(rng.uniform(np.log(MIN_RADIUS), np.log(high))))


def render_dense_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    names: list[str],
    noise: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one dense scene: distractors first, then the labelled shapes on top.

    Args:
        rng: the scene's random generator (the only source of randomness).
        width, height: image size in pixels.
        names: target classes (subset of shapes.SHAPE_CLASSES); labels index into it,
            and the last one is the rare class.
        noise: amplitude of the uniform per-pixel noise (grey levels).

    Returns:
        image uint8 [H, W, 3] RGB, boxes float32 [N, 4] xyxy pixels, labels int64 [N].
    """
    image = textured_background(rng, height, width)
    add_clutter(rng, image, count=int(rng.integers(8, 17)))
    short_side = min(width, height)
    for _ in range(int(rng.integers(DISTRACTORS_PER_IMAGE[0], DISTRACTORS_PER_IMAGE[1] + 1))):
        radius = _radius(rng, short_side)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        colour = contrasting_colour(rng, image[int(cy) : int(cy) + 1, int(cx) : int(cx) + 1])
        draw_mask(image, distractor_mask(rng, names, radius), cx, cy, colour)
    weights = class_weights(len(names))

    def draw_radius() -> float:
        return _radius(rng, short_side)

    boxes: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))):
        label = int(rng.choice(len(names), p=weights))
        spot = free_spot(rng, width, height, boxes, draw_radius, max_iou=0.2, max_cover=0.3)
        if spot is not None:  # else crowded: this scene has one shape fewer
            draw_labelled_shape(rng, image, names[label], spot, boxes, labels, label)
    if noise > 0:
        grain = rng.integers(-noise, noise + 1, size=image.shape, dtype=np.int16)
        image = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64).reshape(-1)
