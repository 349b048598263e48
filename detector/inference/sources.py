"""Frame sources: images, folders, globs, video files, cameras and network streams.

    with open_source("video.mp4") as source:        # or "img.jpg", "dir/", "*.png", "0",
        for frame in source:                          #    "rtsp://...", "http://host/stream.mjpg"
            frame.image                               # BGR uint8 [H, W, 3] (None if unreadable)

Every source reads in its own thread (`reader.ReaderThread`). The shared base
(`Frame`, `FrameSource`, `SourceError`) is in `frames.py`, live sources (cameras,
URLs) in `streams.py`; this module holds the file sources and `open_source`,
and imports both (never the other way). Files give every
frame in order with backpressure; live sources (cameras, streams) keep only the
newest frame and count the dropped ones. Opening checks the source at once and
raises `SourceError` naming it: a missing path, a camera that does not exist, a
URL that does not answer. A network stream that stalls is detected by a read
timeout and reopened with exponential backoff; each event goes to `log`.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.inference.frames import Frame, FrameSource, SourceError
from detector.inference.mjpeg import MJPEGError, open_mjpeg
from detector.inference.streams import CaptureStreamSource, MJPEGSource

__all__ = ["Frame", "FrameSource", "ImageSource", "SourceError", "VideoSource", "open_source"]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class ImageSource(FrameSource):
    """A list of image files, decoded in the reader thread; unreadable files become error frames."""

    kind = "images"

    def __init__(
        self, paths: list[str], name: str, max_pixels: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.max_pixels = max_pixels  # None: images.DEFAULT_MAX_IMAGE_PIXELS
        if not paths:
            raise SourceError(
                f"{name}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        self.paths = paths
        self.name = name
        self.frame_count = len(paths)

    def _frames(self) -> Iterator[Frame]:
        from detector.data.images import DEFAULT_MAX_IMAGE_PIXELS, read_image_rgb

        max_pixels = self.max_pixels or DEFAULT_MAX_IMAGE_PIXELS
        for index, path in enumerate(self.paths):
            if self._stop.is_set():
                return
            try:
                image = cv2.cvtColor(read_image_rgb(path, max_pixels=max_pixels), cv2.COLOR_RGB2BGR)
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
        self.size = (
            int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
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


def _camera_index(spec: str) -> int | None:
    return int(spec) if spec.isdigit() else None


def open_source(
    spec: str,
    *,
    log: Callable[[str], None] | None = None,
    timeout: float = 5.0,
    max_reconnects: int = 5,
    backoff: float = 0.5,
    queue_size: int = 8,
    max_image_pixels: int | None = None,
) -> FrameSource:
    """Open SOURCE as given on the command line; fail fast with a SourceError naming it.

    Args:
        spec: image file, folder, glob pattern, video file, camera index ("0") or URL.
        log: receives stream events (stalls, reconnects); default prints to stderr.
        timeout: seconds to open a camera/stream and to wait for stream data.
        max_reconnects: reconnect attempts for a stalled stream before giving up.
        backoff: first reconnect delay in seconds (doubled at each attempt).
        queue_size: frames buffered ahead for file sources.
        max_image_pixels: image files whose header claims more pixels become error
            frames (None: `detector.data.images.DEFAULT_MAX_IMAGE_PIXELS`).

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
                return MJPEGSource(
                    spec,
                    stream,
                    read_timeout=timeout,
                    max_reconnects=max_reconnects,
                    backoff=backoff,
                    **common,
                )
            # Not multipart (an .mp4 or HLS over HTTP): FFmpeg reads it.
        return CaptureStreamSource(
            spec,
            open_timeout=timeout,
            read_timeout=timeout,
            max_reconnects=max_reconnects,
            backoff=backoff,
            **common,
        )
    path = Path(spec)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return ImageSource(files, name=spec, max_pixels=max_image_pixels, **common)
    if glob.has_magic(spec):
        files = sorted(
            p
            for p in glob.glob(spec, recursive=True)
            if os.path.isfile(p) and Path(p).suffix.lower() in IMAGE_EXTENSIONS
        )
        return ImageSource(files, name=spec, max_pixels=max_image_pixels, **common)
    if not path.exists():
        raise SourceError(f"{spec}: no such file, folder, camera index or URL")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource([spec], name=spec, max_pixels=max_image_pixels, **common)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoSource(spec, **common)
    raise SourceError(
        f"{spec}: unknown file type {path.suffix!r} "
        f"(images: {', '.join(sorted(IMAGE_EXTENSIONS))}; "
        f"videos: {', '.join(sorted(VIDEO_EXTENSIONS))})"
    )
