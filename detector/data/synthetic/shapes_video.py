"""A video of moving shapes with its MOTChallenge ground truth: the tracking benchmark.

    write_shapes_video("demo.mp4", ["circle", "square"], width=320, height=240, frames=300, fps=30)
    # writes demo.mp4 and demo.gt.txt beside it

The motion is scripted so that every hard case of tracking occurs (then each
shape wanders between random waypoints at a speed that changes per segment):
- shapes 1 and 2 cross head-on, 10 px apart vertically, one drawn over the other;
- shape 3 leaves the frame on the right and comes back about 0.5 s later;
- shape 5, large, passes over shape 4, small and slow: full occlusion for a while;
- every shape changes speed at each waypoint (0.6 to 3.5 px a frame at 320x240).

Ground truth (`<stem>.gt.txt`), one line per object and frame in which any of it is
in the image: `frame, id, x, y, w, h, mark, class, visibility`. The box is the
shape's extent inside the image (occluded parts included, as MOTChallenge
annotates), class is the 1-based index into `names`, visibility the fraction of
the shape's pixels seen (not covered by shapes drawn later, not outside the
frame), and mark is 0 (ignore) when visibility < `MIN_VISIBILITY`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.data.synthetic.shapes import (
    PlacedShape,
    check_shape_names,
    draw_shape,
    shape_mask,
    textured_background,
)

MIN_VISIBILITY = 0.25


@dataclass
class VideoObject:
    """One object in one frame: id (1-based), class index,
    xyxy box in the image, visible fraction."""

    track_id: int
    label: int
    box: np.ndarray
    visibility: float


def ground_truth_path(video_path: str | Path) -> Path:
    """Where the ground truth of a synthetic video lives: `<stem>.gt.txt` beside it."""
    video_path = Path(video_path)
    return video_path.with_name(video_path.stem + ".gt.txt")


def _walk(
    start: np.ndarray,
    plan: list[tuple[np.ndarray, float]],
    frames: int,
    rng: np.random.Generator,
    width: int,
    height: int,
    margin: float,
) -> np.ndarray:
    """Centres [frames, 2]: through `plan`'s (target, speed) segments, then random waypoints."""
    positions = np.zeros((frames, 2))
    position = start.astype(np.float64).copy()
    segments = list(plan)
    for index in range(frames):
        positions[index] = position
        if not segments:
            target = np.array(
                [rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)]
            )
            segments.append((target, float(rng.uniform(0.6, 3.5))))
        target, speed = segments[0]
        step = target - position
        distance = float(np.hypot(*step))
        if distance <= speed:
            position = target.astype(np.float64).copy()
            segments.pop(0)
        else:
            position = position + step / distance * speed
    return positions


def _script(
    rng: np.random.Generator, width: int, height: int, count: int
) -> list[tuple[float, np.ndarray, list]]:
    """(radius, start, plan) per shape; speeds are px/frame at 320x240, scaled to the frame."""
    short = min(width, height)
    scale = short / 240
    radius = [float(rng.uniform(0.08, 0.11) * short) for _ in range(count)]
    if count >= 5:
        radius[3], radius[4] = 0.065 * short, 0.15 * short  # small one hidden by the big one
    mid_y = 0.42 * height
    scripts = []
    for k in range(count):
        r = radius[k]
        if k == 0:
            start, plan = (r + 4, mid_y), [((width - r - 4, mid_y), 2.4)]
        elif k == 1:
            start, plan = (width - r - 4, mid_y + 10 * scale), [((r + 4, mid_y + 10 * scale), 2.0)]
        elif k == 2:
            start = (0.55 * width, 0.2 * height)
            plan = [
                ((width + 1.6 * r, 0.2 * height), 3.0),
                ((width + 1.6 * r, 0.2 * height + 6 * scale), 1.0),
                ((0.5 * width, 0.25 * height), 2.6),
            ]
        elif k == 3:
            start, plan = (0.5 * width, 0.78 * height), [((0.56 * width, 0.78 * height), 0.6)]
        elif k == 4:
            start, plan = (r + 2, 0.76 * height), [((width - r - 2, 0.76 * height), 1.8)]
        else:
            start, plan = (rng.uniform(r, width - r), rng.uniform(r, height - r)), []
        scripts.append(
            (
                r,
                np.array(start, np.float64),
                [(np.array(target, np.float64), speed * scale) for target, speed in plan],
            )
        )
    return scripts


def render_shapes_video(
    names: list[str], *, width: int, height: int, frames: int, seed: int = 0, num_shapes: int = 6
) -> Iterator[tuple[np.ndarray, list[VideoObject]]]:
    """Frames (RGB uint8 [H, W, 3]) with the objects visible in each; see the module docstring."""
    names = check_shape_names(names)
    if frames < 1:
        raise ValueError(f"need frames >= 1, got {frames}")
    rng = np.random.default_rng(seed)
    background = textured_background(rng, height, width)
    shapes, paths, spins = [], [], []
    for k, (radius, start, plan) in enumerate(_script(rng, width, height, num_shapes)):
        shapes.append(
            PlacedShape(
                names[k % len(names)],
                float(start[0]),
                float(start[1]),
                radius,
                float(rng.uniform(0, 2 * np.pi)),
                tuple(int(c) for c in rng.integers(40, 256, 3)),
            )
        )
        paths.append(_walk(start, plan, frames, rng, width, height, margin=radius))
        spins.append(float(rng.uniform(-0.05, 0.05)))
    for index in range(frames):
        frame = background.copy()
        owner = np.full((height, width), -1, np.int32)
        full_pixels, boxes = [], []
        for k, shape in enumerate(shapes):  # list order is depth order: later shapes on top
            shape.centre_x, shape.centre_y = paths[k][index]
            shape.angle += spins[k]
            boxes.append(draw_shape(frame, shape))
            mask = shape_mask(shape.kind, shape.radius, shape.angle) >= 128
            full_pixels.append(int(mask.sum()))
            side = mask.shape[0]
            left, top = int(round(shape.centre_x - side / 2)), int(round(shape.centre_y - side / 2))
            x1, y1, x2, y2 = (
                max(left, 0),
                max(top, 0),
                min(left + side, width),
                min(top + side, height),
            )
            if x1 < x2 and y1 < y2:
                region = owner[y1:y2, x1:x2]
                region[mask[y1 - top : y2 - top, x1 - left : x2 - left]] = k
        seen = np.bincount(owner.ravel() + 1, minlength=len(shapes) + 1)[1:]
        objects = [
            VideoObject(k + 1, names.index(shape.kind), box, seen[k] / max(1, full_pixels[k]))
            for k, (shape, box) in enumerate(zip(shapes, boxes, strict=True))
            if box is not None
        ]
        yield frame, objects


def write_shapes_video(
    path: str | Path,
    names: list[str],
    *,
    width: int,
    height: int,
    frames: int,
    fps: float,
    seed: int = 0,
    num_shapes: int = 6,
) -> int:
    """Write the mp4 (mp4v) and its ground truth `<stem>.gt.txt`; return the frames written.

    Raises:
        ValueError: bad sizes or names. RuntimeError: OpenCV cannot open a video writer.
    """
    from detector.data.synthetic.embedded import write_video

    gt_rows: list[str] = []

    def bgr_frames() -> Iterator[np.ndarray]:
        for index, (frame, objects) in enumerate(
            render_shapes_video(
                names, width=width, height=height, frames=frames, seed=seed, num_shapes=num_shapes
            ),
            start=1,
        ):
            for obj in objects:
                x1, y1, x2, y2 = (float(v) for v in obj.box)
                mark = 1 if obj.visibility >= MIN_VISIBILITY else 0
                gt_rows.append(
                    f"{index},{obj.track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                    f"{mark},{obj.label + 1},{obj.visibility:.3f}\n"
                )
            yield frame[..., ::-1]

    written = write_video(path, bgr_frames(), width=width, height=height, fps=fps)
    ground_truth_path(path).write_text("".join(gt_rows), encoding="utf-8")
    return written
