"""Sliced inference on every backend: ONNX Runtime (dynamic, --nms with a static batch),
TorchScript, each equal to the checkpoint's sliced detections; a static export at another
size is a one-line error; a fixed batch of 1 runs one tile per forward and says so.

    .venv/bin/python -m pytest tests/export/test_slicing_backends.py -q
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from detector.defaults import SlicingOptions
from detector.export import ExportOptions, export_checkpoint
from detector.export.verify import synthetic_images
from detector.inference.predictor import Detector

from .test_backend import assert_same_detections

SETTINGS = {"score_threshold": 0.3, "iou_threshold": 0.5, "max_det": 20}  # the --nms export's own
OPTIONS = SlicingOptions(size=64, overlap=0.25, batch_size=4)


@pytest.fixture(scope="module")
def torchscript_dynamic(tiny_checkpoint: Path, export_dir: Path) -> Path:
    options = ExportOptions(
        format="torchscript", dynamic=True, out=export_dir / "dynamic.torchscript"
    )
    return export_checkpoint(tiny_checkpoint, options).path


@pytest.fixture(scope="module")
def onnx_nms_batch_one(tiny_checkpoint: Path, export_dir: Path) -> Path:
    options = ExportOptions(nms=True, batch=1, out=export_dir / "nms1.onnx", **SETTINGS)
    return export_checkpoint(tiny_checkpoint, options).path


@pytest.mark.parametrize("fixture", ["onnx_dynamic", "torchscript_dynamic", "onnx_nms"])
def test_exported_sliced_equals_the_checkpoints(
    fixture: str, tiny_checkpoint: Path, request: pytest.FixtureRequest
) -> None:
    exported = Detector.from_checkpoint(
        request.getfixturevalue(fixture), device="cpu", slicing=OPTIONS, **SETTINGS
    )
    checkpoint = Detector.from_checkpoint(
        tiny_checkpoint, device="cpu", slicing=OPTIONS, **SETTINGS
    )
    images = synthetic_images(2, 160)  # 160 x 240 and 213 x 160: 15 tiles each, 4 per batch
    for ours, theirs in zip(
        exported.predict_frames(images), checkpoint.predict_frames(images), strict=True
    ):
        assert_same_detections(ours, theirs)
        assert ours.slicing == OPTIONS.to_dict()


def test_static_export_at_another_size_is_a_one_line_error(onnx_static: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"slice size 128: this model was exported for 64 x 64 inputs "
        r"only \(use --slice 64, or export with --dynamic\)",
    ):
        Detector.from_checkpoint(onnx_static, device="cpu", slicing=SlicingOptions(size=128))


def test_fixed_batch_of_one_runs_one_tile_per_forward(
    onnx_nms_batch_one: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        exported = Detector.from_checkpoint(
            onnx_nms_batch_one, device="cpu", slicing=OPTIONS, **SETTINGS
        )
    notices = [r.getMessage() for r in caplog.records if "fixed batch of 1" in r.getMessage()]
    assert notices == [
        f"{onnx_nms_batch_one}: exported with a fixed batch of 1; slicing runs one tile "
        "per forward (export with --dynamic to batch tiles)"
    ]
    assert exported.slice_batch == 1
    calls = []
    forward = exported.backend.forward
    exported.backend.forward = lambda batch, selection=None: (
        calls.append(len(batch)) or forward(batch, selection)
    )
    image = synthetic_images(1, 160)[0]
    checkpoint = Detector.from_checkpoint(
        tiny_checkpoint, device="cpu", slicing=OPTIONS, **SETTINGS
    )
    assert_same_detections(exported(image), checkpoint(image))
    # 160 x 240: 3 x 5 tiles (step 48, the last shifted inward) one at a time, then the full pass.
    assert image.shape[:2] == (160, 240) and calls == [1] * 16
