"""Frame sources: images, folders, globs, video files, cameras and network streams.

    with open_source("video.mp4") as source:        # or "img.jpg", "dir/", "*.png", "0",
        for frame in source:                          #    "rtsp://...", "http://host/stream.mjpg"
            frame.image                               # BGR uint8 [H, W, 3] (None if unreadable)

Every source reads in its own thread (`reader.ReaderThread`). Files give every
frame in order with backpressure; live sources (cameras, streams) keep only the
newest frame and count the dropped ones. Opening checks the source at once and
raises `SourceError` naming it: a missing path, a camera that does not exist, a
URL that does not answer. A network stream that stalls is detected by a read
timeout and reopened with exponential backoff; each event goes to `log`.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.inference.mjpeg import MJPEGError, open_mjpeg
from detector.inference.reader import ReaderThread

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """A source that cannot be opened or that failed for good; the message names it."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Frame:
    """One item from a source.

    Attributes:
        index: position in the source (0-based; counts frames read, dropped included).
        image: BGR uint8 [H, W, 3], or None when `error` is set.
        name: file path for image sources, else the source name.
        timestamp: `time.perf_counter()` when the frame was read.
        error: why the image could not be read (images only).
    """

    index: int
    image: np.ndarray | None
    name: str
    timestamp: float
    error: str | None = None


def _call_with_timeout(function: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run a call that may block (camera/FFmpeg open) with a watchdog; raise SourceError on timeout."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = function()
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="open-watchdog")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise SourceError(f"{what}: no answer within {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


class FrameSource:
    """Base: subclasses set name/live/fps/size and implement `_frames()` (runs in the reader thread)."""

    name: str = "source"
    live: bool = False
    fps: float | None = None
    size: tuple[int, int] | None = None  # (width, height)
    frame_count: int | None = None
    kind: str = "images"

    def __init__(self, log: Callable[[str], None] | None = None, queue_size: int = 8) -> None:
        self.log = log or _stderr
        self._stop = threading.Event()
        self._queue_size = queue_size
        self._reader: ReaderThread | None = None

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def dropped(self) -> int:
        """Frames a live source replaced before the consumer took them."""
        return self._reader.dropped if self._reader else 0

    def __iter__(self) -> Iterator[Frame]:
        if self._reader is None:
            self._reader = ReaderThread(self._frames(), live=self.live, maxsize=self._queue_size, name=self.name).start()
        return iter(self._reader)

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.stop()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageSource(FrameSource):
    """A list of image files, decoded in the reader thread; unreadable files become error frames."""

    kind = "images"

    def __init__(self, paths: list[str], name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not paths:
            raise SourceError(f"{name}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        self.paths = paths
        self.name = name
        self.frame_count = len(paths)

    def _frames(self) -> Iterator[Frame]:
        from detector.data.images import read_image_rgb

        for index, path in enumerate(self.paths):
            if self._stop.is_set():
                return
            try:
                image = cv2.cvtColor(read_image_rgb(path), cv2.COLOR_RGB2BGR)
                yield Frame(index, image, path, time.perf_counter())
            except (ValueError, OSError) as exc:
                yield Frame(index, None, path, time.perf_counter(), error=str(exc))


class VideoSource(FrameSource):
    """A video file: every frame, in order."""

    kind = "video"

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = path
        self._capture = cv2.VideoCapture(path)
        if not self._capture.isOpened():
            raise SourceError(f"{path}: cannot open as a video (unsupported or corrupt file)")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and np.isfinite(fps) and fps > 0 else 30.0
        self.size = (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def _frames(self) -> Iterator[Frame]:
        index = 0
        try:
            while not self._stop.is_set():
                ok, image = self._capture.read()
                if not ok:
                    return
                yield Frame(index, image, self.name, time.perf_counter())
                index += 1
        finally:
            self._capture.release()


class CaptureStreamSource(FrameSource):
    """A live OpenCV capture: a camera index or an FFmpeg URL (rtsp, rtmp, http video).

    Opening is guarded by a watchdog (`open_timeout`); FFmpeg reads use
    CAP_PROP_READ_TIMEOUT_MSEC. A failed read on a URL reconnects with backoff.
    """

    live = True

    def __init__(self, target: int | str, *, open_timeout: float = 5.0, read_timeout: float = 5.0,
                 max_reconnects: int = 5, backoff: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.kind = "camera" if isinstance(target, int) else "stream"
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.max_reconnects, self.backoff = max_reconnects, backoff
        self._capture, first = self._open()
        self.size = (first.shape[1], first.shape[0])
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and np.isfinite(fps) and 0 < fps <= 240 else 30.0
        self._first: np.ndarray | None = first

    def _open(self) -> tuple[cv2.VideoCapture, np.ndarray]:
        def open_and_read() -> tuple[cv2.VideoCapture, np.ndarray]:
            if isinstance(self.target, int):
                capture = cv2.VideoCapture(self.target)
            else:
                ms = int(self.open_timeout * 1000), int(self.read_timeout * 1000)
                capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms[0], cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms[1]])
            if not capture.isOpened():
                what = "no such camera" if isinstance(self.target, int) else "cannot open the stream"
                raise SourceError(f"{self.name}: {what}")
            ok, image = capture.read()
            if not ok:
                capture.release()
                raise SourceError(f"{self.name}: opened but delivered no frame")
            return capture, image

        # The watchdog covers backends that ignore the timeouts (and slow camera drivers).
        return _call_with_timeout(open_and_read, self.open_timeout + self.read_timeout, self.name)

    def _frames(self) -> Iterator[Frame]:
        index, attempt = 0, 0
        try:
            while not self._stop.is_set():
                if self._first is not None:
                    ok, image, self._first = True, self._first, None
                else:
                    ok, image = self._capture.read()
                if ok:
                    attempt = 0
                    yield Frame(index, image, self.name, time.perf_counter())
                    index += 1
                    continue
                if self.kind == "camera" or attempt >= self.max_reconnects:
                    raise SourceError(f"{self.name}: stopped delivering frames" + (
                        f" after {attempt} reconnect attempts" if attempt else ""))
                delay = self.backoff * 2 ** attempt
                attempt += 1
                self.log(f"{self.name}: read failed or timed out; reconnecting in {delay:.1f} s "
                         f"(attempt {attempt}/{self.max_reconnects})")
                if self._stop.wait(delay):
                    return
                self._capture.release()
                try:
                    self._capture, self._first = self._open()
                except SourceError as exc:
                    self.log(str(exc))
        finally:
            self._capture.release()


class MJPEGSource(FrameSource):
    """MJPEG over HTTP read with the pure-Python client: a stall raises after `read_timeout`
    and the stream is reopened with exponential backoff (`backoff`, 2x each try)."""

    live = True
    kind = "stream"

    def __init__(self, url: str, stream: Any, *, read_timeout: float = 5.0, max_reconnects: int = 5,
                 backoff: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = url
        self.read_timeout, self.max_reconnects, self.backoff = read_timeout, max_reconnects, backoff
        self.fps = None  # unknown: the server pushes at its own pace
        self.reconnects = 0
        self._stream = stream

    def _frames(self) -> Iterator[Frame]:
        index, attempt = 0, 0
        while not self._stop.is_set():
            reason = "stream ended"
            try:
                if self._stream is None:
                    self._stream = open_mjpeg(self.name, self.read_timeout)
                    if self._stream is None:
                        raise MJPEGError(f"{self.name}: no longer serves multipart MJPEG")
                    self.reconnects += 1
                    self.log(f"{self.name}: reconnected")
                for payload in self._stream.parts():
                    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
                    if image is None:
                        self.log(f"{self.name}: skipped a part that is not a decodable JPEG ({len(payload)} bytes)")
                        continue
                    attempt = 0
                    if self.size is None:
                        self.size = (image.shape[1], image.shape[0])
                    yield Frame(index, image, self.name, time.perf_counter())
                    index += 1
                    if self._stop.is_set():
                        return
            except TimeoutError:
                reason = f"no data for {self.read_timeout:g} s (stalled)"
            except (OSError, EOFError, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                if self._stream is not None:
                    self._stream.close()
                    self._stream = None
            if self._stop.is_set():
                return
            if attempt >= self.max_reconnects:
                raise SourceError(f"{self.name}: {reason}; gave up after {attempt} reconnect attempts")
            delay = self.backoff * 2 ** attempt
            attempt += 1
            self.log(f"{self.name}: {reason}; reconnecting in {delay:.1f} s (attempt {attempt}/{self.max_reconnects})")
            if self._stop.wait(delay):
                return


def _camera_index(spec: str) -> int | None:
    return int(spec) if spec.isdigit() else None


def open_source(spec: str, *, log: Callable[[str], None] | None = None, timeout: float = 5.0,
                max_reconnects: int = 5, backoff: float = 0.5, queue_size: int = 8) -> FrameSource:
    """Open SOURCE as given on the command line; fail fast with a SourceError naming it.

    Args:
        spec: image file, folder, glob pattern, video file, camera index ("0") or URL.
        log: receives stream events (stalls, reconnects); default prints to stderr.
        timeout: seconds to open a camera/stream and to wait for stream data.
        max_reconnects: reconnect attempts for a stalled stream before giving up.
        backoff: first reconnect delay in seconds (doubled at each attempt).
        queue_size: frames buffered ahead for file sources.

    Returns:
        An unopened-iterator FrameSource (iterate it to start reading).
    """
    common = {"log": log, "queue_size": queue_size}
    index = _camera_index(spec)
    if index is not None:
        return CaptureStreamSource(index, open_timeout=timeout, read_timeout=timeout, **common)
    if spec.lower().startswith(STREAM_SCHEMES):
        if spec.lower().startswith(("http://", "https://")):
            try:
                stream = open_mjpeg(spec, timeout)
            except MJPEGError as exc:
                raise SourceError(str(exc)) from None
            if stream is not None:
                return MJPEGSource(spec, stream, read_timeout=timeout, max_reconnects=max_reconnects,
                                   backoff=backoff, **common)
            # Not multipart (an .mp4 or HLS over HTTP): FFmpeg reads it.
        return CaptureStreamSource(spec, open_timeout=timeout, read_timeout=timeout,
                                   max_reconnects=max_reconnects, backoff=backoff, **common)
    path = Path(spec)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return ImageSource(files, name=spec, **common)
    if glob.has_magic(spec):
        files = sorted(p for p in glob.glob(spec, recursive=True)
                       if os.path.isfile(p) and Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        return ImageSource(files, name=spec, **common)
    if not path.exists():
        raise SourceError(f"{spec}: no such file, folder, camera index or URL")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource([spec], name=spec, **common)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoSource(spec, **common)
    raise SourceError(f"{spec}: unknown file type {path.suffix!r} (images: {', '.join(sorted(IMAGE_EXTENSIONS))}; "
                      f"videos: {', '.join(sorted(VIDEO_EXTENSIONS))})")
