"""Tracking over a frame source: the per-frame stage `detector track` and `Detector.track` share.

    det = Detector.from_checkpoint("best.pt", score_threshold=0.1)
    for frame, result in det.track("video.mp4", track_buffer=2.0):
        result.track_ids       # int64 [K], -1 for detections outside any confirmed track

Frame times: a video file's frame i is at i / fps (its own clock, however fast
it is read); a camera or stream frame at the time it was read, so frames the
newest-frame policy dropped are predicted over; image folders at i / 30.
A tracked detection's label is its track's majority label (labels that flicker
between frames do not flicker in the output).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.inference.detections import Detections
from detector.inference.frames import Frame, FrameSource
from detector.tracking.draw import Trails, draw_tracks
from detector.tracking.mot import MotWriter
from detector.tracking.tracker import ByteTracker

IMAGE_FOLDER_FPS = 30.0


@dataclass
class TrackedDetections(Detections):
    """`Detections` of one frame plus `track_ids` int64 [K] (-1: no confirmed track)."""

    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def to_dict(self) -> dict[str, Any]:
        """As `Detections.to_dict`, each detection with its "track_id" (-1 for none)."""
        record = super().to_dict()
        for item, track_id in zip(record["detections"], self.track_ids.tolist(), strict=True):
            item["track_id"] = int(track_id)
        return record


class TrackingStage:
    """Runs a tracker on each frame's detections, in frame order; optionally writes MOT text.

    Args:
        tracker: the ByteTracker to feed.
        source: the opened source (its kind, liveness and fps set the frame clock).
        class_names: class names of the detector (index = label), for relabelled detections.
        mot_path: write MOTChallenge results here (frame = source index + 1).
        trail_seconds: length of the drawn trails.
    """

    def __init__(
        self,
        tracker: ByteTracker,
        source: FrameSource,
        class_names: list[str],
        *,
        mot_path: str | Path | None = None,
        trail_seconds: float = 1.0,
    ) -> None:
        self.tracker = tracker
        self.live = bool(source.live)
        self.fps = (
            float(source.fps or IMAGE_FOLDER_FPS) if source.kind != "images" else IMAGE_FOLDER_FPS
        )
        self.class_names = list(class_names)
        self.trails = Trails(length=max(2, round(trail_seconds * self.fps)))
        self.mot = MotWriter(mot_path) if mot_path else None
        self.frames = 0
        self.seen_ids: set[int] = set()

    def timestamp(self, frame: Frame) -> float:
        """Seconds: capture time for live sources, index / fps otherwise."""
        return float(frame.timestamp) if self.live else frame.index / self.fps

    def track(self, frame: Frame, result: Detections) -> TrackedDetections:
        """Associate one frame's detections; returns them with track ids and track labels."""
        ids = self.tracker.update(
            result.boxes, result.scores, result.labels, timestamp=self.timestamp(frame)
        )
        labels = result.labels.copy()
        tracked = ids > 0
        if tracked.any():
            labels[tracked] = self.tracker.labels_for(ids[tracked])
        out = TrackedDetections(
            boxes=result.boxes,
            scores=result.scores,
            labels=labels,
            label_names=[self.class_names[i] for i in labels.tolist()],
            width=result.width,
            height=result.height,
            path=result.path,
            slicing=result.slicing,
            track_ids=ids,
        )
        if self.mot is not None:
            self.mot.write(frame.index + 1, ids, result.boxes, result.scores)
        self.trails.update(out)
        self.trails.prune(self.tracker.held_ids())
        self.frames += 1
        self.seen_ids.update(ids[tracked].tolist())
        return out

    def __call__(self, frames: list[Frame], results: list[Detections]) -> list[TrackedDetections]:
        """The `transform` hook of `run_detection`: track a batch in frame order."""
        return [self.track(frame, result) for frame, result in zip(frames, results, strict=True)]

    def draw(self, image: np.ndarray, result: TrackedDetections) -> np.ndarray:
        """The `draw_fn` hook of `run_detection`: ids, tags and trails."""
        return draw_tracks(image, result, self.trails)

    def summary(self) -> str:
        """One line for the command's report."""
        return f"{len(self.seen_ids)} tracks over {self.frames} frames" + (
            f", {self.tracker.skipped_detections} invalid detections dropped"
            if self.tracker.skipped_detections
            else ""
        )

    def close(self) -> list[str]:
        """Finish the MOT file; returns the outputs written."""
        if self.mot is None:
            return []
        self.mot.close()
        return [str(self.mot.path)]


def track_source(
    detector: Any,
    source: str | FrameSource,
    tracker: ByteTracker | None = None,
    **tracker_options: Any,
) -> Iterator[tuple[Frame, TrackedDetections]]:
    """Yield (frame, TrackedDetections) for every readable frame of `source`.

    Args:
        detector: a `Detector` (anything with `predict_frames` and `names`).
        source: a path/URL/camera index (opened and closed here) or an opened FrameSource.
        tracker: a ByteTracker to use; default one built from `tracker_options`
            (whose `low_threshold` defaults to the detector's score threshold).
    """
    from detector.inference.sources import open_source

    opened = open_source(str(source)) if not isinstance(source, FrameSource) else source
    if tracker is None:
        options = {
            "low_threshold": min(getattr(detector, "score_threshold", 0.1), 0.5)
        } | tracker_options
        tracker = ByteTracker(**options)
    stage = TrackingStage(tracker, opened, list(detector.class_names))
    try:
        for frame in opened:
            if frame.image is None:
                continue
            result = detector.predict_frames([frame.image], color="bgr")[0]
            yield frame, stage.track(frame, result)
    finally:
        if opened is not source:
            opened.close()
