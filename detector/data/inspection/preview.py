"""A grid of augmented training samples with their boxes drawn: what the model sees.

    detector data preview configs/shapes.yaml --out preview.jpg --num 16 --seed 0
    grid = render_preview(load_config("configs/shapes.yaml"), num=16, seed=0)  # BGR uint8

Each tile is one training sample exactly as the DataLoader delivers it (letterboxed
to `model.image_size`, augmented with the config's `augment:` list), with every
target box drawn in its class colour and labelled; ignored (difficult / crowd)
boxes are drawn grey with "(ignored)".
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from detector.config import Config


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for class `label` (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_boxes(
    image_rgb: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    ignore: np.ndarray | None = None,
) -> np.ndarray:
    """Draw labelled boxes on a copy of an image.

    Args:
        image_rgb: uint8 [H, W, 3] RGB.
        boxes: [N, 4] xyxy pixels of that image.
        labels: int [N] indices into `names`.
        names: class names.
        ignore: bool [N]; True boxes are drawn grey and marked "(ignored)".

    Returns:
        uint8 [H, W, 3] BGR image (ready for cv2.imwrite).
    """
    canvas = np.ascontiguousarray(image_rgb[..., ::-1])
    ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, bool)
    for box, label, ignored in zip(np.asarray(boxes, np.float32).reshape(-1, 4), labels, ignore, strict=True):
        label = int(label)
        colour = (160, 160, 160) if ignored else class_colour(label)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 1)
        text = names[label] if 0 <= label < len(names) else f"class {label}"
        text += " (ignored)" if ignored else ""
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        top = max(y1 - height - baseline - 1, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2, top + height + baseline + 1), colour, -1)
        cv2.putText(canvas, text, (x1 + 1, top + height), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def tile_grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Arrange equal-size [S, S, 3] tiles in rows of `columns` (the last row padded black)."""
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    grid = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = tile
    return grid


def render_preview(cfg: Config, *, num: int = 16, seed: int = 0) -> np.ndarray:
    """Augment `num` random training samples and draw them in a grid.

    Args:
        cfg: the config (data, model.image_size, augment).
        num: number of samples (tiles); samples repeat when the split is smaller.
        seed: picks the samples and seeds the augmentation.

    Returns:
        uint8 BGR image of ceil(num / columns) x columns tiles of S x S pixels,
        with columns = ceil(sqrt(num)).

    Raises:
        ValueError: `num` < 1 or the training split has no usable images.
    """
    from detector.data.augment.transforms import build_train_transform
    from detector.data.catalog import load_split
    from detector.data.loading.dataset import DetectionDataset

    if num < 1:
        raise ValueError(f"--num must be at least 1, got {num}")
    split = load_split(cfg.data, "train")
    if not split.records:
        raise ValueError(f"data.train: no usable images under {cfg.data.root}")
    transform = build_train_transform(cfg.augment, cfg.model.image_size, seed=seed)
    dataset = DetectionDataset(split.records, transform)
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(dataset), size=num, replace=num > len(dataset))
    tiles = []
    for index in indices:
        sample = dataset[int(index)]
        tiles.append(draw_boxes(sample["image"], sample["boxes"], sample["labels"], split.names,
                                sample["ignore"]))
    return tile_grid(tiles, columns=math.ceil(math.sqrt(num)))
