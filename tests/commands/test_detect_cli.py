"""`detector detect` end to end through click's CliRunner: a video keeps its frame
count, size and fps; JSON has one record per frame; a corrupt image in a folder is
reported and the rest processed; bad sources and --show fail fast and clearly."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from detector.cli import main
from detector.inference.synthetic import random_checkpoint, synthetic_frame, write_synthetic_video

pytestmark = pytest.mark.usefixtures("single_thread_torch")  # tests/conftest.py


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before single_thread_torch
    try:
        return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", image_size=64)
    finally:
        torch.set_num_threads(previous)


def invoke(*args: str):
    return CliRunner().invoke(main, ["detect", *args], catch_exceptions=False)


def video_info(path: Path) -> tuple[int, int, int, float]:
    capture = cv2.VideoCapture(str(path))
    width, height = (
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = 0
    while capture.read()[0]:
        count += 1
    return count, width, height, fps


def test_video_keeps_frames_size_and_fps(checkpoint: Path, tmp_path: Path) -> None:
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=30, size=(96, 64), fps=12.0)
    result = invoke(
        str(checkpoint),
        str(video),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "out"),
        "--save-json",
        str(tmp_path / "dets.json"),
        "--batch",
        "4",
        "--conf",
        "0.3",
    )
    assert result.exit_code == 0, result.output
    output = tmp_path / "out" / "clip.mp4"
    assert output.stat().st_size > 0 and f"wrote {output}" in result.output
    assert video_info(output) == (30, 96, 64, pytest.approx(12.0))
    records = json.loads((tmp_path / "dets.json").read_text())
    assert [r["frame"] for r in records] == list(range(30))
    assert all(r["width"] == 96 and r["height"] == 64 for r in records)
    scores = [d["score"] for r in records for d in r["detections"]]
    assert scores and min(scores) >= 0.3
    # Annotated: boxes were drawn, so output frames differ from the input beyond codec noise.
    capture = cv2.VideoCapture(str(output))
    _, first = capture.read()
    assert np.abs(first.astype(int) - synthetic_frame(0, (96, 64)).astype(int)).max() > 100


def test_folder_with_a_corrupt_image(checkpoint: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "one.png"), synthetic_frame(1, (80, 60)))
    cv2.imwrite(str(images / "two.jpg"), synthetic_frame(2, (60, 80)))
    good = (images / "two.jpg").read_bytes()
    (images / "half.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    result = invoke(
        str(checkpoint),
        str(images),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "out"),
        "--save-json",
        str(tmp_path / "dets.json"),
        "--classes",
        "square,0",
    )
    assert result.exit_code == 0, result.output
    assert (
        "1 unreadable" in result.output
        and "half.jpg" in result.output
        and "truncated" in result.output
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.png", "two.jpg"]
    assert cv2.imread(str(tmp_path / "out" / "two.jpg")).shape == (80, 60, 3)
    records = {Path(r["path"]).name: r for r in json.loads((tmp_path / "dets.json").read_text())}
    assert (
        set(records) == {"one.png", "two.jpg", "half.jpg"}
        and "truncated" in records["half.jpg"]["error"]
    )
    assert {d["name"] for name in ("one.png", "two.jpg") for d in records[name]["detections"]} <= {
        "circle",
        "square",
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "source, message",
    [
        ("99", "camera 99: no such camera"),
        ("http://127.0.0.1:{port}/x.mjpg", "http://127.0.0.1:{port}/x.mjpg: cannot connect"),
        ("no/such/video.mp4", "no/such/video.mp4: no such file"),
    ],
)
def test_bad_sources_fail_fast_naming_the_source(
    checkpoint: Path, source: str, message: str
) -> None:
    port = closed_port()
    started = time.perf_counter()
    result = CliRunner().invoke(
        main,
        ["detect", str(checkpoint), source.format(port=port), "--device", "cpu", "--timeout", "2"],
    )
    assert time.perf_counter() - started < 10  # includes loading the model
    assert result.exit_code != 0 and message.format(port=port) in result.output


def test_show_without_gui_says_what_to_do(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def headless_named_window(*args: object) -> None:
        # What opencv-python-headless does; patched so the test holds with a GUI build too.
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ support")

    monkeypatch.setattr(cv2, "namedWindow", headless_named_window)
    result = CliRunner().invoke(main, ["detect", str(checkpoint), str(tmp_path), "--show"])
    assert result.exit_code != 0 and "headless" in result.output and "--serve" in result.output


def test_bad_checkpoint_and_options(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\0" * 10)
    result = CliRunner().invoke(main, ["detect", str(broken), str(tmp_path), "--device", "cpu"])
    assert result.exit_code != 0 and "broken.pt" in result.output and "corrupt" in result.output
    result = CliRunner().invoke(main, ["detect", str(broken), str(tmp_path), "--conf", "2"])
    assert result.exit_code == 2 and "--conf" in result.output


def test_serve_host_option(checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), synthetic_frame(1, (80, 60)))
    runner = CliRunner()
    alone = runner.invoke(main, ["detect", str(checkpoint), str(image), "--host", "0.0.0.0"])
    assert alone.exit_code == 2 and "--host is the address of --serve PORT" in alone.output
    default = runner.invoke(
        main, ["detect", str(checkpoint), str(image), "--device", "cpu", "--serve", "0"]
    )
    assert default.exit_code == 0, default.output
    assert "serving the annotated stream at http://127.0.0.1:" in default.output
    assert "not a loopback address" not in default.output
    everywhere = runner.invoke(
        main,
        [
            "detect",
            str(checkpoint),
            str(image),
            "--device",
            "cpu",
            "--serve",
            "0",
            "--host",
            "0.0.0.0",
        ],
    )
    assert everywhere.exit_code == 0, everywhere.output
    assert "serving the annotated stream at http://0.0.0.0:" in everywhere.output
    assert (
        "--host 0.0.0.0: not a loopback address; anyone who can reach it can watch"
        in everywhere.output
    )
    bad = runner.invoke(
        main,
        [
            "detect",
            str(checkpoint),
            str(image),
            "--device",
            "cpu",
            "--serve",
            "0",
            "--host",
            "203.0.113.9",
        ],
    )  # an address this machine does not have
    assert bad.exit_code == 1 and "--serve 0 --host 203.0.113.9: cannot listen" in bad.output
