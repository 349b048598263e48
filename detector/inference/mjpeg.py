"""A small MJPEG-over-HTTP client: multipart/x-mixed-replace parts -> JPEG bytes.

    stream = open_mjpeg("http://127.0.0.1:8080/stream", timeout=5.0)
    for jpeg_bytes in stream.parts(): image = cv2.imdecode(...)

Pure Python (http.client via urllib) with a socket timeout on every read, so a
stalled server raises `TimeoutError` after `timeout` seconds instead of hanging
as OpenCV's FFmpeg backend can. Parts with a Content-Length are read in one go;
parts without one are read up to the next boundary line.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPResponse


class MJPEGError(OSError):
    """The URL does not answer, or does not serve multipart MJPEG."""


class MJPEGStream:
    """An open multipart response. Use `parts()` to iterate JPEG payloads."""

    def __init__(self, response: HTTPResponse, boundary: bytes) -> None:
        self._response = response
        self._boundary = b"--" + boundary.lstrip(b"-")

    def close(self) -> None:
        self._response.close()

    def _readline(self) -> bytes:
        line = self._response.readline(65536)
        if not line:
            raise EOFError("stream ended")
        return line

    def parts(self) -> Iterator[bytes]:
        """Yield each part's payload; raises TimeoutError on a stall, EOFError at the end."""
        line = self._readline()
        while True:
            # Skip the preamble / the CRLF that ends the previous part.
            while not line.startswith(self._boundary):
                line = self._readline()
            if line.rstrip().endswith(b"--") and line.rstrip() != self._boundary:
                return  # closing boundary "--frame--"
            length = None
            while True:
                header = self._readline().strip()
                if not header:
                    break
                key, _, value = header.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length is not None:
                payload = self._response.read(length)
                if len(payload) < length:
                    raise EOFError("stream ended inside a part")
                line = self._readline()
            else:
                chunks = []
                line = self._readline()
                while not line.startswith(self._boundary):
                    chunks.append(line)
                    line = self._readline()
                payload = b"".join(chunks)
                payload = payload[:-2] if payload.endswith(b"\r\n") else payload
            yield payload


def open_mjpeg(url: str, timeout: float) -> MJPEGStream | None:
    """Connect to `url`; the stream when it serves multipart, None for other content types.

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
    return MJPEGStream(response, str(boundary).encode("latin-1"))
