"""Sinks (video, images, JSON) and the MJPEG preview server answering a real HTTP client."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.inference.serve import BOUNDARY, MJPEGServer
from detector.inference.sinks import AsyncSink, ImageSink, JsonSink, SinkError, VideoSink


def test_video_sink_writes_every_frame_at_fps_and_size(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.mp4"
    sink = AsyncSink(VideoSink(path, fps=12.0, size=(64, 48)), maxsize=2)
    for value in range(20):
        sink.write(np.full((48, 64, 3), value * 10, np.uint8))
    sink.write(np.zeros((100, 100, 3), np.uint8))  # another size is resized, not dropped
    sink.close()
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        64,
        48,
    )
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 21


def test_video_sink_without_frames_leaves_no_empty_file(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "empty.mp4", fps=30, size=(64, 48))
    sink.close()
    assert not (tmp_path / "empty.mp4").exists()


def test_video_sink_that_cannot_open_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="bad.mp4: cannot open a video writer"):
        VideoSink(tmp_path / "bad.mp4", fps=30, size=(0, 0))


def test_image_sink_keeps_names_and_disambiguates(tmp_path: Path) -> None:
    sink = ImageSink(tmp_path / "out")
    image = np.full((20, 30, 3), 200, np.uint8)
    sink.write(image, "x/photo é.png")
    sink.write(image, "y/photo é.png")
    sink.write(image, "z/frame.jpg")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "frame.jpg",
        "photo é.png",
        "photo é_1.png",
    ]
    decoded = cv2.imdecode(
        np.fromfile(str(tmp_path / "out" / "photo é.png"), np.uint8), cv2.IMREAD_COLOR
    )
    assert np.array_equal(decoded, image)  # png is lossless


def test_json_sink_is_a_valid_array_with_one_record_each(tmp_path: Path) -> None:
    path = tmp_path / "dets.json"
    sink = JsonSink(path)
    sink.close()
    assert json.loads(path.read_text()) == []
    sink = JsonSink(path)
    for index in range(3):
        sink.write({"frame": index})
    sink.close()
    assert json.loads(path.read_text()) == [{"frame": 0}, {"frame": 1}, {"frame": 2}]


def test_async_sink_reraises_a_worker_error(tmp_path: Path) -> None:
    class Failing:
        def write(self, image: np.ndarray, name: str) -> None:
            raise SinkError("disk full")

        def close(self) -> None:
            pass

    sink = AsyncSink(Failing())
    sink.write(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(SinkError, match="disk full"):
        sink.close()


def read_parts(url: str, count: int) -> tuple[str, list[bytes]]:
    """Read `count` parts of an MJPEG response with a plain HTTP client."""
    with urllib.request.urlopen(url, timeout=5) as response:
        content_type = response.headers["Content-Type"]
        parts = []
        while len(parts) < count:
            line = response.readline()
            if line.strip() != f"--{BOUNDARY}".encode():
                continue
            headers = {}
            while line := response.readline().strip():
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            parts.append(response.read(int(headers["content-length"])))
    return content_type, parts


def test_server_answers_an_http_client_with_jpeg_frames() -> None:
    server = MJPEGServer(port=0).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        frames = [np.full((48, 64, 3), value, np.uint8) for value in (30, 120, 220)]
        stop = False

        def publish() -> None:
            index = 0
            while not stop:
                server.publish(frames[index % 3])
                index += 1
                time.sleep(0.01)

        import threading

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        content_type, parts = read_parts(server.url + "stream", 4)
        with urllib.request.urlopen(server.url + "frame.jpg", timeout=5) as response:
            snapshot = response.read()
        with urllib.request.urlopen(server.url, timeout=5) as response:
            page = response.read()
        stop = True
        publisher.join()
    finally:
        server.close()
    assert content_type == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    for part in parts + [snapshot]:
        assert part[:2] == b"\xff\xd8" and part[-2:] == b"\xff\xd9"  # JPEG SOI ... EOI
    decoded = cv2.imdecode(np.frombuffer(parts[0], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (48, 64, 3)
    assert min(abs(float(decoded.mean()) - v) for v in (30, 120, 220)) < 3
    assert b"/stream" in page
