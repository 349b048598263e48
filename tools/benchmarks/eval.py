"""Benchmark: our evaluate path against pycocotools alone on the same synthetic set.

    python tools/benchmark.py eval                 # 5000 images, 5 repeats
    python tools/benchmark.py eval --images 1000 --repeats 5

Ours: `evaluate_detections(records, predictions, names)` from SampleRecords and
per-image prediction dicts, including building the in-memory COCO objects and the
per-class table. pycocotools: `COCO(gt.json)`, `loadRes(results.json)`, evaluate,
accumulate, summarize on files holding the same data. Medians of wall-clock and
process CPU time (the latter is steadier on a shared machine); overhead is
ours / pycocotools - 1. The VOC metric is timed separately.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np


def synthetic_set(num_images: int, num_classes: int, seed: int = 0) -> tuple[list, dict, list[str]]:
    """Records with 0-10 boxes of mixed sizes, and predictions:
    jittered truths plus false positives."""
    from detector.data.record import SampleRecord

    rng = np.random.default_rng(seed)
    records, predictions = [], {}
    for image_id in range(1, num_images + 1):
        width, height = (int(v) for v in rng.integers(320, 640, 2))
        n = int(rng.integers(0, 11))
        wh = np.minimum(rng.uniform(8, 250, (n, 2)), [width - 1, height - 1])
        xy = rng.uniform(0, 1, (n, 2)) * ([width, height] - wh)
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, num_classes, n)
        records.append(
            SampleRecord(
                f"{image_id:06d}.jpg",
                width,
                height,
                boxes,
                labels,
                rng.random(n) < 0.05,
                image_id=image_id,
            )
        )
        k = int(rng.integers(0, 16))
        fp_xy = rng.uniform(0, [width * 0.8, height * 0.8], (k, 2))
        fp_boxes = np.concatenate([fp_xy, fp_xy + rng.uniform(8, 120, (k, 2))], 1)
        jitter = rng.normal(0, 0.05, (n, 4)) * np.tile(wh, 2)
        predictions[image_id] = {
            "boxes": np.concatenate([boxes + jitter, fp_boxes]).astype(np.float32),
            "scores": rng.random(n + k).astype(np.float32),
            "labels": np.concatenate([labels, rng.integers(0, num_classes, k)]),
        }
    return records, predictions, [f"class{i}" for i in range(num_classes)]


def _pycocotools_alone(gt_path: str, results_path: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results_path), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


@click.command("eval")
@click.option("--images", "num_images", default=5000, show_default=True, help="Synthetic images.")
@click.option("--classes", "num_classes", default=10, show_default=True)
@click.option(
    "--repeats", default=5, show_default=True, help="Timed runs of each side (medians reported)."
)
def eval_(num_images: int, num_classes: int, repeats: int) -> None:
    """Time evaluate_detections against pycocotools' own file-based evaluation."""
    from detector.evaluation.coco_format import predictions_to_coco_results, records_to_coco
    from detector.evaluation.evaluator import evaluate_detections
    from detector.evaluation.voc_metric import voc_ap_per_class

    records, predictions, names = synthetic_set(num_images, num_classes)
    num_dets = sum(len(p["scores"]) for p in predictions.values())
    num_gt = sum(len(r.boxes) for r in records)
    click.echo(f"{num_images} images, {num_gt} boxes, {num_dets} detections, {num_classes} classes")
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, results_path = Path(tmp) / "gt.json", Path(tmp) / "results.json"
        gt_path.write_text(json.dumps(records_to_coco(records, names)))
        results_path.write_text(
            json.dumps(predictions_to_coco_results(predictions, range(1, num_classes + 1)))
        )
        runs = {
            "ours": lambda: (
                evaluate_detections(records, predictions, names, voc_metric="none").stats
            ),
            "pycocotools": lambda: _pycocotools_alone(str(gt_path), str(results_path)),
            "voc": lambda: voc_ap_per_class(records, predictions, num_classes),
        }
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        outputs = {}
        for repeat in range(repeats):
            # Alternate the order and start each run from a collected heap, so that machine
            # noise and garbage left by the previous run hit both sides alike.
            order = ["ours", "pycocotools"] if repeat % 2 == 0 else ["pycocotools", "ours"]
            for name in [*order, "voc"]:
                gc.collect()
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                outputs[name] = runs[name]()
                wall[name].append(time.perf_counter() - wall_start)
                cpu[name].append(time.process_time() - cpu_start)
    stats, reference = outputs["ours"], outputs["pycocotools"]
    difference = max(abs(stats[k] - v) for k, v in zip(stats, reference, strict=True))
    median = {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in runs}
    click.echo(f"medians over {repeats} runs            wall s    cpu s")
    for name, label in (
        ("pycocotools", "pycocotools alone (json files)"),
        ("ours", "evaluate_detections (in memory)"),
        ("voc", "VOC AP50 (area), extra"),
    ):
        click.echo(f"{label:<33} {median[name][0]:7.2f}  {median[name][1]:7.2f}")
    overhead_wall = 100 * (median["ours"][0] / median["pycocotools"][0] - 1)
    overhead_cpu = 100 * (median["ours"][1] / median["pycocotools"][1] - 1)
    click.echo(
        f"overhead: wall {overhead_wall:+.1f} %, cpu {overhead_cpu:+.1f} %  (bar: at most +10 %)"
    )
    click.echo(f"largest stat difference to pycocotools: {difference:.1e}")
