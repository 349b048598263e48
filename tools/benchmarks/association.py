"""Tracker settings compared on many videos and detectors: the association benchmark.

    python tools/benchmark.py association --checkpoint a.pt --checkpoint b.pt --videos 12

One video says little: with six objects in 150 frames, one track found or lost
moves IDF1 by several points. So each checkpoint detects once on every video of
three sets, and every tracker setting replays the same detections:

- demo: `--videos` synthetic videos like the demo's (6 shapes, 150 frames, 320x240,
  30 fps; seeds 0.. , seed 0 is the demo's own video);
- crowded: `--crowded` videos of 10 shapes, 300 frames (seeds 100..);
- 15 fps: the demo videos with every other frame dropped (objects move twice as
  far between frames).

Printed per set: the mean over checkpoints x videos of IDF1, HOTA, AssA, MOTA and
ID switches per video, and the tracker's ceiling (IDF1 with the ground-truth boxes
as detections). Settings: the defaults, the settings before the recovery stage
(1 s buffer, `duplicate_iou` 0.85, no recovery), and the defaults with one change
each.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from benchmarks.ladder import cpu_model
from benchmarks.track import ground_truth_detections, replay_scores

Detections = list[tuple[np.ndarray, np.ndarray, np.ndarray]]

# name -> ByteTracker keyword arguments (on top of the defaults)
SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "before: 1 s, duplicate 0.85, no recovery": {
        "track_buffer": 1.0,
        "duplicate_iou": 0.85,
        "recover_iou": None,
    },
    "defaults, no recovery": {"recover_iou": None},
    "defaults, duplicate_iou 0.85": {"duplicate_iou": 0.85},
    "defaults, track_buffer 1 s": {"track_buffer": 1.0},
}
SCORES = ("IDF1", "HOTA", "AssA", "MOTA", "IDSW")


def write_videos(folder: Path, seeds: list[int], frames: int, shapes: int) -> list[Path]:
    """The synthetic videos (and their `<stem>.gt.txt`) of `seeds` in `folder`."""
    from detector.data.synthetic.shapes import SHAPE_CLASSES
    from detector.data.synthetic.shapes_video import write_shapes_video

    paths = []
    for seed in seeds:
        path = folder / f"shapes{shapes}_{frames}f_seed{seed}.mp4"
        write_shapes_video(
            path,
            list(SHAPE_CLASSES),
            width=320,
            height=240,
            frames=frames,
            fps=30.0,
            seed=seed,
            num_shapes=shapes,
        )
        paths.append(path)
    return paths


def detect_video(detector: Any, video: Path, batch: int = 16) -> Detections:
    """Per-frame (boxes, scores, labels) of `detector` on every frame of `video`."""
    from detector.inference.sources import open_source

    with open_source(str(video)) as source:
        frames = [frame.image for frame in source if frame.image is not None]
    out: Detections = []
    for start in range(0, len(frames), batch):
        for result in detector.predict_frames(frames[start : start + batch], color="bgr"):
            out.append((result.boxes.copy(), result.scores.copy(), result.labels.copy()))
    return out


def every_other_frame(gt_path: Path, out_path: Path) -> Path:
    """The ground truth of frames 1, 3, 5, ... renumbered 1, 2, 3, ... (the video at half rate)."""
    rows = []
    for line in gt_path.read_text(encoding="utf-8").splitlines():
        frame, rest = line.split(",", 1)
        if (int(frame) - 1) % 2 == 0:
            rows.append(f"{(int(frame) - 1) // 2 + 1},{rest}\n")
    out_path.write_text("".join(rows), encoding="utf-8")
    return out_path


@click.command()
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A detector of the shapes classes (repeat: every one runs on every video).",
)
@click.option("--videos", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--crowded", type=click.IntRange(min=0), default=8, show_default=True)
@click.option("--frames", type=click.IntRange(min=2), default=150, show_default=True)
@click.option("--conf", type=float, default=0.1, show_default=True, help="Detector threshold.")
@click.option("--threads", type=int, default=None, help="torch intra-op threads.")
def association(
    checkpoints: tuple[str, ...],
    videos: int,
    crowded: int,
    frames: int,
    conf: float,
    threads: int | None,
) -> None:
    """Tracker settings replayed on many videos x detectors: IDF1, HOTA, AssA, MOTA, IDSW."""
    if threads is not None:
        torch.set_num_threads(threads)
    from detector.inference.predictor import Detector

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo = write_videos(work, list(range(videos)), frames, 6)
        crowd = write_videos(work, list(range(100, 100 + crowded)), 2 * frames, 10)
        half_gt = [
            every_other_frame(v.with_suffix(".gt.txt"), work / f"{v.stem}.half.gt.txt")
            for v in demo
        ]
        # set name -> [(ground truth, fps, frame stride, the video its detections came from)]
        sets = {
            "demo": [(v.with_suffix(".gt.txt"), 30.0, 1, v) for v in demo],
            "crowded": [(v.with_suffix(".gt.txt"), 30.0, 1, v) for v in crowd],
            "15 fps": [(gt, 15.0, 2, v) for gt, v in zip(half_gt, demo, strict=True)],
        }
        detections: dict[tuple[str, Path], Detections] = {}
        for checkpoint in checkpoints:
            detector = Detector.from_checkpoint(checkpoint, score_threshold=conf)
            for video in demo + crowd:
                detections[(checkpoint, video)] = detect_video(detector, video)
        click.echo(
            f"{cpu_model()}, torch {torch.__version__}; {len(checkpoints)} checkpoints x "
            f"{videos} demo videos ({frames} frames) + {crowded} crowded ({2 * frames} frames), "
            f"conf {conf:g}"
        )
        for set_name, items in sets.items():
            if not items:
                continue
            click.echo(f"\n{set_name}: mean over {len(checkpoints)} x {len(items)} replays")
            click.echo(f"  {'setting':<44}" + "".join(f"{k:>8}" for k in SCORES) + "  ceiling IDF1")
            truth_boxes = [ground_truth_detections(gt, 0.0) for gt, _, _, _ in items]
            for name, options in SETTINGS.items():
                rows = [
                    replay_scores(detections[(c, video)][::stride], gt, work, fps, **options)
                    for c in checkpoints
                    for gt, fps, stride, video in items
                ]
                truth = [
                    replay_scores(boxes, gt, work, fps, **options)
                    for boxes, (gt, fps, _, _) in zip(truth_boxes, items, strict=True)
                ]
                cells = "".join(f"{statistics.mean(r[k] for r in rows):8.4f}" for k in SCORES)
                ceiling = statistics.mean(r["IDF1"] for r in truth)
                click.echo(f"  {name:<44}{cells}  {ceiling:12.4f}")
