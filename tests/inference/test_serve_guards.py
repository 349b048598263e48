"""The preview server's guards: Host header check (DNS rebinding), client limit, socket timeouts."""

from __future__ import annotations

import http.client
import socket
import time

import numpy as np
import pytest

from detector.inference.serve import MJPEGServer, host_header_name, is_loopback

FRAME = np.full((48, 64, 3), 90, np.uint8)


def request(server: MJPEGServer, path: str, host: str | None) -> tuple[int, bytes]:
    """GET `path` with a chosen Host header (None: no Host header at all)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        host_line = "" if host is None else f"Host: {host}\r\n"
        sock.sendall(f"GET {path} HTTP/1.0\r\n{host_line}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


LOCAL_HOSTS = [
    "localhost",
    "localhost:8080",
    "127.0.0.1:8080",
    "127.5.6.7",
    "[::1]:80",
    "LOCALHOST",
    "app.localhost:1",
]
# What a page at evil.example sends after its name re-resolves to 127.0.0.1 (DNS rebinding).
FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8080",
    "127.0.0.1.nip.io",
    "192.168.1.5:8080",
    "localhost.evil.example",
    "[2001:db8::1]:80",
]


def test_local_host_names_are_answered_and_others_refused_on_loopback(serve_frames) -> None:
    server = serve_frames(FRAME)
    for host in LOCAL_HOSTS:
        status, body = request(server, "/frame.jpg", host)
        assert status == 200 and body[:2] == b"\xff\xd8", host
    for host in FOREIGN_HOSTS:
        for path in ("/", "/stream", "/frame.jpg"):
            assert request(server, path, host) == (
                403,
                b"this preview only answers requests for localhost",
            ), host


def test_a_server_bound_elsewhere_on_purpose_answers_any_host(serve_frames) -> None:
    server = serve_frames(FRAME, host="0.0.0.0")
    assert not server.check_host
    assert request(server, "/frame.jpg", "camera.lan:8080")[0] == 200
    assert request(server, "/", None)[0] == 200  # HTTP/1.0 without Host: not a browser


def test_host_helpers() -> None:
    assert [host_header_name(v) for v in ("a:80", "[::1]:8080", "[::1]", "a", "::1")] == [
        "a",
        "::1",
        "::1",
        "a",
        "::1",
    ]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert (
        not is_loopback("0.0.0.0")
        and not is_loopback("10.0.0.1")
        and not is_loopback("example.com")
    )


def open_stream(server: MJPEGServer) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/stream")
    return connection.getresponse()


def test_clients_beyond_the_bound_get_503_and_a_freed_slot_is_reused(serve_frames) -> None:
    server = serve_frames(FRAME, max_clients=2)
    first, second = open_stream(server), open_stream(server)
    assert first.status == second.status == 200
    assert request(server, "/frame.jpg", "localhost") == (503, b"too many clients")
    first.close()
    deadline = time.monotonic() + 5
    while (
        request(server, "/frame.jpg", "localhost")[0] != 200
    ):  # the slot frees when its handler ends
        assert time.monotonic() < deadline, "the closed client's slot was never released"
        time.sleep(0.05)
    second.close()


def test_an_idle_connection_is_dropped_after_the_timeout(serve_frames) -> None:
    server = serve_frames(FRAME, timeout=0.5, max_clients=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        idle.sendall(b"GET /frame.jpg HTTP/1.0\r\n")  # ...and never ends the request
        begin = time.monotonic()
        assert idle.recv(1024) == b""  # the server closed it
        assert time.monotonic() - begin < 3
    assert request(server, "/frame.jpg", "localhost")[0] == 200  # and its slot is free again


def test_a_viewer_that_stops_reading_the_stream_is_dropped(serve_frames) -> None:
    noisy = np.random.default_rng(0).integers(
        0, 255, (720, 1280, 3), dtype=np.uint8
    )  # ~2.5 MB as JPEG
    server = serve_frames(noisy, timeout=0.5, max_clients=1, quality=100)
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /stream HTTP/1.0\r\nHost: localhost\r\n\r\n")  # then never reads
        deadline = time.monotonic() + 10
        statuses = []
        while not statuses or statuses[-1] != 200:
            statuses.append(request(server, "/", "localhost")[0])
            assert statuses[-1] in (200, 503) and time.monotonic() < deadline, statuses
            time.sleep(0.1)
    # Held by the stalled viewer first (503), then its handler timed out on a write and gave the
    # slot back.
    assert statuses[0] == 503, statuses


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_clients"):
        MJPEGServer(0, max_clients=0)
