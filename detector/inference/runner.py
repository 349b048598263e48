"""The detection loop: source -> predictor -> draw -> sinks, with a live status line.

    detector = Detector.from_checkpoint("best.pt")
    with open_source("video.mp4") as source:
        summary = run_detection(detector, source, out_dir="out", json_path="out/dets.json")

The source reads in its own thread and the video/image writer encodes in its
own thread, so decoding and encoding overlap with the model. Frames from files
are grouped into batches of `batch_size`; live frames go one at a time (a batch
would add latency). Ctrl-C (KeyboardInterrupt) ends the loop cleanly: the video
is finalised and the JSON array closed, and the summary says it was interrupted.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from detector.inference.draw import draw_detections
from detector.inference.frames import Frame, FrameSource
from detector.inference.sinks import AsyncSink, ImageSink, JsonSink, VideoSink


class FramePredictor(Protocol):
    """What the loop needs from a predictor (`Detector` implements it)."""

    def predict_frames(self, images: list[np.ndarray], color: str = "bgr") -> list[Any]: ...


class StatusLine:
    """A throttled one-line status on a stream (stderr): rewritten in place on a terminal."""

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.25 if self.tty else 2.0)
        self._last = 0.0
        self._shown = False

    def update(self, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self._shown = True
        self.stream.write(("\r\033[K" + text) if self.tty else text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class RunSummary:
    """What a run did: counts, failures, speed, where outputs went."""

    frames: int = 0
    detections: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    dropped: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    outputs: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _batches(
    frames: Iterator[Frame], batch_size: int, on_error: Callable[[Frame], None]
) -> Iterator[list[Frame]]:
    """Group readable frames into lists of up to `batch_size`; error frames go to `on_error`."""
    batch: list[Frame] = []
    for frame in frames:
        if frame.image is None:
            on_error(frame)
            continue
        batch.append(frame)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _video_name(source: FrameSource) -> str:
    if source.kind == "video":
        return Path(source.name).stem + ".mp4"
    return "camera.mp4" if source.kind == "camera" else "stream.mp4"


def run_detection(
    predictor: FramePredictor,
    source: FrameSource,
    *,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    draw: bool = True,
    batch_size: int = 1,
    show: bool = False,
    server: Any = None,
    status: StatusLine | None = None,
    log: Callable[[str], None] | None = None,
    max_frames: int | None = None,
    transform: Callable[[list[Frame], list[Any]], list[Any]] | None = None,
    draw_fn: Callable[[np.ndarray, Any], np.ndarray] = draw_detections,
) -> RunSummary:
    """Run `predictor` over every frame of `source` and write the outputs.

    Args:
        predictor: has `predict_frames(list of BGR arrays) -> list of Detections`.
        source: an opened FrameSource (iteration starts its reader thread).
        out_dir: annotated images (image sources) or `<stem>.mp4` (video,
            camera, stream) at the source's fps and frame size; None writes none.
        json_path: a JSON array with one record per image/frame (unreadable
            images get `{"path", "error"}`).
        draw: draw boxes on the written/shown/served frames.
        batch_size: frames per forward for file sources (live sources use 1).
        show: display frames in an OpenCV window ("q" or Esc stops).
        server: an `MJPEGServer` that receives each annotated frame.
        status: where the FPS/latency line goes; None prints none.
        log: receives failures of single images (default: stderr).
        max_frames: stop after this many frames (None: until the source ends).
        transform: called with each batch's frames and results, in frame order,
            before anything is written; returns the results to write (the
            tracker hooks in here: `detector.tracking.stream.TrackingStage`).
        draw_fn: draws one result on a frame (default: boxes and class tags).

    Returns:
        A RunSummary.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    summary = RunSummary()
    batch_size = 1 if source.live else max(1, batch_size)
    image_sink: Any = None
    json_sink = JsonSink(json_path) if json_path else None
    annotate = draw and (out_dir is not None or show or server is not None)
    recent: deque[float] = deque(maxlen=64)  # completion times for a sliding-window fps

    def on_error(frame: Frame) -> None:
        summary.failed.append((frame.name, frame.error or "unreadable"))
        log(f"skipped {frame.name}: {frame.error}")
        if json_sink is not None:
            json_sink.write({"path": frame.name, "frame": frame.index, "error": frame.error})

    def open_image_sink(first: np.ndarray) -> Any:
        if source.kind == "images":
            return AsyncSink(ImageSink(out_dir))
        size = source.size or (first.shape[1], first.shape[0])
        sink = VideoSink(Path(out_dir) / _video_name(source), fps=source.fps or 30.0, size=size)
        return AsyncSink(sink)

    start = time.perf_counter()
    try:
        for batch in _batches(iter(source), batch_size, on_error):
            if max_frames is not None and summary.frames >= max_frames:
                break
            began = time.perf_counter()
            results = predictor.predict_frames([frame.image for frame in batch], color="bgr")
            if transform is not None:
                results = transform(batch, results)
            done = time.perf_counter()
            summary.latencies_ms.append((done - began) * 1000.0 / len(batch))
            for frame, result in zip(batch, results, strict=True):
                summary.frames += 1
                summary.detections += len(result)
                if json_sink is not None:
                    record = result.to_dict()
                    record["path"] = frame.name
                    record["frame"] = frame.index
                    json_sink.write(record)
                image = frame.image
                if annotate:
                    image = draw_fn(image, result)
                if out_dir is not None:
                    if image_sink is None:
                        image_sink = open_image_sink(image)
                    image_sink.write(image, frame.name)
                if server is not None:
                    server.publish(image)
                if show:
                    import cv2

                    cv2.imshow("detector", image)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        raise KeyboardInterrupt
                recent.append(time.perf_counter())
            if status is not None and len(recent) > 1:
                window_fps = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)
                dropped = f"  dropped {source.dropped}" if source.live else ""
                total = f"/{source.frame_count}" if source.frame_count else ""
                status.update(
                    f"{source.name}: frame {summary.frames}{total}  {window_fps:.1f} FPS  "
                    f"latency {summary.latencies_ms[-1]:.1f} ms/frame{dropped}"
                )
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.seconds = time.perf_counter() - start
        summary.dropped = source.dropped
        source.close()
        try:
            if image_sink is not None:
                image_sink.close()
                inner = image_sink.sink
                summary.outputs.append(
                    str(inner.path if isinstance(inner, VideoSink) else inner.out_dir)
                )
        finally:
            if json_sink is not None:
                json_sink.close()
                summary.outputs.append(str(json_sink.path))
            if status is not None:
                status.finish()
            if show:
                import cv2

                cv2.destroyAllWindows()
    return summary
