"""Procedural scenes of coloured shapes: the drawing behind the embedded dataset.

    rng = np.random.default_rng(0)
    image, boxes, labels = render_scene(rng, width=192, height=192, names=["circle", "star"])
    # image uint8 [192, 192, 3] RGB; boxes float32 [N, 4] xyxy pixels; labels int64 [N]

The classes differ by form, not colour (each shape gets a random colour), so a
model has to learn outlines: a ring is a circle with the background showing
through its hole. Backgrounds are smooth colour fields with mid-frequency texture,
line and arc clutter and pixel noise. Boxes are the tight pixel extent of each
shape's anti-aliased mask at half coverage, so they match what is visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from detector.postprocess import box_area, box_iou

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")

_SUBPIXEL_BITS = 4  # cv2 drawing with fractional coordinates (shift=4: 1/16 px)


def check_shape_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """Return `names` as a list if every one is a known shape; raise ValueError otherwise."""
    names = list(names)
    unknown = [name for name in names if name not in SHAPE_CLASSES]
    if unknown or not names:
        raise ValueError(
            f"synthetic dataset: unknown class name(s) {unknown or names} "
            f"(the shapes generator draws {', '.join(SHAPE_CLASSES)})"
        )
    return names


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour field with texture and clutter, uint8 [H, W, 3] RGB."""
    coarse = rng.uniform(30, 225, size=(3, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = rng.normal(0, rng.uniform(4, 18), size=(max(2, height // 8), max(2, width // 8), 1))
    image += cv2.resize(
        texture.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )[..., None]
    image = np.clip(image, 0, 255).astype(np.uint8)
    add_clutter(rng, image, count=int(rng.integers(2, 9)))
    return image


def add_clutter(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Draw `count` thin lines, open arcs and specks (distractors, no box) in place."""
    height, width = image.shape[:2]
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            p1 = (int(rng.integers(width)), int(rng.integers(height)))
            p2 = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(image, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind == 1:
            # Open arcs (< 200 degrees, thin) so they never read as rings or circles.
            centre = (int(rng.integers(width)), int(rng.integers(height)))
            axes = (
                int(rng.integers(5, max(6, width // 3))),
                int(rng.integers(5, max(6, height // 3))),
            )
            start = float(rng.uniform(0, 360))
            cv2.ellipse(
                image, centre, axes, 0, start, start + rng.uniform(40, 200), colour, 1, cv2.LINE_AA
            )
        else:
            centre = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.circle(image, centre, int(rng.integers(1, 3)), colour, -1, cv2.LINE_AA)


def _polygon(
    num_points: int, radius: float, angle: float, centre: float, inner: float | None = None
) -> np.ndarray:
    """Regular polygon (or star when `inner` is a radius ratio) as int32 fixed-point points."""
    count = num_points * 2 if inner is not None else num_points
    theta = angle + np.arange(count) * 2 * np.pi / count
    radii = np.full(count, radius)
    if inner is not None:
        radii[1::2] *= inner
    points = np.stack([centre + radii * np.cos(theta), centre + radii * np.sin(theta)], axis=1)
    return np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)


def shape_mask(kind: str, radius: float, angle: float) -> np.ndarray:
    """Anti-aliased coverage mask of one shape, uint8 [P, P] with P = 2 * ceil(radius) + 4.

    Args:
        kind: one of SHAPE_CLASSES.
        radius: circumscribed radius in pixels.
        angle: rotation in radians (ignored for circle and ring).
    """
    side = 2 * int(np.ceil(radius)) + 4
    mask = np.zeros((side, side), np.uint8)
    centre = side / 2
    scale = 1 << _SUBPIXEL_BITS
    fixed_centre = (round(centre * scale), round(centre * scale))
    if kind == "circle":
        cv2.circle(mask, fixed_centre, round(radius * scale), 255, -1, cv2.LINE_AA, _SUBPIXEL_BITS)
    elif kind == "ring":
        thickness = max(2, round(radius * 0.35))
        mid_radius = radius - thickness / 2
        cv2.circle(
            mask,
            fixed_centre,
            round(mid_radius * scale),
            255,
            thickness,
            cv2.LINE_AA,
            _SUBPIXEL_BITS,
        )
    elif kind in ("square", "triangle", "star"):
        sides = {"square": 4, "triangle": 3, "star": 5}[kind]
        inner = 0.45 if kind == "star" else None
        points = _polygon(sides, radius, angle, centre, inner)
        cv2.fillPoly(mask, [points], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
    else:
        raise ValueError(f"unknown shape {kind!r} (known: {', '.join(SHAPE_CLASSES)})")
    return mask


@dataclass
class PlacedShape:
    """A shape to draw: class, centre (x, y), circumscribed radius, rotation, RGB colour."""

    kind: str
    centre_x: float
    centre_y: float
    radius: float
    angle: float
    colour: tuple[int, int, int]


def draw_shape(image: np.ndarray, shape: PlacedShape) -> np.ndarray | None:
    """Alpha-blend `shape` into `image` in place; return its tight box or None if off-image.

    Returns:
        float32 [4] xyxy pixel extent of the mask pixels at >= 50% coverage that
        landed inside the image, or None when nothing visible remains.
    """
    mask = shape_mask(shape.kind, shape.radius, shape.angle)
    side = mask.shape[0]
    left, top = int(round(shape.centre_x - side / 2)), int(round(shape.centre_y - side / 2))
    height, width = image.shape[:2]
    x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if x1 >= x2 or y1 >= y2:
        return None
    alpha = mask[y1 - top : y2 - top, x1 - left : x2 - left]
    region = image[y1:y2, x1:x2]
    weight = alpha[..., None].astype(np.float32) * (1 / 255)
    blended = region * (1 - weight) + np.asarray(shape.colour, np.float32) * weight
    image[y1:y2, x1:x2] = blended.astype(np.uint8)
    rows = np.flatnonzero((alpha >= 128).any(axis=1))
    cols = np.flatnonzero((alpha >= 128).any(axis=0))
    if len(rows) == 0:
        return None
    # Pixel columns c0..c1 inclusive -> continuous [c0, c1 + 1).
    return np.array([x1 + cols[0], y1 + rows[0], x1 + cols[-1] + 1, y1 + rows[-1] + 1], np.float32)


def contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A saturated random colour far enough from the mean `background` colour."""
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(8):
        hsv = np.array(
            [[[rng.integers(0, 180), rng.integers(120, 256), rng.integers(110, 256)]]], np.uint8
        )
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        if np.abs(colour - mean).sum() > 120:
            break
    else:
        colour = 255 - mean  # the complement always differs from the mean
    return tuple(int(c) for c in colour)


def box_overlap(box: np.ndarray, others: list[np.ndarray]) -> tuple[float, float]:
    """Max IoU of `box` against `others` and max fraction of an other box it covers."""
    if not others:
        return 0.0, 0.0
    candidate = torch.from_numpy(np.asarray(box, np.float64).reshape(1, 4))
    placed = torch.from_numpy(np.stack(others).astype(np.float64))
    iou = box_iou(candidate, placed)[0]  # [M]
    placed_area = box_area(placed)
    # IoU = I / (A + B - I), so the intersection is I = IoU (A + B) / (1 + IoU).
    intersection = iou * (box_area(candidate) + placed_area) / (1 + iou)
    return float(iou.max()), float((intersection / placed_area).max())


def free_spot(
    rng: np.random.Generator,
    width: int,
    height: int,
    boxes: list[np.ndarray],
    draw_radius: Callable[[], float],
    *,
    max_iou: float,
    max_cover: float,
    attempts: int = 20,
) -> tuple[float, float, float] | None:
    """A centre and radius whose square overlaps `boxes` little enough,
    or None after `attempts` tries.

    Each try draws a radius (`draw_radius`), then a centre keeping 70% of the radius
    inside the image; it is taken when its square's IoU with every box is below
    `max_iou` and it covers less than `max_cover` of any box.
    """
    for _attempt in range(attempts):
        radius = draw_radius()
        cx = rng.uniform(radius * 0.7, width - radius * 0.7)
        cy = rng.uniform(radius * 0.7, height - radius * 0.7)
        iou, cover = box_overlap(
            np.array([cx - radius, cy - radius, cx + radius, cy + radius]), boxes
        )
        if iou < max_iou and cover < max_cover:
            return cx, cy, radius
    return None


def draw_labelled_shape(
    rng: np.random.Generator,
    image: np.ndarray,
    kind: str,
    spot: tuple[float, float, float],
    boxes: list[np.ndarray],
    labels: list[int],
    label: int,
) -> None:
    """Draw a `kind` shape at `spot` (random angle, colour contrasting with what is under it);
    append its box and `label` to `boxes`/`labels` when at least 2 px of it show on each side."""
    cx, cy, radius = spot
    x1, y1 = int(max(cx - radius, 0)), int(max(cy - radius, 0))
    local = image[y1 : int(cy + radius) + 1, x1 : int(cx + radius) + 1]
    shape = PlacedShape(
        kind, cx, cy, radius, float(rng.uniform(0, 2 * np.pi)), contrasting_colour(rng, local)
    )
    box = draw_shape(image, shape)
    if box is not None and box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
        boxes.append(box)
        labels.append(label)


def render_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    names: list[str],
    max_objects: int = 6,
    empty_fraction: float = 0.05,
    noise: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one scene of shapes on a cluttered background.

    Args:
        rng: the scene's random generator (the only source of randomness).
        width, height: image size in pixels.
        names: classes to draw (subset of SHAPE_CLASSES); labels index into it.
        max_objects: most shapes per image; sizes span ~5% to ~45% of the short side.
        empty_fraction: probability of an image with no shapes (a negative).
        noise: amplitude of the uniform per-pixel noise (grey levels); higher values
            make bigger, slower-to-decode JPEGs (the benchmark uses this to mimic photos).

    Returns:
        image uint8 [H, W, 3] RGB, boxes float32 [N, 4] xyxy pixels, labels int64 [N].
    """
    image = textured_background(rng, height, width)
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    count = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_objects + 1))
    short_side = min(width, height)
    # Log-uniform radius: as many small shapes as large ones.
    low, high = np.log(0.03 * short_side), np.log(0.23 * short_side)

    def draw_radius() -> float:
        return max(float(np.exp(rng.uniform(low, high))), 4.0)

    for _ in range(count):
        label = int(rng.integers(len(names)))
        spot = free_spot(rng, width, height, boxes, draw_radius, max_iou=0.3, max_cover=0.4)
        if spot is not None:  # else no free spot for this one; the scene just has fewer shapes
            draw_labelled_shape(rng, image, names[label], spot, boxes, labels, label)
    # Sensor-like noise, drawn last so shapes and background share it.
    if noise > 0:
        grain = rng.integers(-noise, noise + 1, size=image.shape, dtype=np.int16)
        image = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return (
        image,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64).reshape(-1),
    )
