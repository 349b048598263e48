"""`ByteTracker`: ByteTrack-style multi-object tracking over per-frame detections.

    tracker = ByteTracker(track_buffer=2.0)           # seconds a lost track is kept
    for frame in frames:
        ids = tracker.update(boxes, scores, labels, timestamp=frame_time_s)
        # ids int64 [N]: the track id of each detection, -1 for none

Each update (see docs/internals.md, "Tracking"):
1. every track's Kalman state is predicted to `timestamp` (a gap of dropped
   frames is one longer prediction);
2. high-score detections (>= `high_threshold`) are matched to all confirmed
   tracks, tracked and lost, by IoU (gate `match_iou`);
3. low-score detections (`low_threshold` .. `high_threshold`) are matched to the
   confirmed tracks still unmatched that were seen in the previous update (gate
   `low_match_iou`): they continue tracks through blur and occlusion but never
   start one;
3b. recovery (OC-SORT's observation-centric recovery): confirmed tracks still
   unmatched are matched to the high-score detections left by the IoU of their
   last matched box, not of their Kalman prediction (gate `recover_iou`): after an
   occlusion the prediction has drifted on the velocity it had before, while the
   object usually reappears near where it was last seen;
4. tentative tracks (born in the previous update) are matched to the high-score
   detections left (gate `tentative_match_iou`); unmatched tentative tracks die;
5. high-score detections still free with score >= `new_track_threshold` start
   tentative tracks, which get an id when matched again (`min_hits` updates in a
   row; tracks in the very first update are confirmed at once);
6. confirmed tracks unmatched for more than `track_buffer` seconds are removed.

Before matching, when class-agnostic, a detection overlapping a higher-scored one
by IoU > `duplicate_iou` is dropped as the same object under another label,
unless the two continue two different tracked tracks (the optimal one-to-one
pairing of tracks' predictions and the overlapping detections at IoU >= 0.5 pairs
each with its own track): objects tracked apart stay apart while they overlap.

Labels: by default matching ignores class labels (`class_aware=False`), because
detectors' labels flicker between similar classes; each track's class is the
score-weighted majority of its detections' labels (`track_label`).

Input rules: boxes that are not finite or have x2 < x1 / y2 < y1 are dropped
(id -1) and counted in `skipped_detections`; an empty frame is a normal update
(tracks age). Timestamps in seconds: None means "one frame at `frame_rate`
after the previous one"; a repeated timestamp is a zero-time update (no
motion); a timestamp earlier than the previous one raises ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detector.defaults import DEFAULT_IOU_THRESHOLD
from detector.tracking import kalman
from detector.tracking.association import box_iou_numpy, duplicate_mask, match

TENTATIVE, TRACKED, LOST = 0, 1, 2
# A detection "continues" a track when the optimal pairing of tracks' predictions and
# detections pairs them at this IoU or more: the usual IoU of a true positive.
CONTINUE_IOU = 0.5


@dataclass
class TrackView:
    """A confirmed track as the tracker sees it now.

    Attributes:
        track_id: positive id, never reused.
        box: float64 [4] xyxy, the Kalman estimate at the last update's time.
        label: the score-weighted majority label of its detections.
        score: score of its last matched detection.
        lost: True when it was not matched in the last update.
        last_seen: timestamp (s) of its last matched detection.
    """

    track_id: int
    box: np.ndarray
    label: int
    score: float
    lost: bool
    last_seen: float


class ByteTracker:
    """Multi-object tracker: Kalman prediction plus two-stage IoU association.

    Args:
        high_threshold: detections at or above it match first and may start tracks.
        low_threshold: detections below it are ignored.
        new_track_threshold: least score that starts a track (>= high_threshold).
        match_iou: IoU gate of stage 1 (high-score detections to all confirmed tracks).
        low_match_iou: IoU gate of stage 2 (low-score detections).
        tentative_match_iou: IoU gate for tentative tracks.
        track_buffer: seconds a lost track is kept for re-identification.
        recover_iou: IoU gate of the recovery stage (3b: unmatched tracks' last matched
            boxes to the high-score detections left); None turns the stage off.
        min_hits: matched updates in a row that confirm a tentative track.
        class_aware: match only detections whose label equals the track's label.
        fuse_score: in stage 1, match on IoU x detection score (ByteTrack's MOT17 setting).
        duplicate_iou: when class-agnostic, a detection overlapping a higher-scored one
            of the same frame by more than this IoU is a duplicate (the same object
            under another label, which per-class NMS keeps) and gets id -1, unless the
            two continue two different tracks; None keeps all. The default is the
            detector's NMS IoU (`detector.defaults.DEFAULT_IOU_THRESHOLD`): across
            labels the tracker suppresses what NMS suppresses within one.
        frame_rate: frames per second assumed when `update` gets no timestamp.
        reference_fps: the time unit of the motion model (its noise is tuned per
            1/reference_fps s); results are the same at any real frame rate.
    """

    def __init__(
        self,
        *,
        high_threshold: float = 0.5,
        low_threshold: float = 0.1,
        new_track_threshold: float | None = None,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        tentative_match_iou: float = 0.3,
        track_buffer: float = 2.0,
        recover_iou: float | None = 0.2,
        min_hits: int = 2,
        class_aware: bool = False,
        fuse_score: bool = False,
        duplicate_iou: float | None = DEFAULT_IOU_THRESHOLD,
        frame_rate: float = 30.0,
        reference_fps: float = 30.0,
    ) -> None:
        new_track_threshold = high_threshold if new_track_threshold is None else new_track_threshold
        for name, value in (
            ("high_threshold", high_threshold),
            ("low_threshold", low_threshold),
            ("new_track_threshold", new_track_threshold),
            ("match_iou", match_iou),
            ("low_match_iou", low_match_iou),
            ("tentative_match_iou", tentative_match_iou),
            ("recover_iou", 0.0 if recover_iou is None else recover_iou),
            ("duplicate_iou", 0.0 if duplicate_iou is None else duplicate_iou),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if low_threshold > high_threshold:
            raise ValueError(
                f"low_threshold {low_threshold} is above high_threshold {high_threshold}"
            )
        if not (math.isfinite(track_buffer) and track_buffer >= 0):
            raise ValueError(f"track_buffer must be >= 0 seconds, got {track_buffer}")
        if min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {min_hits}")
        if not (frame_rate > 0 and reference_fps > 0):
            raise ValueError(
                f"frame_rate and reference_fps must be > 0, got {frame_rate}, {reference_fps}"
            )
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.new_track_threshold = float(new_track_threshold)
        self.match_iou = float(match_iou)
        self.low_match_iou = float(low_match_iou)
        self.tentative_match_iou = float(tentative_match_iou)
        self.track_buffer = float(track_buffer)
        self.recover_iou = None if recover_iou is None else float(recover_iou)
        self.min_hits = int(min_hits)
        self.class_aware = bool(class_aware)
        self.fuse_score = bool(fuse_score)
        self.duplicate_iou = None if duplicate_iou is None else float(duplicate_iou)
        self.frame_rate = float(frame_rate)
        self.reference_fps = float(reference_fps)
        self.skipped_detections = 0
        self.reset()

    def reset(self) -> None:
        """Forget every track and the clock (ids restart at 1)."""
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._ids = np.zeros(0, np.int64)  # 0 while tentative
        self._state = np.zeros(0, np.int8)
        self._hits = np.zeros(0, np.int64)
        self._last_seen = np.zeros(0)
        self._last_box = np.zeros((0, 4))  # xyxy of the last matched detection
        self._score = np.zeros(0)
        self._votes: list[dict[int, float]] = []
        self._time: float | None = None
        self._updates = 0
        self._next_id = 1

    @property
    def timestamp(self) -> float | None:
        """Time (s) of the last update, None before the first."""
        return self._time

    def __len__(self) -> int:
        """Number of tracks held (tentative, tracked and lost)."""
        return len(self._ids)

    def _clock(self, timestamp: float | None) -> float:
        if timestamp is None:
            return 0.0 if self._time is None else self._time + 1.0 / self.frame_rate
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite seconds, got {timestamp}")
        if self._time is not None and timestamp < self._time:
            raise ValueError(
                f"timestamp {timestamp:.6f} s is before the previous update's "
                f"{self._time:.6f} s; timestamps must not go back (call reset() for a new stream)"
            )
        return timestamp

    @staticmethod
    def _inputs(
        boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        boxes = np.asarray(boxes, np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [N, 4] xyxy, got shape {list(boxes.shape)}")
        scores = np.asarray(scores, np.float64).reshape(-1)
        labels = (
            np.zeros(len(boxes), np.int64)
            if labels is None
            else np.asarray(labels).reshape(-1).astype(np.int64)
        )
        if len(scores) != len(boxes) or len(labels) != len(boxes):
            raise ValueError(
                "boxes, scores and labels differ in length: "
                f"{len(boxes)}, {len(scores)}, {len(labels)}"
            )
        return boxes, scores, labels

    def update(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray | None = None,
        timestamp: float | None = None,
    ) -> np.ndarray:
        """Advance to `timestamp` and associate one frame's detections.

        Args:
            boxes: float [N, 4] xyxy pixels.
            scores: float [N] in 0..1.
            labels: int [N] class indices (None: all 0).
            timestamp: seconds (any origin, non-decreasing); None: previous + 1/frame_rate.

        Returns:
            int64 [N]: each detection's track id, -1 where it belongs to no
            confirmed track (low score, tentative, dropped as invalid).
        """
        boxes, scores, labels = self._inputs(boxes, scores, labels)
        now = self._clock(timestamp)
        first = self._time is None
        elapsed = 0.0 if first else now - self._time
        self._time = now
        self._updates += 1
        result = np.full(len(boxes), -1, np.int64)

        valid = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        valid &= (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
        self.skipped_detections += int((~valid).sum())
        valid &= scores >= self.low_threshold

        if len(self._ids) and elapsed > 0:
            steps = np.full(len(self._ids), elapsed * self.reference_fps)
            self._mean, self._cov = kalman.predict(self._mean, self._cov, steps)
            # A lost track coasts on its motion, not on its growth: freeze the size.
            self._mean[self._state == LOST, 6:8] = 0.0
        track_boxes = kalman.box_cxcywh_to_xyxy(self._mean[:, :4])
        iou = box_iou_numpy(track_boxes, boxes, dtype=np.float32)
        same_label = None
        if self.class_aware and iou.size:
            same_label = self._majority_labels()[:, None] == labels[None, :]
            iou = np.where(same_label, iou, 0.0)
        if not self.class_aware and self.duplicate_iou is not None and valid.sum() > 1:
            candidates = np.flatnonzero(valid)
            duplicates = duplicate_mask(
                boxes[candidates],
                scores[candidates],
                self.duplicate_iou,
                owners_of=lambda crowded: self._continued_tracks(iou[:, candidates[crowded]]),
            )
            valid[candidates[duplicates]] = False

        high = np.flatnonzero(valid & (scores >= self.high_threshold))
        low = np.flatnonzero(valid & (scores < self.high_threshold))
        confirmed = np.flatnonzero(self._state != TENTATIVE)
        tentative = np.flatnonzero(self._state == TENTATIVE)
        matched_tracks: list[np.ndarray] = []
        matched_dets: list[np.ndarray] = []

        def stage(
            tracks: np.ndarray,
            dets: np.ndarray,
            gate: float,
            fuse: bool = False,
            similarity: np.ndarray | None = None,
        ) -> tuple[np.ndarray, np.ndarray]:
            """Match `tracks` to `dets` on `similarity` [len(tracks), len(dets)]
            (default: the IoU of the tracks' predictions)."""
            if similarity is None:
                similarity = iou[np.ix_(tracks, dets)]
            if fuse:  # IoU x score: of two equally close boxes, the surer one wins
                similarity = similarity * scores[dets][None, :].astype(similarity.dtype)
            pairs, free_tracks, free_dets = match(similarity, gate)
            matched_tracks.append(tracks[pairs[:, 0]])
            matched_dets.append(dets[pairs[:, 1]])
            return tracks[free_tracks], dets[free_dets]

        free_confirmed, free_high = stage(confirmed, high, self.match_iou, self.fuse_score)
        recent = free_confirmed[self._state[free_confirmed] == TRACKED]
        free_recent, _ = stage(recent, low, self.low_match_iou)
        if self.recover_iou is not None:
            unmatched = np.union1d(free_recent, free_confirmed[self._state[free_confirmed] == LOST])
            if len(unmatched) and len(free_high):
                last_iou = box_iou_numpy(self._last_box[unmatched], boxes[free_high], np.float32)
                if same_label is not None:
                    last_iou = np.where(same_label[np.ix_(unmatched, free_high)], last_iou, 0.0)
                _, free_high = stage(unmatched, free_high, self.recover_iou, similarity=last_iou)
        _, free_high = stage(tentative, free_high, self.tentative_match_iou)

        track_idx = np.concatenate(matched_tracks)
        det_idx = np.concatenate(matched_dets)
        self._apply_matches(track_idx, det_idx, boxes, scores, labels, now)

        # Unmatched: tracked -> lost, tentative -> removed, lost past the buffer -> removed.
        unmatched = np.ones(len(self._ids), bool)
        unmatched[track_idx] = False
        self._state[unmatched & (self._state == TRACKED)] = LOST
        keep = ~(unmatched & (self._state == TENTATIVE))
        keep &= ~((self._state == LOST) & (now - self._last_seen > self.track_buffer))
        result[det_idx] = self._ids[track_idx]
        self._select(keep)

        starters = free_high[scores[free_high] >= self.new_track_threshold]
        self._start_tracks(boxes[starters], scores[starters], labels[starters], now, confirm=first)
        if first or self.min_hits <= 1:
            result[starters] = self._ids[len(self._ids) - len(starters) :]
        result[result == 0] = -1  # tentative tracks have no id yet
        return result

    def _apply_matches(
        self,
        track_idx: np.ndarray,
        det_idx: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        now: float,
    ) -> None:
        if len(track_idx) == 0:
            return
        mean, cov = kalman.update(self._mean[track_idx], self._cov[track_idx], boxes[det_idx])
        self._mean[track_idx], self._cov[track_idx] = mean, cov
        self._hits[track_idx] += 1
        self._last_seen[track_idx] = now
        self._last_box[track_idx] = boxes[det_idx]
        self._score[track_idx] = scores[det_idx]
        self._state[track_idx[self._state[track_idx] == LOST]] = TRACKED
        for track, det in zip(track_idx.tolist(), det_idx.tolist(), strict=True):
            votes = self._votes[track]
            votes[int(labels[det])] = votes.get(int(labels[det]), 0.0) + float(scores[det])
        promote = track_idx[
            (self._state[track_idx] == TENTATIVE) & (self._hits[track_idx] >= self.min_hits)
        ]
        for track in promote.tolist():
            self._ids[track] = self._new_id()
        self._state[promote] = TRACKED

    def _continued_tracks(self, iou: np.ndarray) -> np.ndarray:
        """Per detection (columns of `iou` [T, D], finite boxes), the tracked track it
        continues, -1 for none: the one-to-one optimal pairing of tracked tracks'
        predictions and these detections at IoU >= CONTINUE_IOU (one-to-one: a track
        continues into one box only)."""
        owners = np.full(iou.shape[1], -1, np.int64)
        tracked = np.flatnonzero(self._state == TRACKED)
        if len(tracked) and iou.shape[1]:
            pairs, _, _ = match(iou[tracked], CONTINUE_IOU)
            owners[pairs[:, 1]] = tracked[pairs[:, 0]]
        return owners

    def _new_id(self) -> int:
        track_id, self._next_id = self._next_id, self._next_id + 1
        return track_id

    def _start_tracks(
        self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, now: float, confirm: bool
    ) -> None:
        count = len(boxes)
        if count == 0:
            return
        confirm = confirm or self.min_hits <= 1
        mean, cov = kalman.initiate(boxes)
        ids = np.array([self._new_id() for _ in range(count)] if confirm else [0] * count, np.int64)
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._ids = np.concatenate([self._ids, ids])
        self._state = np.concatenate(
            [self._state, np.full(count, TRACKED if confirm else TENTATIVE, np.int8)]
        )
        self._hits = np.concatenate([self._hits, np.ones(count, np.int64)])
        self._last_seen = np.concatenate([self._last_seen, np.full(count, now)])
        self._last_box = np.concatenate([self._last_box, boxes.reshape(-1, 4)])
        self._score = np.concatenate([self._score, scores])
        self._votes.extend(
            {int(label): float(score)} for label, score in zip(labels, scores, strict=True)
        )

    def _select(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self._mean, self._cov = self._mean[keep], self._cov[keep]
        self._ids, self._state, self._hits = self._ids[keep], self._state[keep], self._hits[keep]
        self._last_seen, self._score = self._last_seen[keep], self._score[keep]
        self._last_box = self._last_box[keep]
        self._votes = [
            votes for votes, kept in zip(self._votes, keep.tolist(), strict=True) if kept
        ]

    def _majority_labels(self) -> np.ndarray:
        return np.array(
            [max(votes, key=votes.__getitem__) for votes in self._votes], np.int64
        ).reshape(-1)

    def track_label(self, track_id: int) -> int:
        """The score-weighted majority label of a held track; KeyError if it is not held."""
        where = np.flatnonzero(self._ids == track_id)
        if track_id <= 0 or len(where) == 0:
            raise KeyError(f"no track with id {track_id}")
        votes = self._votes[int(where[0])]
        return max(votes, key=votes.__getitem__)

    def labels_for(self, track_ids: np.ndarray) -> np.ndarray:
        """Majority labels int64 [N] of held tracks `track_ids` [N]; -1 where an id is not held."""
        lookup = dict(zip(self._ids.tolist(), self._majority_labels().tolist(), strict=True))
        lookup.pop(0, None)  # tentative tracks have no id
        return np.array(
            [lookup.get(int(i), -1) for i in np.asarray(track_ids).reshape(-1)], np.int64
        )

    def held_ids(self) -> np.ndarray:
        """Ids int64 of the confirmed tracks held (tracked and lost)."""
        return self._ids[self._state != TENTATIVE].copy()

    def tracks(self, include_lost: bool = False) -> list[TrackView]:
        """The confirmed tracks, matched in the last update (plus lost ones if asked)."""
        boxes = kalman.box_cxcywh_to_xyxy(self._mean[:, :4])
        labels = self._majority_labels()
        return [
            TrackView(
                int(self._ids[i]),
                boxes[i].copy(),
                int(labels[i]),
                float(self._score[i]),
                bool(self._state[i] == LOST),
                float(self._last_seen[i]),
            )
            for i in range(len(self._ids))
            if self._state[i] == TRACKED or (include_lost and self._state[i] == LOST)
        ]
