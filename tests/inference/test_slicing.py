"""Sliced inference through `Detector(slicing=...)`: against a tile-by-tile reference,
batched equals one tile per forward, bad settings, empty tiles and a 20000 x 20000 image.

    .venv/bin/python -m pytest tests/inference/test_slicing.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detector.defaults import SlicingOptions
from detector.inference.predictor import Detector
from detector.inference.synthetic import synthetic_frame
from detector.postprocess import merge_detections, tile_grid

LOW = 0.05  # a score threshold that leaves the random model many boxes to merge


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BGR frame with shapes on it, tiled from the synthetic frame generator."""
    tiles = [
        [synthetic_frame(seed + 3 * r + c, (64, 64)) for c in range(-(-width // 64))]
        for r in range(-(-height // 64))
    ]
    mosaic = np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)
    return np.ascontiguousarray(mosaic[:height, :width])


def _rows(result) -> np.ndarray:
    return np.concatenate([result.boxes, result.scores[:, None], result.labels[:, None]], axis=1)


def reference_sliced(plain: Detector, image: np.ndarray, options: SlicingOptions) -> np.ndarray:
    """Tile by tile through an unsliced detector whose input size is the tile size, padded
    bottom-right with the letterbox grey, clipped, shifted, plus the full pass, merged."""
    rows = []
    height, width = image.shape[:2]
    for x1, y1, x2, y2 in tile_grid(width, height, options.size, options.overlap):
        canvas = np.full((options.size, options.size, 3), 114, np.uint8)
        canvas[: y2 - y1, : x2 - x1] = image[y1:y2, x1:x2]
        tile_rows = _rows(plain(canvas))
        tile_rows[:, [0, 2]] = tile_rows[:, [0, 2]].clip(0, x2 - x1) + x1
        tile_rows[:, [1, 3]] = tile_rows[:, [1, 3]].clip(0, y2 - y1) + y1
        rows.append(tile_rows)
    if options.full_image:
        full = Detector(plain.backend, names=plain.names, image_size=64, score_threshold=LOW)
        rows.append(_rows(full(image)))
    rows = torch.from_numpy(np.concatenate(rows).astype(np.float32))
    settings = {
        "method": options.merge,
        "match_metric": options.match_metric,
        "match_threshold": options.match_threshold,
    }
    merged = merge_detections(rows[:, :4], rows[:, 4], rows[:, 5].long(), **settings)
    out = torch.cat([merged.boxes, merged.scores[:, None], merged.labels[:, None].float()], dim=1)
    return out[: plain.max_det].numpy()


@pytest.fixture(scope="module")
def model(checkpoint_path: Path) -> torch.nn.Module:
    return Detector.from_checkpoint(checkpoint_path, device="cpu").model


def _sliced(model, options: SlicingOptions, **kwargs) -> Detector:
    return Detector(
        model,
        names=("circle", "square", "triangle"),
        image_size=64,
        score_threshold=LOW,
        slicing=options,
        **kwargs,
    )


@pytest.mark.parametrize(
    "options",
    [
        SlicingOptions(size=64, overlap=0.2, batch_size=1),
        SlicingOptions(
            size=64, overlap=0.5, full_image=False, batch_size=1, merge="nms", match_metric="iou"
        ),
        SlicingOptions(size=96, overlap=0.0, batch_size=1, match_threshold=0.3),
    ],
)
def test_sliced_equals_the_tile_by_tile_reference(model, options: SlicingOptions) -> None:
    image = _image(150, 230)
    sliced = _sliced(model, options)
    plain = Detector(model, names=sliced.names, image_size=options.size, score_threshold=LOW)
    result = sliced(image)
    expected = reference_sliced(plain, image, options)
    assert len(result) > 5  # something to merge
    np.testing.assert_allclose(_rows(result), expected, atol=1e-4)
    assert result.width == 230 and result.height == 150
    assert result.label_names == [sliced.names[i] for i in result.labels]


def test_an_image_smaller_than_a_tile_is_one_padded_tile(model) -> None:
    image = _image(40, 50)
    options = SlicingOptions(size=64, batch_size=1, full_image=False)
    plain = Detector(
        model, names=("circle", "square", "triangle"), image_size=64, score_threshold=LOW
    )
    result = _sliced(model, options)(image)
    np.testing.assert_allclose(_rows(result), reference_sliced(plain, image, options), atol=1e-4)
    assert (result.boxes[:, [0, 2]] <= 50).all() and (result.boxes[:, [1, 3]] <= 40).all()


def test_batched_tiles_equal_one_tile_per_forward(model) -> None:
    images = [_image(150, 230), _image(64, 64, seed=5), _image(100, 300, seed=9)]
    one = _sliced(model, SlicingOptions(size=64, batch_size=1)).predict_frames(images)
    batched = _sliced(model, SlicingOptions(size=64, batch_size=5)).predict_frames(images)
    for a, b in zip(one, batched, strict=True):
        assert len(a) == len(b)
        # Batched convolutions may round differently in the last bits: 0.01 px.
        np.testing.assert_allclose(_rows(a), _rows(b), atol=1e-2)


def test_rgb_and_bgr_inputs_agree(model) -> None:
    image = _image(150, 230)
    detector = _sliced(model, SlicingOptions(size=64))
    bgr = detector(image)
    rgb = detector(np.ascontiguousarray(image[:, :, ::-1]), color="rgb")
    np.testing.assert_array_equal(_rows(bgr), _rows(rgb))


def test_empty_tiles_give_empty_detections(model) -> None:
    detector = _sliced(model, SlicingOptions(size=64))
    detector.score_threshold = 1.0 + 1e-6  # nothing passes: every tile has 0 objects
    result = detector(_image(150, 230))
    assert len(result) == 0 and result.boxes.shape == (0, 4) and result.labels.dtype == np.int64
    assert result.to_dict()["detections"] == []


def test_max_det_caps_the_merged_result(model) -> None:
    result = _sliced(model, SlicingOptions(size=64), max_det=3)(_image(150, 230))
    assert len(result) == 3 and (np.diff(result.scores) <= 0).all()


def test_json_record_states_the_slicing(model) -> None:
    options = SlicingOptions(size=64, overlap=0.25, batch_size=2)
    record = _sliced(model, options)(_image(100, 100)).to_dict()
    assert record["slicing"] == {
        "size": 64,
        "overlap": 0.25,
        "full_image": True,
        "batch_size": 2,
        "merge": "nms",
        "match_metric": "iou",
        "match_threshold": 0.5,
    }
    json.dumps(record)
    plain = Detector(model, names=("circle", "square", "triangle"), image_size=64)
    assert "slicing" not in plain(_image(100, 100)).to_dict()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SlicingOptions(size=16), "slice size 16 is below the minimum of 32 px"),
        (
            SlicingOptions(size=80),
            "slice size 80 is not a multiple of the model's largest stride 32",
        ),
        (SlicingOptions(size=64, overlap=1.0), r"slice overlap must be in \[0, 1\), got 1.0"),
        (SlicingOptions(size=64, overlap=-0.2), r"slice overlap must be in \[0, 1\)"),
        (SlicingOptions(size=64, batch_size=0), "slice batch must be >= 1"),
        (SlicingOptions(size=64, merge="wbf"), "slice merge must be one of nmm, nms"),
        (
            SlicingOptions(size=64, match_metric="giou"),
            "slice match metric must be one of ios, iou",
        ),
        (
            SlicingOptions(size=64, match_threshold=2.0),
            r"slice match threshold must be in \[0, 1\]",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(model, options: SlicingOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        _sliced(model, options)
    assert "\n" not in str(caught.value)


def test_from_checkpoint_takes_slicing(checkpoint_path: Path) -> None:
    import detector

    assert detector.SlicingOptions is SlicingOptions  # the public name, re-exported
    detector = Detector.from_checkpoint(
        checkpoint_path, device="cpu", slicing=SlicingOptions(size=64)
    )
    assert detector.slicing == SlicingOptions(size=64) and detector.slice_batch == 8


# A 20000 x 20000 image (1.2 GB) sliced into 1024 px tiles: the tile batches are the only
# pixel buffers. np.zeros maps untouched pages lazily (reading them costs no memory), so a
# copy of the image anywhere would show as >= 1.2 GB of resident growth (measured: ~130 MB
# as it is, ~1280 MB with one `image + 0` before the call).
HUGE_SCRIPT = r"""
import sys, numpy as np, torch
from detector.defaults import SlicingOptions
from detector.inference.backends import DenseOutput
from detector.inference.predictor import Detector

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

class CountingBackend:
    # The forward of a model that sees nothing: the cost under test is the tiling.
    device, fixed_size, strides = torch.device("cpu"), None, (8, 16, 32)
    def __init__(self):
        self.tiles, self.largest = 0, 0
    def forward(self, batch, selection=None):
        self.tiles += len(batch)
        self.largest = max(self.largest, batch.numel() * batch.element_size())
        return DenseOutput(torch.zeros(len(batch), 1, 4), torch.zeros(len(batch), 1, 3))

torch.set_num_threads(1)
backend = CountingBackend()
full = sys.argv[1] == "full"
detector = Detector(backend, names=("a", "b", "c"), image_size=64,
                    slicing=SlicingOptions(size=1024, overlap=0.0, full_image=full, batch_size=4))
image = np.zeros((20000, 20000, 3), np.uint8)
before = peak_mb()
result = detector(image)
print(backend.tiles, backend.largest / 2**20, peak_mb() - before, len(result))
"""


def test_a_20000_pixel_image_streams_its_tiles() -> None:
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", HUGE_SCRIPT, "full"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    tiles, largest_mb, growth_mb, detections = run.stdout.split()
    # 20000 / 1024 -> 20 columns and 20 rows (the last shifted inward); +1 full pass.
    assert int(tiles) == 400 + 1
    assert float(largest_mb) == pytest.approx(4 * 3 * 1024 * 1024 * 4 / 2**20)  # 48 MB batches
    assert float(growth_mb) < 400, f"peak memory grew {growth_mb} MB for a 1.2 GB image"
    assert int(detections) == 0


@pytest.mark.parametrize(
    ("gib", "expected"), [(80, 64), (40, 64), (24, 48), (16, 32), (8, 16), (2, 8)]
)
def test_default_slice_batch_follows_gpu_memory(
    monkeypatch: pytest.MonkeyPatch, gib: int, expected: int
) -> None:
    from types import SimpleNamespace

    from detector.inference import slicing

    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=gib << 30)
    )
    assert slicing.default_slice_batch(torch.device("cuda", 0)) == expected
    assert slicing.default_slice_batch(torch.device("cpu")) == 8
