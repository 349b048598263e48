"""Outputs of `detector detect`: annotated images, an annotated video, a JSON file.

    with VideoSink("out/video.mp4", fps=25.0, size=(1280, 720)) as sink:
        sink.write(frame_bgr, name="video.mp4")
    json_sink = JsonSink("dets.json"); json_sink.write(record); json_sink.close()

`AsyncSink` moves a sink's encoding (JPEG/MP4) to its own thread with a bounded
queue, so encoding overlaps with the model instead of adding to each frame.
`JsonSink` streams a valid JSON array (one record per image/frame) as it goes,
so memory stays flat and an interrupted run still leaves a parseable file.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class SinkError(RuntimeError):
    """An output that cannot be written; the message names the file."""


class VideoSink:
    """An mp4 (mp4v) video with the source's fps and frame size.

    Args:
        path: output file; its folder is created.
        fps: frames per second written in the container.
        size: (width, height); frames of another size are resized to it.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(size[0]), int(size[1]))
        self.frames = 0
        self._writer = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), self.size
        )
        if not self._writer.isOpened():
            raise SinkError(
                f"{self.path}: cannot open a video writer "
                f"(mp4v, {fps:g} fps, {self.size[0]}x{self.size[1]})"
            )

    def write(self, image: np.ndarray, name: str = "") -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finalise the container; a video with no frame is removed rather than left empty."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames == 0 and self.path.exists():
            self.path.unlink()
        elif not self.path.exists() or self.path.stat().st_size == 0:
            raise SinkError(f"{self.path}: the video writer produced an empty file")

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageSink:
    """Annotated images in a folder, named after their source files (duplicates get _1, _2...)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        self._used: set[str] = set()

    def write(self, image: np.ndarray, name: str = "image.jpg") -> None:
        path = Path(name)
        stem, suffix = path.stem, path.suffix.lower() or ".jpg"
        candidate, counter = f"{stem}{suffix}", 0
        while candidate in self._used:
            counter += 1
            candidate = f"{stem}_{counter}{suffix}"
        self._used.add(candidate)
        target = self.out_dir / candidate
        ok, encoded = cv2.imencode(suffix, image)
        if not ok:
            raise SinkError(f"{target}: cannot encode the image as {suffix}")
        target.write_bytes(encoded.tobytes())  # imwrite cannot handle non-ASCII paths everywhere
        self.written.append(target)

    def close(self) -> None:
        pass


class JsonSink:
    """A JSON array written record by record; `close()` ends the array."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        self._file.write("[")
        self.records = 0

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(("\n" if self.records == 0 else ",\n") + json.dumps(record))
        self.records += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.write("\n]\n")
            self._file.close()


class AsyncSink:
    """Runs `sink.write` in a worker thread behind a bounded queue (backpressure).

    Errors in the worker are raised by the next `write` or by `close`.
    """

    def __init__(self, sink: Any, maxsize: int = 8) -> None:
        self.sink = sink
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"sink:{type(sink).__name__}"
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self.sink.write(*item)
                except BaseException as exc:  # reported in the main thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, image: np.ndarray, name: str = "") -> None:
        self._raise()
        self._queue.put((image, name))

    def close(self) -> None:
        """Drain the queue, finalise the sink, re-raise a worker error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self._raise()
        finally:
            self.sink.close()
