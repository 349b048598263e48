"""A small MJPEG-over-HTTP client: multipart/x-mixed-replace parts -> JPEG bytes.

    stream = open_mjpeg("http://127.0.0.1:8080/stream", timeout=5.0)
    for jpeg_bytes in stream.parts(): image = cv2.imdecode(...)

Pure Python (http.client via urllib) with a socket timeout on every read, so a
stalled server raises `TimeoutError` after `timeout` seconds instead of hanging
as OpenCV's FFmpeg backend can. Parts with a Content-Length are read in one go;
parts without one are read up to the next boundary line.

Memory is bounded: a part may hold at most `max_part_bytes` (default 32 MiB, ten
times a 4K JPEG). A `Content-Length` above it, a part without one that reaches
it before the next boundary, more than 64 header lines, or that many bytes
without any boundary at all raise `MJPEGError` (an OSError), which the stream
source treats as a broken stream: it closes the connection and reconnects.
Nothing is read into memory beyond the bound.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPResponse

MAX_PART_BYTES = 32 * 1024 * 1024
MAX_HEADER_LINES = 64
LINE_BYTES = 65536  # longest line read at once; longer ones arrive in pieces


class MJPEGError(OSError):
    """The URL does not answer, does not serve multipart MJPEG, or breaks the part bounds."""


class MJPEGStream:
    """An open multipart response. Use `parts()` to iterate JPEG payloads."""

    def __init__(
        self, response: HTTPResponse, boundary: bytes, *, max_part_bytes: int = MAX_PART_BYTES
    ) -> None:
        self._response = response
        self._boundary = b"--" + boundary.lstrip(b"-")
        self.max_part_bytes = max_part_bytes

    def close(self) -> None:
        self._response.close()

    def _readline(self) -> bytes:
        line = self._response.readline(LINE_BYTES)
        if not line:
            raise EOFError("stream ended")
        return line

    def _too_large(self, what: str) -> MJPEGError:
        return MJPEGError(
            f"{what} (the limit is {self.max_part_bytes} bytes per part): "
            "treated as a broken stream"
        )

    def _content_length(self, value: bytes) -> int:
        text = value.strip().decode("latin-1")
        if not text.isdigit():
            raise MJPEGError(f"bad Content-Length {text[:40]!r}: treated as a broken stream")
        length = int(text)
        if length > self.max_part_bytes:
            raise self._too_large(f"a part announces Content-Length {length}")
        return length

    def _skip_to_boundary(self, line: bytes) -> bytes:
        """Read until a boundary line (the preamble, or the CRLF ending the previous part)."""
        skipped = 0
        while not line.startswith(self._boundary):
            skipped += len(line)
            if skipped > self.max_part_bytes:
                raise self._too_large(f"no boundary within {skipped} bytes")
            line = self._readline()
        return line

    def _headers(self) -> int | None:
        """Read a part's header lines; its Content-Length, or None."""
        length = None
        for _ in range(MAX_HEADER_LINES):
            header = self._readline().strip()
            if not header:
                return length
            key, _, value = header.partition(b":")
            if key.strip().lower() == b"content-length":
                length = self._content_length(value)
        raise MJPEGError(
            f"a part has more than {MAX_HEADER_LINES} header lines: treated as a broken stream"
        )

    def parts(self) -> Iterator[bytes]:
        """Yield each part's payload.

        Raises:
            TimeoutError: on a stall. EOFError: at the end of the stream.
            MJPEGError: a part over `max_part_bytes`, a bad Content-Length or too
                many header lines (a broken stream: reconnect).
        """
        line = self._readline()
        while True:
            line = self._skip_to_boundary(line)
            if line.rstrip().endswith(b"--") and line.rstrip() != self._boundary:
                return  # closing boundary "--frame--"
            length = self._headers()
            if length is not None:
                payload = self._response.read(length)
                if len(payload) < length:
                    raise EOFError("stream ended inside a part")
                line = self._readline()
            else:
                chunks, size = [], 0
                line = self._readline()
                while not line.startswith(self._boundary):
                    size += len(line)
                    if size > self.max_part_bytes + 2:  # + the CRLF before the boundary
                        raise self._too_large(
                            f"a part without Content-Length passed {self.max_part_bytes} bytes"
                        )
                    chunks.append(line)
                    line = self._readline()
                payload = b"".join(chunks)
                payload = payload[:-2] if payload.endswith(b"\r\n") else payload
            yield payload


def open_mjpeg(
    url: str, timeout: float, *, max_part_bytes: int = MAX_PART_BYTES
) -> MJPEGStream | None:
    """Connect to `url`; the stream when it serves multipart, None for other content types.

    `max_part_bytes` bounds each part (see the module docstring).

    Raises:
        MJPEGError: connection refused, DNS failure, HTTP error status or timeout,
            with the URL and the reason.
    """
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise MJPEGError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise MJPEGError(f"{url}: cannot connect ({exc.reason})") from None
    except (TimeoutError, OSError) as exc:
        raise MJPEGError(f"{url}: cannot connect ({exc or 'timed out'})") from None
    content_type = response.headers.get_content_type()
    boundary = response.headers.get_param("boundary")
    if content_type != "multipart/x-mixed-replace" or not boundary:
        response.close()
        return None
    return MJPEGStream(response, str(boundary).encode("latin-1"), max_part_bytes=max_part_bytes)
