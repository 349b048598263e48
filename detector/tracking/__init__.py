"""Multi-object tracking over detections, and tracking metrics.

    from detector import ByteTracker           # or: from detector.tracking.tracker import ByteTracker
    tracker = ByteTracker(track_buffer=1.0)
    ids = tracker.update(boxes_xyxy, scores, labels, timestamp=seconds)

Modules: kalman.py (constant-velocity filter), association.py (IoU and gated
assignment), tracker.py (ByteTracker), mot.py (MOTChallenge text files),
metrics/ (CLEAR, identity and HOTA scores), stream.py (tracking a video source),
draw.py (ids and trails on frames). Nothing here is imported by `import detector`.
"""
