"""Headless preview: the annotated stream as MJPEG over HTTP on localhost.

    server = MJPEGServer(port=8080).start()   # open http://127.0.0.1:8080/ in a browser
    server.publish(frame_bgr)                  # called per annotated frame; never blocks
    server.close()

`detector detect ... --serve 8080` does this. Only the newest frame is kept; it is
JPEG-encoded at most once, and only when a client is watching, so an unwatched
server costs next to nothing. Paths: `/` (a page with the stream), `/stream`
(multipart/x-mixed-replace; boundary=frame) and `/frame.jpg` (the newest frame).
Binding is to 127.0.0.1: reach it from elsewhere with `ssh -L 8080:127.0.0.1:8080 host`.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "frame"
_PAGE = b"<!doctype html><title>detector</title><body style='margin:0;background:#111'>" \
        b"<img src='/stream' style='max-width:100%;display:block;margin:auto'></body>"


class MJPEGServer:
    """Publishes frames to any number of HTTP clients, newest frame only.

    Args:
        port: TCP port; 0 picks a free one (see `.port`).
        host: interface; localhost by default.
        quality: JPEG quality 1..100.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80) -> None:
        self.quality = quality
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._sequence = 0
        self._encoded: tuple[int, bytes] = (-1, b"")
        self._closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the status line clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path in ("/", "/index.html"):
                    self._send(200, "text/html", _PAGE)
                elif self.path.startswith("/frame.jpg"):
                    sequence, jpeg = server.wait_jpeg(-1, timeout=5.0)
                    if sequence < 0:
                        self._send(503, "text/plain", b"no frame yet")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif self.path.startswith("/stream"):
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                last = -1
                try:
                    while not server.closed:
                        sequence, jpeg = server.wait_jpeg(last, timeout=1.0)
                        if sequence == last or sequence < 0:
                            continue
                        last = sequence
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode("ascii") + jpeg + b"\r\n"
                        )
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer went away

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="mjpeg-server")

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/"

    def start(self) -> MJPEGServer:
        self._thread.start()
        return self

    def publish(self, image: np.ndarray) -> None:
        """Offer a BGR frame to viewers (kept by reference: do not modify it afterwards)."""
        with self._cond:
            self._frame = image
            self._sequence += 1
            self._cond.notify_all()

    def wait_jpeg(self, after: int, timeout: float) -> tuple[int, bytes]:
        """The newest frame as JPEG once its sequence number exceeds `after` (or on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self._sequence > after or self._closed, timeout)
            sequence, frame = self._sequence, self._frame
            if frame is None:
                return -1, b""
            if self._encoded[0] == sequence:
                return self._encoded
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return -1, b""
        with self._cond:
            if sequence > self._encoded[0]:
                self._encoded = (sequence, encoded.tobytes())
            return sequence, encoded.tobytes()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self._httpd.shutdown()
        self._httpd.server_close()
