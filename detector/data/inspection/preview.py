"""A grid of augmented training samples with their boxes drawn: what the model sees.

    detector data preview configs/shapes.yaml --out preview.jpg --num 16 --seed 0
    grid = render_preview(load_config("configs/shapes.yaml"), num=16, seed=0)  # BGR uint8

Each tile is one training sample exactly as the DataLoader builds it in the first
epoch (augmented with the config's `augment:` list, mosaic and mixup included, at
`model.image_size`), with every target box drawn in its class colour and
labelled; ignored (difficult / crowd) boxes are drawn grey with "(ignored)".
With `train.multi_scale` every tile is drawn as a batch of its own, so the grid
shows the range of input sides: each tile keeps its size (top-left in a cell of
the largest one, the rest black) and is captioned with its side.

With `data.slice` the samples are the tiles training uses (and the whole images,
with `data.slice.full_images`), each captioned with its image and the tile's
top-left corner (or "whole"), and the grid starts with one more cell: the
first training image scaled to fit, its tiles outlined in alternating colours and
its boxes drawn, captioned with the tile count (docs/sliced-training.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from detector.config import Config
from detector.data.record import SampleRecord


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
    for box, label, ignored in zip(
        np.asarray(boxes, np.float32).reshape(-1, 4), labels, ignore, strict=True
    ):
        label = int(label)
        colour = (160, 160, 160) if ignored else class_colour(label)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 1)
        text = names[label] if 0 <= label < len(names) else f"class {label}"
        text += " (ignored)" if ignored else ""
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        top = max(y1 - height - baseline - 1, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2, top + height + baseline + 1), colour, -1)
        cv2.putText(
            canvas,
            text,
            (x1 + 1, top + height),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return canvas


def tile_grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Arrange [H, W, 3] tiles in rows of `columns`, each top-left in a cell of the largest size
    (the rest and the last row padded black)."""
    rows = math.ceil(len(tiles) / columns)
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    grid = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[
            row * height : row * height + tile.shape[0],
            column * width : column * width + tile.shape[1],
        ] = tile
    return grid


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    """Write `text` in the tile's bottom-left corner (white on black)."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
    bottom = tile.shape[0] - 1
    cv2.rectangle(tile, (0, bottom - height - baseline - 1), (width + 2, bottom), (0, 0, 0), -1)
    cv2.putText(
        tile,
        text,
        (1, bottom - baseline),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.35,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return tile


def tile_overview(
    record: SampleRecord, image_rgb: np.ndarray, windows: list[tuple[int, int, int, int]], side: int
) -> np.ndarray:
    """One image scaled to fit `side` x `side`, its tile `windows` outlined, its boxes drawn.

    Args:
        record: the image's record (boxes in image pixels).
        image_rgb: the decoded image, uint8 [H, W, 3] RGB.
        windows: tiles (x1, y1, x2, y2) in image pixels (`tiles.tile_grid`).
        side: the longest side of the result.

    Returns:
        uint8 BGR image whose longest side is `side`.
    """
    scale = side / max(record.width, record.height)
    size = (max(1, round(record.width * scale)), max(1, round(record.height * scale)))
    resized = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
    canvas = np.ascontiguousarray(resized[..., ::-1])
    for box, label in zip(record.boxes * scale, record.labels, strict=True):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        corner = (max(x1, x2 - 1), max(y1, y2 - 1))
        cv2.rectangle(canvas, (x1, y1), corner, class_colour(int(label)), 1)
    for index, window in enumerate(windows):
        x1, y1, x2, y2 = (int(round(v * scale)) for v in window)
        colour = (255, 255, 255) if index % 2 == 0 else (0, 0, 0)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, 1)
    return canvas


def _sample_caption(record: SampleRecord) -> str:
    """`<image stem> @x,y` for a tile, `<image stem> whole` for a whole image."""
    stem = Path(record.image_path).stem
    if record.window is None:
        return f"{stem} whole"
    return f"{stem} @{record.window[0]},{record.window[1]}"


def render_preview(cfg: Config, *, num: int = 16, seed: int = 0) -> np.ndarray:
    """Augment `num` random training samples and draw them in a grid.

    Args:
        cfg: the config (data, data.slice, model.image_size, augment).
        num: number of samples (tiles); samples repeat when the split is smaller.
        seed: picks the samples and seeds the augmentation.

    Returns:
        uint8 BGR image of ceil(n / columns) x columns tiles of S x S pixels, with
        columns = ceil(sqrt(n)) (S: the largest side drawn under multi-scale); n is
        `num`, plus one for the tile overview under data.slice.

    Raises:
        ValueError: `num` < 1 or the training split has no usable images.
    """
    import torch
    from torch.utils.data import RandomSampler

    from detector.data.augment.transforms import build_train_transform
    from detector.data.catalog import load_split
    from detector.data.images import read_image_rgb
    from detector.data.loading.dataset import DetectionDataset, slice_training_records
    from detector.data.loading.sampling import SeededSampler
    from detector.data.tiles import tile_grid as tile_windows

    if num < 1:
        raise ValueError(f"--num must be at least 1, got {num}")
    split = load_split(cfg.data, "train")
    if not split.records:
        raise ValueError(f"data.train: no usable images under {cfg.data.root}")
    transform = build_train_transform(cfg.augment, cfg.model.image_size, seed=seed)
    records = split.records
    tiles: list[np.ndarray] = []
    if cfg.data.slice is not None:
        records, _ = slice_training_records(cfg, split.records)
        first = split.records[0]
        spec = cfg.data.slice
        windows = tile_windows(first.width, first.height, spec.size, spec.overlap)
        image = read_image_rgb(first.image_path)
        overview = tile_overview(first, image, windows, cfg.model.image_size)
        tiles.append(_caption(overview, f"{Path(first.image_path).stem}: {len(windows)} tiles"))
    dataset = DetectionDataset(records, transform)
    # The training loader's sampler (per-sample seeds and plans), one sample per
    # batch so that multi-scale draws a side per tile; epochs follow each other
    # when `num` exceeds the split.
    sampler = SeededSampler(
        RandomSampler(dataset, generator=torch.Generator()),
        seed,
        image_size=cfg.model.image_size,
        multi_scale=cfg.train.multi_scale,
    )
    items: list[tuple] = []
    epoch = 0
    while len(items) < num:
        sampler.set_epoch(epoch)
        items.extend(sampler)
        epoch += 1
    for item in items[:num]:
        sample = dataset[item]
        tile = draw_boxes(
            sample["image"], sample["boxes"], sample["labels"], split.names, sample["ignore"]
        )
        captions = [_sample_caption(records[item[0]])] if cfg.data.slice is not None else []
        if cfg.train.multi_scale is not None:
            captions.append(f"{tile.shape[0]} px")
        if captions:
            tile = _caption(tile, "  ".join(captions))
        tiles.append(tile)
    return tile_grid(tiles, columns=math.ceil(math.sqrt(len(tiles))))
