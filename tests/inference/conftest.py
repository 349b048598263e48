"""Fixtures for inference tests: a tiny random-weight checkpoint and a short video.

The checkpoint is a resnet18 at 64 px with random weights: enough to exercise
every stage of the pipeline (boxes are meaningless but deterministic).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.inference.synthetic import random_checkpoint, write_synthetic_video

NAMES = ("circle", "square", "triangle")


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # see single_thread_torch; session fixtures run before it
    try:
        return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", image_size=64, names=NAMES)
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def video_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames, 64x48, 15 fps; frame i has the square's left edge at x = i."""
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=30, size=(64, 48), fps=15.0)


@pytest.fixture(autouse=True)
def single_thread_torch():
    """One intra-op thread while these tests run: on a loaded 2-core machine, 2 OpenMP
    threads spin against other processes and a 64 px forward takes ~30x longer."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
