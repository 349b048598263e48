"""A background reader thread and the hand-off between it and the inference loop.

    reader = ReaderThread(frame_iterator, live=False, maxsize=8, name="video.mp4")
    reader.start()
    for item in reader: ...      # items in order; the reader blocks when 8 are waiting
    reader.stop()

Two policies, chosen by `live`:

* files (`live=False`): a bounded FIFO. The reader blocks when it is full
  (backpressure), so every frame is processed, in order, with bounded memory.
* live sources (`live=True`): a single slot holding the newest item. A new
  frame replaces an unread one and the replaced one is counted in `dropped`,
  so a slow model never falls behind a camera (no lag builds up).

An exception raised by the iterator is re-raised in the consumer.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

_END = object()


class ReaderThread:
    """Runs `iterator` in a daemon thread and hands its items to the consumer.

    Args:
        iterator: yields items (frames); runs entirely in the reader thread.
        live: newest-only slot (True) or bounded FIFO with backpressure (False).
        maxsize: FIFO capacity for files.
        name: used in the thread name.
    """

    def __init__(
        self, iterator: Iterator[Any], *, live: bool, maxsize: int = 8, name: str = "source"
    ) -> None:
        self._iterator = iterator
        self.live = live
        self._maxsize = 1 if live else max(1, maxsize)
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._finished = False
        self._error: BaseException | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"reader:{name}", daemon=True)

    def start(self) -> ReaderThread:
        self._thread.start()
        return self

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _put(self, item: Any) -> bool:
        with self._cond:
            if self.live:
                if self._items:
                    self._items.clear()
                    self.dropped += 1
            else:
                while len(self._items) >= self._maxsize and not self._stopped:
                    self._cond.wait(0.1)
            if self._stopped:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def _run(self) -> None:
        try:
            for item in self._iterator:
                if not self._put(item):
                    break
        except BaseException as exc:  # handed to the consumer, which decides
            self._error = exc
        finally:
            close = getattr(self._iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # a generator already running elsewhere: nothing to do
                    pass
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The next item; raises StopIteration at the end, TimeoutError after `timeout` s."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._items or self._finished or self._stopped, timeout
            ):
                raise TimeoutError("no frame from the reader")
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopIteration

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    def stop(self, join_timeout: float = 2.0) -> None:
        """Ask the reader to end and wait briefly for it (it is a daemon either way)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(join_timeout)
