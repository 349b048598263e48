"""The preview page in a real browser: headless Chromium opens it and its screenshot shows the
decoded frame (pixel colours where the image sits), not a broken-image icon; through a foreign
Host name (DNS rebinding, simulated with Chromium's resolver rules) the frame is never shown.

Skipped, saying why, where no Chromium is installed (Debian: `apt-get install chromium`;
`.ci/run` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.inference.serve import MJPEGServer

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=400,300",
    "--hide-scrollbars",
    "--timeout=3000",
]
LEFT, RIGHT = (255, 0, 255), (0, 200, 0)  # BGR: magenta left half, green right half


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        f"no Chromium on PATH (looked for {', '.join(BROWSERS)}); install Debian's `chromium` "
        "to run the real-browser test of the preview page"
    )


@pytest.fixture
def serving(serve_frames) -> MJPEGServer:
    """A preview server publishing a 320x240 two-colour frame every 10 ms."""
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, :160], frame[:, 160:] = LEFT, RIGHT
    return serve_frames(frame)


def screenshot(browser: str, url: str, tmp_path: Path, *extra: str) -> np.ndarray:
    shot = tmp_path / "shot.png"
    command = [
        browser,
        *FLAGS,
        *extra,
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (300, 400, 3)
    return image


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(colour)).max() <= tolerance)


def test_page_shows_the_decoded_stream_in_chromium(serving: MJPEGServer, tmp_path: Path) -> None:
    browser = find_browser()
    url = f"http://localhost:{serving.port}/"  # the Host a local user's browser sends
    image = screenshot(browser, url, tmp_path)
    # The 320x240 image is centred at the top of a 400 px wide page: x 40..360, y 0..240.
    left, right = image[20:220, 50:190], image[20:220, 210:350]
    assert near(np.median(left.reshape(-1, 3), axis=0), LEFT), np.median(
        left.reshape(-1, 3), axis=0
    )
    assert near(np.median(right.reshape(-1, 3), axis=0), RIGHT), np.median(
        right.reshape(-1, 3), axis=0
    )
    assert (
        np.abs(left.astype(int) - LEFT).max(axis=2) <= 24
    ).mean() > 0.98  # the whole region, not a dot
    below = image[260:295, 10:390]
    assert near(np.median(below.reshape(-1, 3), axis=0), (17, 17, 17))  # the page background (#111)


def test_rebinding_host_never_shows_the_frame(serving: MJPEGServer, tmp_path: Path) -> None:
    browser = find_browser()
    # evil.example resolves to 127.0.0.1 for this browser only, as a rebinding attack arranges.
    image = screenshot(
        browser,
        f"http://evil.example:{serving.port}/",
        tmp_path,
        "--host-resolver-rules=MAP evil.example 127.0.0.1",
    )
    pixels = image.reshape(-1, 3).astype(int)
    for colour in (LEFT, RIGHT):
        assert (np.abs(pixels - colour).max(axis=1) <= 24).mean() < 0.001  # no frame pixels at all
