"""Multi-object tracking over detections, and tracking metrics.

    from detector import ByteTracker  # or: from detector.tracking.tracker import ByteTracker
    tracker = ByteTracker(track_buffer=2.0)
    ids = tracker.update(boxes_xyxy, scores, labels, timestamp=seconds)

Modules: kalman.py (constant-velocity filter), association.py (IoU and gated
assignment), tracker.py (ByteTracker), stream.py (tracking a frame source),
draw.py (ids and trails on frames); mot.py (MOTChallenge text files),
sequence.py (one sequence's data for scoring), metrics.py (CLEAR, identity and
HOTA), evaluate.py (files/folders -> score table). Nothing here is imported by
`import detector`.
"""
