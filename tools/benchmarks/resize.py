"""`benchmark.py resize`: ms per image and aliasing of the resize candidates (issue 18 item 6).

    python tools/benchmark.py resize          # 1 thread, medians of interleaved repeats

Speed: ms per image for each candidate on a textured RGB image. Aliasing: the RMS
grey level left after resizing noise that only holds frequencies above the output's
Nyquist limit (a perfect low-pass gives 0; the input's RMS is 30). Passband: the
fraction of RMS kept of noise below 0.7x that limit (1: nothing blurred away).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import click
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from detector.data.letterbox import compute_letterbox, resize_image

Resize = Callable[[np.ndarray, int, int], np.ndarray]


def _torch_antialiased(image: np.ndarray, width: int, height: int) -> np.ndarray:
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    out = F.interpolate(
        pixels, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0].permute(1, 2, 0).numpy()


CANDIDATES: dict[str, Resize] = {
    "cv2 INTER_LINEAR": lambda im, w, h: cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR),
    "cv2 INTER_AREA": lambda im, w, h: cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA),
    "torch bilinear antialias": _torch_antialiased,
    "resize_image (chosen)": resize_image,
}


def _band_noise(height: int, width: int, low: float, high: float, seed: int) -> np.ndarray:
    """uint8 RGB noise with RMS 30 around 128 holding frequencies in [low, high] cycles/px."""
    rng = np.random.default_rng(seed)
    radius = np.maximum(abs(np.fft.fftfreq(height))[:, None], abs(np.fft.fftfreq(width))[None, :])
    spectrum = np.fft.fft2(rng.normal(size=(height, width))) * ((radius >= low) & (radius <= high))
    grey = np.real(np.fft.ifft2(spectrum))
    grey = grey / grey.std() * 30 + 128
    return np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=2).astype(np.uint8)


def _ms_per_image(resize: Resize, image: np.ndarray, width: int, height: int, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        resize(image, width, height)
    return (time.perf_counter() - start) / calls * 1e3


@click.command()
@click.option(
    "--sizes",
    default="500x375,640x480,1280x720,1920x1080",
    show_default=True,
    help="comma-separated WxH inputs",
)
@click.option("--image-size", default=448, show_default=True, help="letterbox side S")
@click.option("--repeats", default=7, show_default=True)
def resize(sizes: str, image_size: int, repeats: int) -> None:
    """ms/image (1 thread) and aliasing of the resize candidates."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    for size in sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        lb = compute_letterbox(height, width, image_size)
        factor = width / lb.new_width
        texture = _band_noise(height, width, 0.0, 0.5, seed=0)
        calls = max(3, int(2e6 / (width * height)))
        times: dict[str, list[float]] = {name: [] for name in CANDIDATES}
        for _ in range(repeats):  # interleaved: load on a shared machine hits all alike
            for name, fn in CANDIDATES.items():
                times[name].append(_ms_per_image(fn, texture, lb.new_width, lb.new_height, calls))
        stop = _band_noise(height, width, 0.5 / factor, 0.5, seed=1)
        passband = _band_noise(height, width, 0.0, 0.35 / factor, seed=2)
        click.echo(f"{width}x{height} -> {lb.new_width}x{lb.new_height} (shrink {factor:.2f}x)")
        click.echo(
            f"  {'candidate':26s} {'ms median':>9s} {'min':>6s} {'aliasing':>9s} {'passband':>9s}"
        )
        for name, fn in CANDIDATES.items():
            aliasing = fn(stop, lb.new_width, lb.new_height)[..., 0].astype(np.float64).std()
            kept = fn(passband, lb.new_width, lb.new_height)[..., 0].astype(np.float64).std()
            kept /= passband[..., 0].astype(np.float64).std()
            click.echo(
                f"  {name:26s} {np.median(times[name]):9.2f} {min(times[name]):6.2f} "
                f"{aliasing:9.2f} {kept:9.2f}"
            )
