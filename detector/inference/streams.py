"""Live sources: cameras and network streams, with stall detection and reconnects.

    source = open_source("rtsp://cam.local/stream")          # -> CaptureStreamSource
    source = open_source("http://127.0.0.1:8080/stream")     # multipart MJPEG -> MJPEGSource
    for frame in source: ...                                 # newest frame only; source.dropped

MJPEG over HTTP is read by the pure-Python client in `mjpeg.py` (a socket timeout
on every read); everything else (rtsp, rtmp, http video, cameras) by OpenCV's
capture with FFmpeg open/read timeouts plus a watchdog on opening. A stall or a
dropped connection is reported to `log` and the stream reopened with
exponential backoff (`backoff`, doubling, up to `max_reconnects` attempts).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from detector.inference.frames import Frame, FrameSource, SourceError, call_with_timeout
from detector.inference.mjpeg import MJPEGError, open_mjpeg


class CaptureStreamSource(FrameSource):
    """A live OpenCV capture: a camera index or an FFmpeg URL (rtsp, rtmp, http video).

    Opening is guarded by a watchdog (`open_timeout`); FFmpeg reads use
    CAP_PROP_READ_TIMEOUT_MSEC. A failed read on a URL reconnects with backoff.
    """

    live = True

    def __init__(
        self,
        target: int | str,
        *,
        open_timeout: float = 5.0,
        read_timeout: float = 5.0,
        max_reconnects: int = 5,
        backoff: float = 0.5,
        **kwargs: Any,
    ) -> None:
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
                capture = cv2.VideoCapture(
                    self.target,
                    cv2.CAP_FFMPEG,
                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms[0], cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms[1]],
                )
            if not capture.isOpened():
                what = (
                    "no such camera" if isinstance(self.target, int) else "cannot open the stream"
                )
                raise SourceError(f"{self.name}: {what}")
            ok, image = capture.read()
            if not ok:
                capture.release()
                raise SourceError(f"{self.name}: opened but delivered no frame")
            return capture, image

        # The watchdog covers backends that ignore the timeouts (and slow camera drivers).
        return call_with_timeout(open_and_read, self.open_timeout + self.read_timeout, self.name)

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
                    raise SourceError(
                        f"{self.name}: stopped delivering frames"
                        + (f" after {attempt} reconnect attempts" if attempt else "")
                    )
                delay = self.backoff * 2**attempt
                attempt += 1
                self.log(
                    f"{self.name}: read failed or timed out; reconnecting in {delay:.1f} s "
                    f"(attempt {attempt}/{self.max_reconnects})"
                )
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

    def __init__(
        self,
        url: str,
        stream: Any,
        *,
        read_timeout: float = 5.0,
        max_reconnects: int = 5,
        backoff: float = 0.5,
        **kwargs: Any,
    ) -> None:
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
                    try:
                        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
                    except (cv2.error, MemoryError):  # a header claiming a huge frame
                        image = None
                    if image is None:
                        self.log(
                            f"{self.name}: skipped a part that is not a decodable JPEG "
                            f"({len(payload)} bytes)"
                        )
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
                raise SourceError(
                    f"{self.name}: {reason}; gave up after {attempt} reconnect attempts"
                )
            delay = self.backoff * 2**attempt
            attempt += 1
            self.log(
                f"{self.name}: {reason}; reconnecting in {delay:.1f} s "
                f"(attempt {attempt}/{self.max_reconnects})"
            )
            if self._stop.wait(delay):
                return
