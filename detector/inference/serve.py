"""Headless preview: the annotated stream as MJPEG over HTTP on localhost.

    server = MJPEGServer(port=8080).start()   # open http://127.0.0.1:8080/ in a browser
    server.publish(frame_bgr)                  # called per annotated frame; never blocks
    server.close()

`detector detect ... --serve 8080` does this. Only the newest frame is kept; it is
JPEG-encoded at most once, and only when a client is watching, so an unwatched
server costs next to nothing. Paths: `/` (a page with the stream), `/stream`
(multipart/x-mixed-replace; boundary=frame) and `/frame.jpg` (the newest frame).

Safety, stated once:

- Binding is to 127.0.0.1 unless `host` says otherwise (`detect --host`); reach a
  loopback server from elsewhere with `ssh -L 8080:127.0.0.1:8080 host`.
- On a loopback address only requests whose `Host` header names the machine
  itself (localhost, *.localhost, 127.x.x.x, [::1]; any port) are answered, others
  get 403. A web page elsewhere cannot then read the stream through DNS
  rebinding (a name of theirs that resolves to 127.0.0.1). Bound to another
  address on purpose, every Host is answered.
- At most `max_clients` connections are served at once (default 8); more get
  503 and are closed, so viewers cannot exhaust threads.
- Every socket has a `timeout` (default 10 s) for reads and writes: a client that
  sends nothing, or stops reading the stream, is dropped.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

BOUNDARY = "frame"
_PAGE = (
    b"<!doctype html><title>detector</title><body style='margin:0;background:#111'>"
    b"<img src='/stream' style='max-width:100%;display:block;margin:auto'></body>"
)
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for a loopback bind address or name (127.0.0.0/8, ::1, localhost)."""
    name = host.strip("[]").lower()
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_header_name(value: str) -> str:
    """The host part of a `Host` header value: `[::1]:8080` -> `::1`, `a:80` -> `a`."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most `max_clients` connections at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, *, max_clients: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(max_clients)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)  # starts the handler thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # ThreadingMixIn's body, with the slot given back before the socket closes: a client
        # that sees its connection end may reconnect at once and must find the slot free.
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._slots.release()
            self.shutdown_request(request)

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 without a handler thread, then close."""
        try:
            request.settimeout(1.0)
            body = b"too many clients"
            request.sendall(
                b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


class MJPEGServer:
    """Publishes frames to HTTP clients, newest frame only.

    Args:
        port: TCP port; 0 picks a free one (see `.port`).
        host: interface; 127.0.0.1 by default. On a loopback address only local
            `Host` headers are answered (see the module docstring).
        quality: JPEG quality 1..100.
        max_clients: connections served at once; more get 503.
        timeout: seconds a socket may wait on a read or a write before it is dropped.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        quality: int = 80,
        *,
        max_clients: int = 8,
        timeout: float = 10.0,
    ) -> None:
        if max_clients < 1 or timeout <= 0:
            raise ValueError(
                f"max_clients must be >= 1 and timeout > 0, got {max_clients}, {timeout}"
            )
        self.quality = quality
        self.check_host = is_loopback(host)
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._sequence = 0
        self._encoded: tuple[int, bytes] = (-1, b"")
        self._closed = False
        server, socket_timeout = self, timeout

        class Handler(BaseHTTPRequestHandler):
            timeout = socket_timeout  # StreamRequestHandler sets it on the connection's socket

            def log_message(self, *args: object) -> None:  # keep the status line clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                host_value = self.headers.get("Host")
                if (
                    server.check_host
                    and host_value is not None
                    and not is_loopback(host_header_name(host_value))
                ):
                    self._send(
                        403, "text/plain", b"this preview only answers requests for localhost"
                    )
                elif self.path in ("/", "/index.html"):
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
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode("ascii")
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                except OSError:  # the viewer went away, or stopped reading (socket timeout)
                    self.close_connection = True

        self._httpd = _BoundedHTTPServer((host, port), Handler, max_clients=max_clients)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name="mjpeg-server"
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def url(self) -> str:
        address = str(self._httpd.server_address[0])
        return f"http://{f'[{address}]' if ':' in address else address}:{self.port}/"

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
