"""Tracking over sources: frame clocks (video time vs capture time), relabelling, Detector.track."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detector.inference.frames import Frame
from detector.inference.predictor import Detections, Detector
from detector.inference.synthetic import random_checkpoint, write_synthetic_video
from detector.tracking.mot import read_mot
from detector.tracking.stream import TrackedDetections, TrackingStage
from detector.tracking.tracker import ByteTracker


class FakeSource:
    def __init__(self, live: bool, fps: float | None, kind: str) -> None:
        self.live, self.fps, self.kind = live, fps, kind


def detections(boxes: list[list[float]], labels: list[int]) -> Detections:
    return Detections(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.full(len(boxes), 0.9, np.float32),
        labels=np.array(labels, np.int64),
        label_names=["a", "b"][:1] * len(boxes),
        width=640,
        height=480,
    )


def test_live_source_frame_drops_are_predicted_over_with_capture_times(tmp_path: Path) -> None:
    # A camera at 30 fps whose reader dropped frames 10..19 (newest-frame policy): indices and
    # capture times jump together; the box moved 10 frames' worth (8 px a frame).
    stage = TrackingStage(
        ByteTracker(), FakeSource(True, 30.0, "camera"), ["a", "b"], mot_path=tmp_path / "m.txt"
    )
    kept = list(range(10)) + list(range(20, 25))
    ids = []
    for index in kept:
        frame = Frame(index, np.zeros((4, 4, 3), np.uint8), "cam", timestamp=100.0 + index / 30)
        ids.append(
            int(
                stage.track(
                    frame, detections([[20 + 8 * index, 50, 40 + 8 * index, 70]], [0])
                ).track_ids[0]
            )
        )
    assert ids == [1] * 15
    stage.close()
    assert read_mot(tmp_path / "m.txt").frames.tolist() == [
        i + 1 for i in kept
    ]  # MOT frames keep the gap


def test_video_files_use_their_own_clock_not_read_time() -> None:
    stage = TrackingStage(ByteTracker(), FakeSource(False, 25.0, "video"), ["a", "b"])
    assert stage.timestamp(Frame(50, None, "v.mp4", timestamp=12345.0)) == pytest.approx(2.0)
    folder = TrackingStage(ByteTracker(), FakeSource(False, None, "images"), ["a", "b"])
    assert folder.timestamp(Frame(30, None, "x.jpg", timestamp=5.0)) == pytest.approx(1.0)


def test_tracked_labels_are_the_majority_label_and_json_has_track_ids() -> None:
    stage = TrackingStage(ByteTracker(), FakeSource(False, 30.0, "video"), ["a", "b"])
    out: TrackedDetections | None = None
    for index, label in enumerate([0, 0, 1, 0, 1, 0]):
        out = stage.track(
            Frame(index, None, "v", 0.0), detections([[10 + index, 10, 50 + index, 50]], [label])
        )
        assert out.labels.tolist() == [0] and out.names == ["a"]  # flicker to "b" never shows
    record = out.to_dict()
    assert record["detections"][0]["track_id"] == 1 and record["detections"][0]["name"] == "a"


def test_detector_track_yields_every_frame_with_ids(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    checkpoint = random_checkpoint(tmp_path / "tiny.pt", image_size=64)
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=12, size=(64, 48), fps=15.0)
    detector = Detector.from_checkpoint(checkpoint, device="cpu", score_threshold=0.1)
    frames = list(detector.track(str(video), high_threshold=0.3))
    assert [frame.index for frame, _ in frames] == list(range(12))
    for _, result in frames:
        assert isinstance(result, TrackedDetections) and result.track_ids.shape == (len(result),)
        tracked = result.track_ids[result.track_ids > 0]
        assert len(tracked) == len(set(tracked.tolist()))
    assert any((result.track_ids > 0).any() for _, result in frames)


def test_trails_and_tracks_stay_bounded_as_objects_come_and_go() -> None:
    stage = TrackingStage(
        ByteTracker(track_buffer=0.2), FakeSource(False, 30.0, "video"), ["a", "b"]
    )
    most = 0
    for index in range(2000):
        generation = index // 10  # every 10 frames two new objects somewhere else
        x = 50 + 300 * (generation % 2)
        boxes = [
            [x + index % 10, 20, x + 30 + index % 10, 50],
            [x + index % 10, 200, x + 30 + index % 10, 230],
        ]
        stage.track(Frame(index, None, "v", 0.0), detections(boxes, [0, 0]))
        most = max(most, len(stage.trails.points), len(stage.tracker))
    assert most <= 6 and len(stage.seen_ids) > 300
