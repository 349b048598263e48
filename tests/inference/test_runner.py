"""The detection loop with a fake fast predictor: flat memory over 10k frames,
Ctrl-C finalising the video and JSON, live status line, failed images reported."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import cv2
import numpy as np

from detector.inference.predictor import Detections
from detector.inference.runner import StatusLine, run_detection
from detector.inference.sources import open_source
from detector.inference.synthetic import write_synthetic_video as write_video


class FakePredictor:
    """One fixed box per frame; optional hook called with the number of frames seen."""

    def __init__(self, hook=None) -> None:
        self.calls = 0
        self.hook = hook

    def predict_frames(self, images: list[np.ndarray], color: str = "bgr") -> list[Detections]:
        results = []
        for image in images:
            self.calls += 1
            if self.hook is not None:
                self.hook(self.calls)
            height, width = image.shape[:2]
            results.append(
                Detections(
                    boxes=np.array([[2, 2, width / 2, height / 2]], np.float32),
                    scores=np.array([0.9], np.float32),
                    labels=np.array([1]),
                    label_names=["square"],
                    width=width,
                    height=height,
                )
            )
        return results


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_flat_over_10000_frames(tmp_path: Path) -> None:
    video = write_video(tmp_path / "long.mp4", frames=10_000, size=(64, 48), fps=30.0)
    samples: dict[int, int] = {}

    def hook(calls: int) -> None:
        if calls in (1000, 10_000):
            samples[calls] = rss_bytes()

    with open_source(str(video)) as source:
        summary = run_detection(
            FakePredictor(hook),
            source,
            out_dir=tmp_path / "out",
            json_path=tmp_path / "dets.json",
            batch_size=4,
        )
    assert summary.frames == 10_000 and not summary.interrupted
    growth = samples[10_000] - samples[1000]
    assert growth < 50 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over 9000 frames"
    assert len(json.loads((tmp_path / "dets.json").read_text())) == 10_000
    written = cv2.VideoCapture(str(tmp_path / "out" / "long.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 10_000
    written.release()


def test_ctrl_c_finalises_the_video_and_json(tmp_path: Path, video_path: Path) -> None:
    def interrupt(calls: int) -> None:
        if calls == 11:
            raise KeyboardInterrupt

    with open_source(str(video_path)) as source:
        summary = run_detection(
            FakePredictor(interrupt),
            source,
            out_dir=tmp_path / "out",
            json_path=tmp_path / "dets.json",
        )
    assert summary.interrupted and summary.frames == 10
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 10
    assert [r["frame"] for r in json.loads((tmp_path / "dets.json").read_text())] == list(range(10))


def test_status_line_reports_fps_and_latency(video_path: Path) -> None:
    stream = io.StringIO()
    with open_source(str(video_path)) as source:
        run_detection(FakePredictor(), source, status=StatusLine(stream, interval=0.0))
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 20
    assert "frame 30/30" in lines[-1] and "FPS" in lines[-1] and "ms/frame" in lines[-1]


def test_unreadable_images_are_reported_and_recorded(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "good.png"), np.full((20, 30, 3), 50, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"")
    messages: list[str] = []
    with open_source(str(tmp_path)) as source:
        summary = run_detection(
            FakePredictor(),
            source,
            out_dir=tmp_path / "out",
            json_path=tmp_path / "dets.json",
            log=messages.append,
        )
    assert summary.frames == 1 and [Path(p).name for p, _ in summary.failed] == ["broken.jpg"]
    assert any("broken.jpg" in m and "empty" in m for m in messages), messages
    records = json.loads((tmp_path / "dets.json").read_text())
    assert {Path(r["path"]).name for r in records} == {"good.png", "broken.jpg"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


def test_served_stream_reaches_an_http_client_during_a_run(video_path: Path) -> None:
    import threading
    import time
    import urllib.request

    from detector.inference.serve import BOUNDARY, MJPEGServer

    server = MJPEGServer(port=0).start()
    received: list[bytes] = []

    def client() -> None:
        with urllib.request.urlopen(server.url + "stream", timeout=5) as response:
            assert (
                response.headers["Content-Type"]
                == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            )
            while len(received) < 3:
                if response.readline().strip() == f"--{BOUNDARY}".encode():
                    headers = dict(
                        line.decode().split(": ", 1)
                        for line in iter(lambda: response.readline().strip(), b"")
                    )
                    received.append(response.read(int(headers["Content-Length"])))

    viewer = threading.Thread(target=client, daemon=True)
    viewer.start()
    time.sleep(0.2)  # let the viewer connect before frames flow
    slow = FakePredictor(hook=lambda calls: time.sleep(0.03))
    try:
        with open_source(str(video_path)) as source:
            run_detection(slow, source, server=server)
        viewer.join(5)
    finally:
        server.close()
    assert len(received) == 3
    for jpeg in received:
        assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    frame = cv2.imdecode(np.frombuffer(received[-1], np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (48, 64, 3)
    # The fake box (drawn in the class colour) is on the served frames.
    assert np.abs(frame.astype(int) - 90).max() > 100
