"""Sliced inference benchmark: merge cost, batched tiles, and the merge settings' AP.

    python tools/benchmark.py slicing
    python tools/benchmark.py slicing --repeats 20 --threads 1 --tiles 160,320 --tile-image 1280x960
    python tools/benchmark.py slicing --train-minutes 6 --out /tmp/slicetrain   # + part 4

Three parts (four with `--train-minutes`), side by side in one run on this machine's CPU:

1. Merge cost: `merge_detections` (NMM and NMS, IOS and IoU) against `batched_nms` on
   the same ~10k detections of 100 tiles (a simulated 4193 px scene, 10 x 10 tiles of
   512 px at overlap 0.2), median time and the ratio to `batched_nms`; where the `sahi`
   package imports, SAHI's `GREEDYNMM` postprocess (IOS and IoU) on the same detections,
   and its greedy pass alone (`batched_greedy_nmm`, without its per-prediction objects).
2. Batched tiles: one image sliced through a random-weight model (the demo's
   resnet18 at width 0.25) in batches of `--batch` tiles against one tile per forward,
   the same code with `batch_size=1`; the outputs are checked equal, then timed
   (score threshold 0.5, so each tile has a trained model's handful of detections).
3. Merge settings: COCO AP of the merged detections of a simulated sliced case
   (`simulate_scene`: small objects seen whole or cut by tile borders, a few large
   objects cut by every tile that sees them plus the full-image pass) for every method,
   metric and a few thresholds (docs/slicing.md: the simulation alone would pick NMM).
   Where `sahi` imports, SAHI's `GREEDYNMM` at IOS 0.5 (its default) and IoU 0.5 too.
4. With `--train-minutes M`: configs/aerial.yaml trained on tiles and letterboxed at
   the same measured budget, each evaluated letterboxed and sliced, every merge on the
   tile-trained model, and issue 20's aim checked (`slicing_training.py`); the merge
   default comes from this part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import Tensor

from benchmarks.ladder import cpu_model
from benchmarks.nms import median_seconds
from benchmarks.slicing_training import DEFAULT_OUT, VAL_IMAGES, training_comparison


def simulate_scene(
    generator: np.random.Generator,
    *,
    size: int,
    tile: int,
    small: int,
    large: int,
    false_per_tile: int,
    num_classes: int = 5,
) -> tuple[dict[str, np.ndarray], Tensor, Tensor, Tensor]:
    """One square image's ground truth and the detections a sliced detector would return.

    Each tile of `tile_grid(size, size, tile, 0.2)` reports every object it sees at
    least 15% of: its box clipped to the tile, jittered by 4% of the object's size,
    with a score that falls with the hidden share (partial views score lower) and a
    10% chance of a confused class; plus `false_per_tile` low-scored false boxes. The
    full-image pass sees objects larger than 64 px whole, slightly looser.

    Returns:
        (ground truth {boxes [N, 4], labels [N]}, detections boxes [K, 4] float32,
        scores [K], labels int64 [K], all in image pixels).
    """
    from detector.postprocess import tile_grid

    sides = np.concatenate(
        [generator.uniform(8, 40, (small, 2)), generator.uniform(120, 400, (large, 2))]
    )
    corners = generator.uniform(0, 1, (len(sides), 2)) * (size - sides)
    gt_boxes = np.concatenate([corners, corners + sides], axis=1).astype(np.float32)
    gt_labels = generator.integers(0, num_classes, len(sides))
    boxes, scores, labels = [], [], []
    for x1, y1, x2, y2 in tile_grid(size, size, tile, 0.2):
        clipped = np.stack(
            [
                np.clip(gt_boxes[:, 0], x1, x2),
                np.clip(gt_boxes[:, 1], y1, y2),
                np.clip(gt_boxes[:, 2], x1, x2),
                np.clip(gt_boxes[:, 3], y1, y2),
            ],
            axis=1,
        )
        seen = (
            (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) / sides.prod(axis=1)
        )
        visible = seen >= 0.15
        jitter = generator.normal(0, 0.04, (int(visible.sum()), 4)) * np.tile(sides[visible], 2)
        found = np.clip(clipped[visible] + jitter, [x1, y1, x1, y1], [x2, y2, x2, y2])
        boxes.append(found)
        scores.append(
            np.clip(0.35 + 0.6 * seen[visible] * generator.uniform(0.8, 1.0, len(found)), 0, 1)
        )
        tile_labels = gt_labels[visible].copy()
        confused = generator.uniform(size=len(found)) < 0.1
        tile_labels[confused] = generator.integers(0, num_classes, int(confused.sum()))
        labels.append(tile_labels)
        corner = generator.uniform([x1, y1], [x2 - 30, y2 - 30], (false_per_tile, 2))
        boxes.append(
            np.concatenate([corner, corner + generator.uniform(6, 30, (false_per_tile, 2))], 1)
        )
        scores.append(generator.uniform(0.05, 0.4, false_per_tile))
        labels.append(generator.integers(0, num_classes, false_per_tile))
    big = sides.max(axis=1) > 64  # the full-image pass: large objects whole
    jitter = generator.normal(0, 0.06, (int(big.sum()), 4)) * np.tile(sides[big], 2)
    boxes.append(gt_boxes[big] + jitter)
    scores.append(generator.uniform(0.6, 0.9, int(big.sum())))
    labels.append(gt_labels[big])
    as_tensor = lambda parts, dtype: torch.from_numpy(np.concatenate(parts)).to(dtype)  # noqa: E731
    return (
        {"boxes": gt_boxes, "labels": gt_labels},
        as_tensor(boxes, torch.float32),
        as_tensor(scores, torch.float32),
        as_tensor(labels, torch.int64),
    )


MERGES = [("nmm", "ios"), ("nmm", "iou"), ("nms", "ios"), ("nms", "iou")]
# SAHI's greedy NMM (benchmarks.sahi_merge) at its default metric, IOS, and at IoU.
SAHI_METRICS = ["ios", "iou"]


def _sahi_note(detail: str = "") -> str:
    """One line: the SAHI version and backend compared (and `detail`), or why it is not."""
    from benchmarks.sahi_merge import sahi_backend, sahi_import_error

    error = sahi_import_error()
    if error is not None:
        return f"   sahi not compared (it does not import here: {error})"
    import sahi

    return f"   sahi {sahi.__version__}, {sahi_backend()} backend, class-aware{detail}"


def _merge_speed(repeats: int) -> None:
    from benchmarks.sahi_merge import (
        object_predictions,
        sahi_greedy_groups,
        sahi_import_error,
        sahi_postprocess,
    )
    from detector.postprocess import batched_nms, merge_detections

    generator = np.random.default_rng(0)
    _, boxes, scores, labels = simulate_scene(
        generator, size=4193, tile=512, small=5200, large=0, false_per_tile=25
    )
    click.echo(
        f"\n1. merge vs batched_nms: {len(boxes)} detections from 100 tiles (10 x 10 of 512 px, "
        f"overlap 0.2, 4193 px), threshold 0.5, median of {repeats} runs (ms)"
    )
    functions = [lambda: batched_nms(boxes, scores, labels, 0.5)] + [
        lambda m=method, k=metric: merge_detections(
            boxes, scores, labels, method=m, match_metric=k, match_threshold=0.5
        )
        for method, metric in MERGES
    ]
    names = ["batched_nms"] + [f"merge {method}/{metric}" for method, metric in MERGES]
    if sahi_import_error() is None:
        predictions = object_predictions(boxes, scores, labels)
        functions += [
            lambda k=metric: sahi_postprocess(
                predictions, method="nmm", match_metric=k, match_threshold=0.5
            )
            for metric in SAHI_METRICS
        ]
        functions += [
            lambda k=metric: sahi_greedy_groups(
                boxes, scores, labels, match_metric=k, match_threshold=0.5
            )
            for metric in SAHI_METRICS
        ]
        names += [f"sahi GREEDYNMM/{metric}" for metric in SAHI_METRICS]
        names += [f"sahi pass only/{metric}" for metric in SAHI_METRICS]
    medians = median_seconds(functions, repeats, torch.device("cpu"))
    for name, seconds in zip(names, medians, strict=True):
        click.echo(
            f"   {name:<22}{seconds * 1e3:>9.2f}   {seconds / medians[0]:>5.2f}x batched_nms"
        )
    click.echo(
        _sahi_note(
            "; GREEDYNMM takes SAHI's ObjectPrediction list (built before timing), the pass "
            "alone an [N, 6] array"
        )
    )


def _batched_tiles(repeats: int, batch: int, tiles: list[int], image_size: tuple[int, int]) -> None:
    import tempfile
    from pathlib import Path

    from detector.defaults import SlicingOptions
    from detector.inference.predictor import Detector
    from detector.inference.synthetic import random_checkpoint, synthetic_frame
    from detector.postprocess import tile_grid

    width, height = image_size
    with tempfile.TemporaryDirectory() as folder:
        path = random_checkpoint(Path(folder) / "bench.pt", image_size=448, model={"width": 0.25})
        base = Detector.from_checkpoint(path, device="cpu")
    image = synthetic_frame(3, (width, height))
    click.echo(
        f"\n2. batched tiles: {width}x{height} image, resnet18 width 0.25 (random weights), "
        f"score >= 0.5, no full pass, median of {repeats} runs (ms per image)"
    )
    click.echo(
        f"   {'tile':>6}{'tiles':>7}{'equal':>7}{'1 per forward':>15}"
        f"{f'{batch} per forward':>15}{'speed-up':>10}"
    )
    for tile in tiles:
        # Score threshold 0.5: ~15 detections per tile, as a trained model gives (at 0.25 the
        # random weights give 300 per tile, and merging 24k boxes would be timed instead).
        detectors = [
            Detector(
                base.model,
                names=base.names,
                image_size=448,
                score_threshold=0.5,
                slicing=SlicingOptions(size=tile, batch_size=size, full_image=False),
            )
            for size in (1, batch)
        ]
        one, batched = (detector(image) for detector in detectors)
        # Equal output: the same detections, boxes within 0.01 px (batched convolutions
        # may round differently in the last bits).
        same = len(one) == len(batched) and np.allclose(one.boxes, batched.boxes, atol=1e-2)
        medians = median_seconds(
            [lambda d=d: d(image) for d in detectors], repeats, torch.device("cpu")
        )
        click.echo(
            f"   {tile:>6}{len(tile_grid(width, height, tile, 0.2)):>7}{str(same):>7}"
            f"{medians[0] * 1e3:>15.1f}{medians[1] * 1e3:>15.1f}{medians[0] / medians[1]:>9.2f}x"
        )


def _merge_quality(images: int) -> None:
    from benchmarks.sahi_merge import object_predictions, sahi_import_error, sahi_postprocess
    from detector.data.record import SampleRecord
    from detector.evaluation.evaluator import evaluate_detections
    from detector.postprocess import merge_detections

    generator = np.random.default_rng(1)
    scenes = [
        simulate_scene(generator, size=1024, tile=256, small=30, large=2, false_per_tile=2)
        for _ in range(images)
    ]
    records = [
        SampleRecord(
            image_path=f"sim{i}",
            width=1024,
            height=1024,
            boxes=truth["boxes"],
            labels=truth["labels"],
            ignore=np.zeros(len(truth["labels"]), bool),
            image_id=i,
        )
        for i, (truth, *_) in enumerate(scenes)
    ]
    names = [f"class{i}" for i in range(5)]
    click.echo(
        f"\n3. merge settings on {images} simulated 1024 px images (tiles of 256 px, overlap 0.2, "
        "objects 8-40 px and 120-400 px, full-image pass): COCO AP"
    )
    click.echo(f"   {'merge':<24}{'AP':>7}{'AP50':>7}{'APs':>7}{'APm':>7}{'APl':>7}")
    settings: list[tuple[str, Any]] = [("none", None)]
    settings += [(f"{m}/{k} {t}", (m, k, t)) for m, k in MERGES for t in (0.3, 0.5, 0.7)]
    if sahi_import_error() is None:
        settings += [(f"sahi GREEDYNMM/{k} 0.5", ("sahi", k, 0.5)) for k in SAHI_METRICS]
    for name, setting in settings:
        predictions = {}
        for index, (_, boxes, scores, labels) in enumerate(scenes):
            if setting is not None and setting[0] == "sahi":
                boxes, scores, labels = sahi_postprocess(
                    object_predictions(boxes, scores, labels),
                    method="nmm",
                    match_metric=setting[1],
                    match_threshold=setting[2],
                )
            elif setting is not None:
                merged = merge_detections(
                    boxes,
                    scores,
                    labels,
                    method=setting[0],
                    match_metric=setting[1],
                    match_threshold=setting[2],
                )
                boxes, scores, labels = merged.boxes, merged.scores, merged.labels
            top = torch.argsort(scores, descending=True, stable=True)[:100]
            predictions[index] = {
                "boxes": boxes[top].numpy(),
                "scores": scores[top].numpy(),
                "labels": labels[top].numpy(),
            }
        stats = evaluate_detections(records, predictions, names, voc_metric="none").stats
        click.echo(
            f"   {name:<24}"
            + "".join(f"{stats[key]:>7.3f}" for key in ("AP", "AP50", "APs", "APm", "APl"))
        )
    click.echo(_sahi_note())


@click.command()
@click.option("--repeats", default=10, show_default=True, help="Timed runs per case.")
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads.")
@click.option("--batch", default=8, show_default=True, help="Tiles per forward in part 2.")
@click.option("--tiles", default="160,320", show_default=True, help="Tile sides in part 2.")
@click.option("--tile-image", default="1280x960", show_default=True, help="WxH of part 2's image.")
@click.option("--images", default=20, show_default=True, help="Simulated images in part 3.")
@click.option(
    "--train-minutes",
    default=0.0,
    show_default=True,
    help="Part 4 (benchmarks/slicing_training.py): each mode's training budget; 0: skip.",
)
@click.option("--train-steps", default=4, show_default=True, help="Timed steps per speed repeat.")
@click.option("--train-set", multiple=True, help="KEY=VALUE override for both part-4 runs.")
@click.option(
    "--val-images",
    default=VAL_IMAGES,
    show_default=True,
    help="Part 4's val split (data.synthetic.num_val): large objects are 1-3 per image.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Part 4's data, runs and results.json.",
)
def slicing(
    repeats: int,
    threads: int,
    batch: int,
    tiles: str,
    tile_image: str,
    images: int,
    train_minutes: float,
    train_steps: int,
    train_set: tuple[str, ...],
    val_images: int,
    out: Path,
) -> None:
    """Merge cost vs batched NMS, batched vs one-by-one tiles, merge settings' AP,
    and with --train-minutes tile-trained vs letterboxed-trained AP."""
    torch.set_num_threads(threads)
    width, height = (int(part) for part in tile_image.lower().split("x"))
    click.echo(f"CPU: {cpu_model()}; torch {torch.__version__}, {threads} thread(s)")
    _merge_speed(repeats)
    _batched_tiles(repeats, batch, [int(t) for t in tiles.split(",") if t], (width, height))
    _merge_quality(images)
    if train_minutes > 0:
        training_comparison(
            minutes=train_minutes,
            out=out,
            repeats=repeats,
            steps=train_steps,
            overrides=train_set,
            val_images=val_images,
        )
