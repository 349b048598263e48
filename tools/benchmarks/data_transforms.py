"""Per-transform CPU cost of the training pipeline:
each `augment:` entry alone vs a plain letterbox.

    python tools/benchmark.py data configs/shapes.yaml --per-transform

Used by `tools/benchmark.py data --per-transform` (tools/benchmarks/data.py).
Each variant is the real `DetectionDataset` path (decode + augment) run in this
process, one sample at a time with per-sample seeds and plans as the training
sampler makes them; CPU time (`time.process_time`) per image is measured, so
other load on the machine disturbs it less than wall clock. Every repeat times all
variants one after the other, and medians are printed, with the cost of each
variant over "letterbox" (the pipeline with `augment: []`), i.e. what the entry
adds per image when it is applied (p = 1; an entry at probability p costs p times
that on average). Decoding alone is the reference the 50% bar compares with.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import click

# (label, augment list, multi_scale as fractions of S or None);
# probabilities 1 show the cost when applied.
VARIANTS: list[tuple[str, list[dict[str, Any]] | None, tuple[float, float] | None]] = [
    ("letterbox", [], None),
    ("crop", [{"name": "crop", "p": 1.0}], None),
    ("border_crop", [{"name": "border_crop", "p": 1.0}], None),
    ("scale_jitter", [{"name": "scale_jitter"}], None),
    ("hflip", [{"name": "hflip", "p": 1.0}], None),
    ("vflip", [{"name": "vflip", "p": 1.0}], None),
    ("brightness_contrast", [{"name": "brightness_contrast", "p": 1.0}], None),
    ("hsv", [{"name": "hsv", "p": 1.0}], None),
    ("affine", [{"name": "affine", "p": 1.0}], None),
    ("mosaic", [{"name": "mosaic", "p": 1.0}], None),
    ("mixup", [{"name": "mixup", "p": 1.0}], None),
    ("multi_scale 0.75-1.25 S", [], (0.75, 1.25)),
    ("default (DEFAULT_AUGMENT)", None, None),
]


def _multi_scale(image_size: int, fractions: tuple[float, float] | None) -> list[int] | None:
    if fractions is None:
        return None
    low, high = (max(32, round(image_size * f / 32) * 32) for f in fractions)
    return [low, high]


def per_transform_table(
    records: list,
    image_size: int,
    repeats: int,
    config_augment: Any,
    config_multi_scale: list[int] | None,
) -> None:
    """Time decode alone and every variant (plus the config's own pipeline); print the table."""
    import torch
    from torch.utils.data import SequentialSampler

    from detector.data.augment.transforms import build_train_transform
    from detector.data.images import read_image_rgb
    from detector.data.loading.dataset import DetectionDataset
    from detector.data.loading.sampling import SeededSampler

    variants = [*VARIANTS, ("this config's pipeline", config_augment, "config")]
    runs: dict[str, tuple[DetectionDataset, list[tuple]]] = {}
    for label, augment, fractions in variants:
        multi_scale = (
            config_multi_scale if fractions == "config" else _multi_scale(image_size, fractions)
        )
        dataset = DetectionDataset(records, build_train_transform(augment, image_size, seed=0))
        sampler = SeededSampler(
            SequentialSampler(records),
            seed=0,
            batch_size=16,
            image_size=image_size,
            multi_scale=multi_scale,
        )
        runs[label] = (dataset, list(sampler))
        for item in runs[label][1][:4]:  # warm-up: build the per-size pipelines, fill caches
            dataset[item]
    paths = [record.image_path for record in records]
    cpu: dict[str, list[float]] = {"decode": [], **{label: [] for label in runs}}
    torch.set_num_threads(1)
    for _ in range(repeats):
        start = time.process_time()
        for path in paths:
            read_image_rgb(path)
        cpu["decode"].append((time.process_time() - start) / len(paths) * 1000)
        for label, (dataset, items) in runs.items():
            start = time.process_time()
            for item in items:
                dataset[item]
            cpu[label].append((time.process_time() - start) / len(items) * 1000)
    medians = {label: statistics.median(values) for label, values in cpu.items()}
    base = medians["letterbox"]
    click.echo(
        f"per transform, in this process, medians of {repeats} repeats over {len(records)} images:"
    )
    click.echo(
        f"{'variant (p = 1)':<28}{'cpu ms/img':>11}{'min':>8}{'max':>8}{'+ over letterbox':>18}"
        f"{'decode / this':>15}"
    )
    for label, values in cpu.items():
        extra = "" if label in ("decode", "letterbox") else f"{medians[label] - base:+.2f}"
        click.echo(
            f"{label:<28}{medians[label]:>11.2f}{min(values):>8.2f}{max(values):>8.2f}{extra:>18}"
            f"{medians['decode'] / medians[label]:>15.2f}"
        )
