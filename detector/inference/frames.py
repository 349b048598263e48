"""What every frame source shares: `Frame`, the `FrameSource` base, `SourceError`, an open watchdog.

    class MySource(FrameSource):
        def _frames(self):
            yield Frame(index=0, image=bgr, name="mine", timestamp=time.perf_counter())

File sources (detector/inference/sources.py) and live sources
(detector/inference/streams.py) both build on this module, and `sources.open_source`
picks among them: the imports go one way, frames <- streams <- sources.
"""

from __future__ import annotations

import abc
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.inference.reader import ReaderThread


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


def call_with_timeout(function: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run a call that may block (camera/FFmpeg open) under a watchdog; SourceError on timeout."""
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


class FrameSource(abc.ABC):
    """Base: subclasses set name/live/fps/size and implement `_frames()` (reader thread)."""

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

    @abc.abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """Yield the source's frames in order (runs in the reader thread)."""

    @property
    def dropped(self) -> int:
        """Frames a live source replaced before the consumer took them."""
        return self._reader.dropped if self._reader else 0

    def __iter__(self) -> Iterator[Frame]:
        if self._reader is None:
            self._reader = ReaderThread(
                self._frames(), live=self.live, maxsize=self._queue_size, name=self.name
            ).start()
        return iter(self._reader)

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.stop()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
