"""ByteTracker on hand-built sequences with known answers, and its input rules."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from detector.tracking.tracker import ByteTracker


def resident_bytes() -> int:
    """Resident set size of this process (Linux /proc; the CI machines are Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def box(cx: float, cy: float, size: float = 20.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def run(
    tracker: ByteTracker,
    frames: list[list[tuple[list[float], float, int]]],
    fps: float = 30.0,
    times: list[float] | None = None,
) -> list[np.ndarray]:
    out = []
    for index, dets in enumerate(frames):
        boxes = np.array([d[0] for d in dets], np.float64).reshape(-1, 4)
        scores = np.array([d[1] for d in dets], np.float64)
        labels = np.array([d[2] for d in dets], np.int64)
        stamp = times[index] if times is not None else index / fps
        out.append(tracker.update(boxes, scores, labels, timestamp=stamp))
    return out


def test_two_objects_crossing_keep_their_ids() -> None:
    # A moves right, B moves left, 6 px apart vertically: they overlap heavily mid-way.
    frames = [[(box(20 + 6 * t, 100), 0.9, 0), (box(200 - 6 * t, 106), 0.9, 0)] for t in range(30)]
    ids = run(ByteTracker(), frames)
    assert ids[0].tolist() == [1, 2]
    assert all(frame.tolist() == [1, 2] for frame in ids), [frame.tolist() for frame in ids]


def test_crossing_with_label_flicker_keeps_one_id_and_majority_label() -> None:
    frames = [
        [(box(20 + 6 * t, 100), 0.9, 3 if t % 3 else 4), (box(200 - 6 * t, 106), 0.9, 1)]
        for t in range(30)
    ]
    tracker = ByteTracker()
    ids = run(tracker, frames)
    assert all(frame.tolist() == [1, 2] for frame in ids)
    assert tracker.track_label(1) == 3 and tracker.track_label(2) == 1


def test_class_aware_splits_a_flickering_track() -> None:
    # The measured trade-off: matching only equal labels breaks a track whose label flickers.
    frames = [[(box(20 + 2 * t, 100), 0.9, t % 2)] for t in range(10)]
    ids = run(ByteTracker(class_aware=True, min_hits=1), frames)
    assert len({int(frame[0]) for frame in ids}) > 1
    ids = run(ByteTracker(class_aware=False, min_hits=1), frames)
    assert {int(frame[0]) for frame in ids} == {1}


@pytest.mark.parametrize("fps", [10.0, 60.0])
def test_hidden_within_buffer_keeps_id_past_it_gets_new_one(fps: float) -> None:
    buffer_s = 1.0

    def sequence(hidden_frames: int) -> list[np.ndarray]:
        step = 60.0 / fps  # 60 px/s whatever the frame rate
        frames = []
        for t in range(10 + hidden_frames + 5):
            visible = not 10 <= t < 10 + hidden_frames
            frames.append([(box(30 + step * t, 100, 40), 0.9, 0)] if visible else [])
        return run(ByteTracker(track_buffer=buffer_s), frames, fps=fps)

    within = int(0.8 * fps)  # hidden 0.8 s: last seen 0.8 s + 1 frame ago on return
    beyond = int(1.5 * fps)
    ids = sequence(within)
    assert {int(i) for frame in ids for i in frame} == {1}
    ids = sequence(beyond)
    assert int(ids[9][0]) == 1
    returned = [int(frame[0]) for frame in ids[10 + beyond :]]
    # The new track is tentative on its first frame (-1), then confirmed with a new id.
    assert returned[0] == -1 and set(returned[1:]) == {2}


def test_low_score_detections_continue_but_never_start_tracks() -> None:
    tracker = ByteTracker(high_threshold=0.5, low_threshold=0.1)
    frames = [[(box(50 + 3 * t, 50), 0.9 if t < 5 else 0.3, 0)] for t in range(12)]
    ids = run(tracker, frames)
    assert {int(frame[0]) for frame in ids} == {1}  # the low-score frames keep id 1
    # A lone low-score object never becomes a track, however long it stays.
    lone = ByteTracker(high_threshold=0.5, low_threshold=0.1)
    ids = run(lone, [[(box(100, 100), 0.3, 0)] for _ in range(20)])
    assert all(frame.tolist() == [-1] for frame in ids)
    assert len(lone) == 0


def test_below_low_threshold_is_ignored() -> None:
    tracker = ByteTracker(low_threshold=0.1)
    ids = run(tracker, [[(box(50 + 3 * t, 50), 0.9 if t < 3 else 0.05, 0)] for t in range(6)])
    assert [int(frame[0]) for frame in ids] == [1, 1, 1, -1, -1, -1]


def test_frame_drops_on_a_live_source_are_predicted_over_by_timestamp() -> None:
    # 20 px boxes moving 8 px a frame at 30 fps; frames 10..19 are dropped (newest-frame policy).
    kept = list(range(10)) + list(range(20, 30))
    frames = [[(box(20 + 8 * t, 100), 0.9, 0)] for t in kept]
    with_time = run(ByteTracker(), frames, times=[t / 30 for t in kept])
    assert {int(frame[0]) for frame in with_time} == {1}
    # The same detections without timestamps (one frame apart each) lose the object:
    # 10 frames of motion in one step leaves no overlap with the one-frame prediction.
    without = run(ByteTracker(), frames, times=[t / 30 for t in range(len(kept))])
    assert len({int(frame[0]) for frame in without} - {-1}) == 2


def test_timestamp_none_steps_one_frame_at_frame_rate() -> None:
    tracker = ByteTracker(frame_rate=25.0)
    for _ in range(3):
        tracker.update(np.array([box(10, 10)]), np.array([0.9]))
    assert tracker.timestamp == pytest.approx(2 / 25)


def test_empty_frames_and_no_detections_at_all() -> None:
    tracker = ByteTracker()
    assert tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.0).shape == (0,)
    assert tracker.update([], [], None, 0.1).dtype == np.int64
    # A track born after the first update is tentative: an empty frame right after kills it.
    frames = [
        [(box(50, 50), 0.9, 0)],
        [],
        [(box(52, 50), 0.9, 0)],
        [(box(54, 50), 0.9, 0)],
        [],
        [(box(58, 50), 0.9, 0)],
    ]
    ids = run(tracker, frames, times=[0.2, 0.23, 0.26, 0.3, 0.33, 0.36])
    assert [frame.tolist() for frame in ids] == [[-1], [], [-1], [1], [], [1]]


def test_non_finite_and_inverted_boxes_are_dropped_and_counted() -> None:
    tracker = ByteTracker()
    boxes = np.array([box(50, 50), [np.nan, 0, 10, 10], [30, 30, 20, 40], box(150, 50)])
    scores = np.array([0.9, 0.9, 0.9, np.inf])
    ids = tracker.update(boxes, scores, np.zeros(4, np.int64), 0.0)
    assert ids.tolist() == [1, -1, -1, -1]
    assert tracker.skipped_detections == 3


def test_timestamp_rules() -> None:
    tracker = ByteTracker()
    tracker.update(np.array([box(50, 50)]), np.array([0.9]), None, 1.0)
    # A repeated timestamp is a zero-time update: same id, no motion.
    assert tracker.update(np.array([box(50, 50)]), np.array([0.9]), None, 1.0).tolist() == [1]
    with pytest.raises(ValueError, match="before the previous"):
        tracker.update(np.array([box(50, 50)]), np.array([0.9]), None, 0.5)
    with pytest.raises(ValueError, match="finite"):
        tracker.update(np.array([box(50, 50)]), np.array([0.9]), None, float("nan"))


def test_wrong_shapes_and_bad_options_raise() -> None:
    tracker = ByteTracker()
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        tracker.update(np.zeros((2, 5)), np.zeros(2))
    with pytest.raises(ValueError, match="differ in length"):
        tracker.update(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="track_buffer"):
        ByteTracker(track_buffer=-1)
    with pytest.raises(ValueError, match="recover_iou"):
        ByteTracker(recover_iou=1.5)
    with pytest.raises(ValueError, match="duplicate_iou"):
        ByteTracker(duplicate_iou=-0.1)
    with pytest.raises(ValueError, match="low_threshold"):
        ByteTracker(high_threshold=0.3, low_threshold=0.4)


def test_memory_stays_flat_over_10k_frames() -> None:
    # Objects come and go all the time: each generation of 5 lives 20 frames in its own band.
    rng = np.random.default_rng(0)
    tracker = ByteTracker(track_buffer=0.5)

    def frame(t: int) -> tuple[np.ndarray, np.ndarray]:
        objects = [k for k in range(t // 20 * 5, t // 20 * 5 + 5)]
        band = 40 + 80 * (t // 20 % 4)
        boxes = np.array([box(40 * (k % 5) + 30 + (t % 20) * 2, band, 24) for k in objects])
        return boxes + rng.normal(0, 0.5, boxes.shape), rng.uniform(0.6, 1.0, len(objects))

    for t in range(1000):
        tracker.update(*frame(t), None, t / 30)
    before = resident_bytes()
    held = []
    for t in range(1000, 10000):
        tracker.update(*frame(t), None, t / 30)
        held.append(len(tracker))
    growth = resident_bytes() - before
    assert max(held) <= 15  # 5 live + at most one generation of lost ones
    assert growth < 5_000_000, growth
    assert tracker._next_id > 2400  # ids were really handed out all along


def test_fuse_score_weighs_the_stage_one_gate_by_score() -> None:
    # Stage 1 on IoU alone matches a 0.55-score box at IoU 0.33;
    # IoU x score (0.18) is under the 0.2 gate. (Recovery off: it would match on IoU.)
    def second_frame(fuse: bool) -> int:
        tracker = ByteTracker(fuse_score=fuse, min_hits=1, recover_iou=None)
        tracker.update(np.array([box(50, 50)]), np.array([0.9]), None, 0.0)
        return int(tracker.update(np.array([box(60, 50)]), np.array([0.55]), None, 0.0)[0])

    assert second_frame(False) == 1
    assert second_frame(True) == 2


def test_one_object_detected_under_two_labels_gets_one_track() -> None:
    # Per-class NMS keeps both boxes; class-agnostic tracking keeps the higher-scored one.
    frames = [
        [(box(50 + 2 * t, 50), 0.9, 0), ([40.5 + 2 * t, 40, 60.5 + 2 * t, 60], 0.7, 1)]
        for t in range(5)
    ]
    ids = run(ByteTracker(), frames)
    assert all(frame.tolist() == [1, -1] for frame in ids)
    assert {int(i) for frame in run(ByteTracker(duplicate_iou=None), frames) for i in frame} == {
        1,
        2,
    }
    assert {int(i) for frame in run(ByteTracker(class_aware=True), frames) for i in frame} == {1, 2}


def test_recovery_finds_an_object_that_stopped_while_hidden() -> None:
    # Seen moving at 4 px a frame, hidden 10 frames, back where it was last seen:
    # the Kalman prediction ran on by ~40 px (no overlap with a 20 px box), its
    # last matched box did not move.
    frames = [[(box(50 + 4 * t, 50), 0.9, 0)] for t in range(10)]
    frames += [[] for _ in range(10)]
    frames += [[(box(50 + 4 * 9, 50), 0.9, 0)] for _ in range(5)]
    with_recovery = run(ByteTracker(), frames)
    assert {int(i) for frame in with_recovery for i in frame} == {1}
    without = run(ByteTracker(recover_iou=None), frames)
    assert [int(frame[0]) for frame in without[20:]] == [-1, 2, 2, 2, 2]


def test_recovery_respects_its_gate_and_the_buffer() -> None:
    # Back 15 px from where it was last seen (IoU 0.14 with a 20 px box): under the 0.2
    # gate, so a new track; and past the buffer no gate helps.
    frames = [[(box(50 + 4 * t, 50), 0.9, 0)] for t in range(10)]
    moved = frames + [[] for _ in range(10)] + [[(box(50 + 4 * 9 - 15, 50), 0.9, 0)]] * 3
    assert [int(frame[0]) for frame in run(ByteTracker(), moved)[20:]] == [-1, 2, 2]
    late = frames + [[] for _ in range(70)] + [[(box(50 + 4 * 9, 50), 0.9, 0)]] * 3
    assert [int(frame[0]) for frame in run(ByteTracker(), late)[80:]] == [-1, 2, 2]


def test_one_object_under_two_labels_at_nms_overlap_gets_one_track() -> None:
    # Two labels' boxes of one object at IoU 0.6: above the default duplicate_iou
    # (0.45, the NMS IoU) they are one object; at the former 0.85 they made two tracks.
    frames = [
        [(box(50 + 2 * t, 50), 0.9, 0), ([40 + 2 * t, 40, 60 + 2 * t, 52], 0.7, 1)]
        for t in range(6)
    ]
    assert all(frame.tolist() == [1, -1] for frame in run(ByteTracker(), frames))
    loose = run(ByteTracker(duplicate_iou=0.85), frames)
    assert {int(i) for frame in loose for i in frame} == {1, 2}


def test_objects_tracked_apart_are_not_duplicates_while_they_overlap() -> None:
    # Two objects with their own tracks come to overlap at IoU 0.6 for 8 frames:
    # each box continues its own track, so neither is dropped as the other's duplicate.
    def frame(t: int) -> list[tuple[list[float], float, int]]:
        gap = max(4.0, 40.0 - 6 * t)  # 40 px apart, closing to 4 px horizontally
        return [(box(100, 100), 0.9, 0), (box(100 + gap, 100), 0.8, 1)]

    ids = run(ByteTracker(), [frame(t) for t in range(14)])
    assert all(frame.tolist() == [1, 2] for frame in ids), [f.tolist() for f in ids]


def test_duplicate_mask_owners() -> None:
    from detector.tracking.association import duplicate_mask

    boxes = np.array([box(50, 50), [40, 40, 60, 52], box(150, 150)], np.float64)  # IoU 0.6
    scores = np.array([0.9, 0.7, 0.8])
    asked: list[list[int]] = []

    def owners(values: list[int]) -> Callable[[np.ndarray], np.ndarray]:
        def owners_of(indices: np.ndarray) -> np.ndarray:
            asked.append(sorted(indices.tolist()))
            return np.array([values[i] for i in indices])

        return owners_of

    assert duplicate_mask(boxes, scores, 0.45).tolist() == [False, True, False]
    assert duplicate_mask(boxes, scores, 0.45, owners([3, 5, 7])).tolist() == [False] * 3
    assert asked == [[0, 1]]  # only the boxes that overlap another are asked about
    assert duplicate_mask(boxes, scores, 0.45, owners([3, 3, 7])).tolist() == [False, True, False]
    assert duplicate_mask(boxes, scores, 0.45, owners([3, -1, 7])).tolist() == [False, True, False]
    asked.clear()
    assert duplicate_mask(boxes, scores, 0.65, owners([3, 5, 7])).tolist() == [False] * 3
    assert asked == []  # nothing overlaps: no pairing is asked for


def test_class_aware_recovery_needs_the_same_label() -> None:
    # The object stops while hidden and returns where it was last seen (recovery's case);
    # class-aware, a box of another label there is another object.
    seen = [[(box(50 + 4 * t, 50), 0.9, 2)] for t in range(10)] + [[] for _ in range(10)]

    def back(label: int) -> list[int]:
        frames = seen + [[(box(50 + 4 * 9, 50), 0.9, label)] for _ in range(3)]
        return [int(frame[0]) for frame in run(ByteTracker(class_aware=True), frames)[20:]]

    assert back(2) == [1, 1, 1]
    assert back(3) == [-1, 2, 2]
