"""Sources: dispatch, fail-fast errors, order and backpressure for files, newest-only
for live sources, and an MJPEG stream that stalls and is reconnected."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.inference.frames import call_with_timeout
from detector.inference.reader import ReaderThread
from detector.inference.sources import ImageSource, SourceError, VideoSource, open_source
from detector.inference.streams import CaptureStreamSource, MJPEGSource


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_video_gives_every_frame_in_order(video_path: Path) -> None:
    with open_source(str(video_path), queue_size=2) as source:
        assert isinstance(source, VideoSource) and not source.live
        assert source.fps == pytest.approx(15.0) and source.size == (64, 48)
        frames = list(source)
    assert [f.index for f in frames] == list(range(30))
    # The square moves 1 px per frame: its left edge proves the order.
    edges = [int(np.argmax(f.image[18, :, 2] > 150)) for f in frames]
    assert edges == list(range(30))


def test_folder_and_glob_with_a_corrupt_image(tmp_path: Path) -> None:
    for name in ("a.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 50, np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(str(tmp_path)) as source:
        frames = list(source)
    assert isinstance(source, ImageSource)
    assert [Path(f.name).name for f in frames] == ["a.png", "b.jpg", "c.jpg"]
    assert frames[0].image.shape == (20, 30, 3) and frames[2].image is not None
    assert frames[1].image is None and "b.jpg" in frames[1].name and frames[1].error
    with open_source(str(tmp_path / "*.png")) as source:
        assert [Path(f.name).name for f in source] == ["a.png"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing/video.mp4", "missing/video.mp4: no such file"),
        ("99", "camera 99: no such camera"),
        ("nothing/*.jpg", "nothing/*.jpg: no images found"),
    ],
)
def test_bad_sources_fail_fast(spec: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(SourceError, match=message.replace("*", r"\*")):
        open_source(spec, timeout=2.0)
    assert time.perf_counter() - started < 3.0


def test_bad_url_fails_fast_naming_it() -> None:
    url = f"http://127.0.0.1:{closed_port()}/x.mjpg"
    started = time.perf_counter()
    with pytest.raises(SourceError, match=f"{url}: cannot connect"):
        open_source(url, timeout=2.0)
    assert time.perf_counter() - started < 3.0


def test_unknown_file_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\0")
    with pytest.raises(SourceError, match="data.bin: unknown file type '.bin'"):
        open_source(str(path))


def test_live_reader_keeps_only_the_newest_and_counts_drops() -> None:
    reader = ReaderThread(iter(range(200)), live=True, name="counter").start()
    time.sleep(0.2)  # the producer finishes while nobody reads
    items = list(reader)
    assert items == [199]
    assert reader.dropped == 199


def test_file_reader_applies_backpressure() -> None:
    produced: list[int] = []

    def numbers():
        for value in range(100):
            produced.append(value)
            yield value

    reader = ReaderThread(numbers(), live=False, maxsize=4).start()
    time.sleep(0.2)
    assert len(produced) <= 5  # 4 queued + 1 waiting to be put
    assert list(reader) == list(range(100)) and reader.dropped == 0


def test_reader_error_reaches_the_consumer() -> None:
    def failing():
        yield 1
        raise SourceError("camera 3: stopped delivering frames")

    reader = ReaderThread(failing(), live=False).start()
    assert reader.get(timeout=2) == 1
    with pytest.raises(SourceError, match="camera 3"):
        reader.get(timeout=2)


def jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", np.full((24, 32, 3), value, np.uint8))[1].tobytes()


class StallingMJPEG:
    """A local MJPEG server: the 1st connection sends 5 dark frames then stalls; later
    connections stream bright frames until the test ends."""

    def __init__(self) -> None:
        self.connections = 0
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.connections += 1
                first = owner.connections == 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=xyz")
                self.end_headers()
                try:
                    for count in range(5 if first else 1000):
                        part = jpeg(20 if first else 230)
                        # Alternate parts with and without Content-Length: both must parse.
                        header = f"Content-Length: {len(part)}\r\n" if count % 2 else ""
                        self.wfile.write(
                            f"--xyz\r\nContent-Type: image/jpeg\r\n{header}\r\n".encode()
                            + part
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        if owner.release.wait(0.02):
                            return
                    if first:
                        owner.release.wait(10)  # stall: headers sent, no more data
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_stalled_mjpeg_stream_times_out_reconnects_and_continues() -> None:
    server = StallingMJPEG()
    events: list[str] = []
    try:
        source = open_source(server.url, timeout=0.5, backoff=0.05, log=events.append)
        assert isinstance(source, MJPEGSource) and source.live
        levels = []
        started = time.perf_counter()
        for frame in source:
            levels.append(int(frame.image.mean()))
            if levels[-1] > 200 and len([v for v in levels if v > 200]) >= 3:
                break
            assert time.perf_counter() - started < 10, f"no frames after the stall: {events}"
        source.close()
    finally:
        server.close()
    assert levels[0] < 50 and levels[-1] > 200  # frames before and after the stall
    assert any("stalled" in e and "reconnecting" in e for e in events), events
    assert any("reconnected" in e for e in events) and source.reconnects >= 1
    assert server.connections >= 2


def test_capture_source_reports_a_missing_camera_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(SourceError, match="camera 99"):
        CaptureStreamSource(99, open_timeout=2.0, read_timeout=2.0)
    assert time.perf_counter() - started < 3.0


def test_source_modules_import_one_way() -> None:
    # frames <- streams <- sources: the shared base knows neither, streams does not need sources.
    probe = (
        "import sys, detector.inference.streams as streams; "
        "print('detector.inference.sources' in sys.modules, streams.Frame.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "detector.inference.frames"]


def test_open_watchdog_names_what_did_not_answer() -> None:
    assert call_with_timeout(lambda: 7, 1.0, "camera 0") == 7
    with pytest.raises(SourceError, match=r"camera 3: no answer within 0 s"):
        call_with_timeout(lambda: time.sleep(1.0), 0.05, "camera 3")
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, 1.0, "camera 4")
