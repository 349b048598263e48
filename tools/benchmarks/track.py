"""Tracking benchmark: tracker cost per frame, detect vs track frames/s, and tracking scores.

    python tools/benchmark.py track   # random-weight detector (speed only)
    python tools/benchmark.py track --checkpoint runs/demo/weights/best.pt --threads 1

1. `ByteTracker.update` time per frame at 10, 100 and 500 detections (objects
   moving over a 1920x1080 field with box noise and misses), median of frames.
2. On the synthetic shapes video (`detector data video`, with its ground truth):
   end-to-end frames/s of the `detect` path and of the `track` path, run
   alternately; the tracking stage's own time as a share of the track run, and
   the share a 100-detection frame would cost at detect's frame rate.
3. Scores of the tracker on that video (HOTA, IDF1, MOTA, ...): with the
   ground-truth boxes as detections (the tracker's ceiling), the same with 20% of
   labels changed (label flicker), and with the checkpoint's detections; each
   class-agnostic (default) and class-aware.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

SCORE_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "Frag")


def moving_boxes(
    count: int, frames: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame (boxes xyxy [~count, 4], scores, labels): `count` objects drifting, 5% missed."""
    rng = np.random.default_rng(seed)
    start = rng.uniform([0, 0], [1800, 1000], (count, 2))
    velocity = rng.uniform(-3, 3, (count, 2))
    size = rng.uniform(20, 60, (count, 2))
    labels = rng.integers(0, 5, count)
    out = []
    for t in range(frames):
        centre = start + velocity * t + rng.normal(0, 1.0, (count, 2))
        keep = rng.random(count) > 0.05
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)[keep]
        out.append((boxes, rng.uniform(0.2, 1.0, count)[keep], labels[keep]))
    return out


def update_ms(count: int, frames: int = 150, warmup: int = 20) -> float:
    """Median ms of one `ByteTracker.update` with `count` detections per frame."""
    from detector.tracking.tracker import ByteTracker

    tracker = ByteTracker()
    times = []
    for index, (boxes, scores, labels) in enumerate(moving_boxes(count, frames + warmup)):
        start = time.perf_counter()
        tracker.update(boxes, scores, labels, timestamp=index / 30)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class _Recorder:
    """A `run_detection` transform that keeps each frame's detections
    and times the tracking stage."""

    def __init__(self, stage: Any = None) -> None:
        self.stage = stage
        self.detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.seconds = 0.0

    def __call__(self, frames: list, results: list) -> list:
        self.detections += [(r.boxes.copy(), r.scores.copy(), r.labels.copy()) for r in results]
        if self.stage is None:
            return results
        start = time.perf_counter()
        tracked = self.stage(frames, results)
        self.seconds += time.perf_counter() - start
        return tracked


def run_video(
    detector: Any, video: Path, out_dir: Path, mot_path: Path | None
) -> tuple[float, _Recorder]:
    """One end-to-end run (`detect` path when mot_path is None, else `track`);
    returns (fps, recorder)."""
    from detector.inference.runner import run_detection
    from detector.inference.sources import open_source
    from detector.tracking.stream import TrackingStage
    from detector.tracking.tracker import ByteTracker

    start = time.perf_counter()
    with open_source(str(video)) as source:
        stage = None
        if mot_path is not None:
            tracker = ByteTracker(
                low_threshold=detector.score_threshold, frame_rate=source.fps or 30.0
            )
            stage = TrackingStage(tracker, source, detector.class_names, mot_path=mot_path)
        recorder = _Recorder(stage)
        hooks = (
            {"transform": recorder, "draw_fn": stage.draw}
            if stage is not None
            else {"transform": recorder}
        )
        summary = run_detection(detector, source, out_dir=out_dir, **hooks)
        if stage is not None:
            stage.close()
    return summary.frames / (time.perf_counter() - start), recorder


def replay_scores(
    detections: list, gt_path: Path, workdir: Path, fps: float, **tracker_options: Any
) -> dict:
    """Track recorded per-frame detections (frame i at i / fps) offline with a
    `ByteTracker(**tracker_options)` and score them against the ground truth. The
    tracker's low threshold defaults to the lowest score recorded (at most 0.1)."""
    from detector.tracking.evaluate import evaluate_tracks
    from detector.tracking.mot import MotWriter
    from detector.tracking.tracker import ByteTracker

    low = min([float(s.min()) for _, s, _ in detections if len(s)] + [0.1])
    tracker = ByteTracker(**({"low_threshold": low, "frame_rate": fps} | tracker_options))
    path = workdir / "replay.mot.txt"
    with MotWriter(path) as writer:
        for index, (boxes, scores, labels) in enumerate(detections):
            writer.write(
                index + 1, tracker.update(boxes, scores, labels, index / fps), boxes, scores
            )
    return evaluate_tracks(gt_path, path).combined


def ground_truth_detections(gt_path: Path, flip: float, seed: int = 0) -> list:
    """The visible (mark 1) ground-truth boxes as detections (score 0.9);
    `flip` of labels changed."""
    from detector.tracking.mot import read_mot

    rng = np.random.default_rng(seed)
    gt = read_mot(gt_path)
    out = []
    for frame in range(1, int(gt.frames.max()) + 1):
        rows = (gt.frames == frame) & (gt.marks != 0)
        boxes = gt.boxes_xywh[rows].copy()
        boxes[:, 2:] += boxes[:, :2]
        labels = gt.classes[rows] - 1
        flipped = rng.random(len(labels)) < flip
        labels[flipped] = (labels[flipped] + rng.integers(1, 5, int(flipped.sum()))) % 5
        out.append((boxes, np.full(len(boxes), 0.9), labels))
    return out


@click.command()
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Detector to run (default: random weights: speed only, its scores mean nothing).",
)
@click.option(
    "--frames",
    type=int,
    default=150,
    show_default=True,
    help="Frames of the synthetic video (the demo's 150).",
)
@click.option(
    "--video-size", default="320x240", show_default=True, help="WIDTHxHEIGHT of the video."
)
@click.option(
    "--repeats", type=int, default=3, show_default=True, help="Alternating detect/track repeats."
)
@click.option("--device", default="auto", show_default=True)
@click.option("--half", is_flag=True, help="fp16 autocast on CUDA.")
@click.option(
    "--conf",
    "score_threshold",
    type=float,
    default=0.1,
    show_default=True,
    help="Detector score threshold (the tracker's low threshold).",
)
@click.option(
    "--threads", type=int, default=None, help="torch intra-op threads (1 suits a loaded CPU)."
)
def track(
    checkpoint: str | None,
    frames: int,
    video_size: str,
    repeats: int,
    device: str,
    half: bool,
    score_threshold: float,
    threads: int | None,
) -> None:
    """Tracker update cost, detect vs track frames/s, and tracking scores on the synthetic video."""
    if threads is not None:
        torch.set_num_threads(threads)
    from detector.data.synthetic.shapes import SHAPE_CLASSES
    from detector.data.synthetic.shapes_video import ground_truth_path, write_shapes_video
    from detector.inference.predictor import Detector
    from detector.inference.synthetic import random_checkpoint

    click.echo("ByteTracker.update, median ms per frame (CPU, numpy + scipy):")
    costs = {count: update_ms(count) for count in (10, 100, 500)}
    for count, ms in costs.items():
        click.echo(f"  {count:>4} detections  {ms:8.3f} ms")

    width, height = (int(v) for v in video_size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = workdir / "shapes.mp4"
        write_shapes_video(
            video, list(SHAPE_CLASSES), width=width, height=height, frames=frames, fps=30.0
        )
        gt_path = ground_truth_path(video)
        ckpt = (
            Path(checkpoint)
            if checkpoint
            else random_checkpoint(workdir / "random.pt", image_size=160)
        )
        detector = Detector.from_checkpoint(
            ckpt, device=device, half=half, score_threshold=score_threshold
        )
        run_video(detector, video, workdir / "warmup", None)
        detect_fps, track_fps, shares = [], [], []
        recorder = None
        for _ in range(repeats):
            fps, _ = run_video(detector, video, workdir / "detect", None)
            detect_fps.append(fps)
            fps, recorder = run_video(detector, video, workdir / "track", workdir / "track.mot.txt")
            track_fps.append(fps)
            shares.append(recorder.seconds * fps / frames)  # tracking seconds / run seconds
        d_med, t_med = statistics.median(detect_fps), statistics.median(track_fps)
        per_frame = [len(s) for _, s, _ in recorder.detections]
        click.echo(
            f"\nvideo {width}x{height} x {frames} frames, device {detector.device}, torch threads "
            f"{torch.get_num_threads()}, {repeats} repeats (medians), "
            f"{statistics.mean(per_frame):.1f} detections/frame"
        )
        click.echo(f"  detect end-to-end   {d_med:8.1f} frames/s")
        click.echo(
            f"  track end-to-end    {t_med:8.1f} frames/s   (track/detect {t_med / d_med:.3f})"
        )
        click.echo(
            f"  tracking stage      {100 * statistics.median(shares):8.2f} % of the track run"
        )
        click.echo(
            "  at 100 dets/frame   "
            f"{100 * costs[100] / (costs[100] + 1000 / d_med):8.2f} % of a frame "
            f"(update {costs[100]:.2f} ms vs detect {1000 / d_med:.1f} ms)"
        )

        rows = [
            ("ground-truth boxes", ground_truth_detections(gt_path, 0.0)),
            ("ground truth, 20% labels flipped", ground_truth_detections(gt_path, 0.2)),
        ]
        if checkpoint:
            rows.append(
                (
                    f"detector ({Path(checkpoint).name}, conf {score_threshold:g})",
                    recorder.detections,
                )
            )
        click.echo(f"\nscores on the synthetic video ({gt_path.name}):")
        click.echo(
            f"  {'detections':<42} {'matching':<14}" + "".join(f"{k:>8}" for k in SCORE_KEYS)
        )
        for name, detections in rows:
            for aware in (False, True):
                scores = replay_scores(detections, gt_path, workdir, 30.0, class_aware=aware)
                cells = "".join(
                    f"{scores[k]:8.4f}" if isinstance(scores[k], float) else f"{scores[k]:8d}"
                    for k in SCORE_KEYS
                )
                click.echo(f"  {name:<42} {'class-aware' if aware else 'any class':<14}{cells}")
