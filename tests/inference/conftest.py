"""Fixtures for inference tests: a tiny random-weight checkpoint and a short video.

The checkpoint is a resnet18 at 64 px with random weights: enough to exercise
every stage of the pipeline (boxes are meaningless but deterministic).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.inference.synthetic import random_checkpoint, write_synthetic_video

NAMES = ("circle", "square", "triangle")


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # see single_thread_torch; session fixtures run before it
    try:
        return random_checkpoint(
            tmp_path_factory.mktemp("ckpt") / "tiny.pt", image_size=64, names=NAMES
        )
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def video_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames, 64x48, 15 fps; frame i has the square's left edge at x = i."""
    return write_synthetic_video(
        tmp_path_factory.mktemp("video") / "clip.mp4", frames=30, size=(64, 48), fps=15.0
    )


@pytest.fixture(autouse=True)
def _single_thread(single_thread_torch) -> None:
    """Every test in this folder runs with one torch thread (tests/conftest.py)."""


@pytest.fixture
def serve_frames() -> Iterator[Callable[..., Any]]:
    """Factory: `serve_frames(frame, **MJPEGServer options)` starts a preview server that
    has `frame` at once and gets it again every 10 ms; every server is closed at the end."""
    from detector.inference.serve import MJPEGServer

    servers: list[tuple[Any, np.ndarray]] = []
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.01):
            for server, frame in list(servers):
                server.publish(frame)

    def start(frame: np.ndarray, **options: Any) -> MJPEGServer:
        server = MJPEGServer(0, **options).start()
        server.publish(frame)
        servers.append((server, frame))
        return server

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield start
    stop.set()
    thread.join()
    for server, _ in servers:
        server.close()
