"""Synthetic inputs for demos, benchmarks and tests: a moving-shapes video and a
random-weight checkpoint.

    write_synthetic_video("demo.mp4", frames=60, size=(320, 240), fps=15)
    random_checkpoint("random.pt", backbone="resnet18", image_size=64)
    # detector detect random.pt demo.mp4 --out out/
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from detector.data.synthetic.embedded import write_video


def synthetic_frame(index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame `index` (BGR uint8 [H, W, 3]): grey, an orange square moving right by 1 px a
    frame (left edge at x = index mod (W - 16), rows 10..25) and a circle moving down."""
    width, height = size
    image = np.full((height, width, 3), 90, np.uint8)
    x = index % max(1, width - 16)
    image[10:26, x : x + 16] = (40, 200, 240)
    radius = max(4, min(width, height) // 10)
    center_y = radius + index % max(1, height - 2 * radius)
    cv2.circle(image, (width - 2 * radius, center_y), radius, (200, 80, 40), -1)
    return image


def write_synthetic_video(
    path: str | Path, frames: int = 30, size: tuple[int, int] = (64, 48), fps: float = 15.0
) -> Path:
    """Write `frames` synthetic frames as an mp4v video; returns the path.

    Args:
        path: output .mp4 file (folder created).
        frames: number of frames.
        size: (width, height); even sizes suit every codec.
        fps: frames per second stored in the container.
    """
    width, height = size
    write_video(
        path,
        (synthetic_frame(index, size) for index in range(frames)),
        width=width,
        height=height,
        fps=fps,
    )
    return Path(path)


def random_checkpoint(
    path: str | Path,
    *,
    backbone: str = "resnet18",
    image_size: int = 64,
    names: Sequence[str] = ("circle", "square", "triangle"),
    seed: int = 0,
    model: dict[str, Any] | None = None,
) -> Path:
    """Save a random-weight checkpoint with every key docs/internals.md lists.

    BatchNorm statistics are calibrated on synthetic frames and the objectness and
    class priors raised, so that random weights give varied scores, many above the
    default 0.25 threshold: pipelines then draw, write and serve boxes.
    For benchmarks and tests only; the boxes mean nothing. `model`: more `model:`
    config keys (e.g. ``{"width": 0.5}``).
    """
    from detector.checkpoint import save_checkpoint
    from detector.config import config_from_dict, config_to_dict
    from detector.model.build import build_model

    cfg = config_from_dict(
        {
            "data": {"names": list(names)},
            "model": {"backbone": backbone, "image_size": image_size, **(model or {})},
        }
    )
    torch.manual_seed(seed)
    network = build_model(cfg.model, len(names))
    # Calibrate BatchNorm statistics on synthetic frames: with the default running
    # statistics (mean 0, var 1) random features fade to ~0 and every score is equal.
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the calibration batches
    frames = np.stack([synthetic_frame(i * 7, (image_size, image_size)) for i in range(4)])
    with torch.no_grad():
        network.train()
        network(torch.from_numpy(frames[:, :, :, ::-1].copy()).permute(0, 3, 1, 2).float())
        network.eval()
        for name, param in network.named_parameters():
            if name.endswith(("obj_pred.bias", "cls_pred.bias")):
                param.fill_(0.5)
    save_checkpoint(
        {
            "model": network.state_dict(),
            "config": config_to_dict(cfg),
            "names": list(names),
            "image_size": image_size,
            "mean": list(cfg.model.mean),
            "std": list(cfg.model.std),
            "epoch": 0,
            "best_ap": -1.0,
        },
        path,
    )
    return Path(path)
