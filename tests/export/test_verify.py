"""`detector export --verify` can fail: too few detections to compare is no evidence, and the box
and score differences are part of the verdict (issue 18, items 1 and 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.cli import main
from detector.export import ExportOptions, export_checkpoint
from detector.export import verify as verify_module
from detector.export.verify import match_detections, verify_export
from detector.inference.predictor import Detections

from .conftest import tame_checkpoint

MIN_DETECTIONS = getattr(verify_module, "MIN_DETECTIONS", 20)


def silent_checkpoint(path: Path) -> Path:
    """The tame checkpoint with objectness logits of -30: it detects nothing anywhere."""
    tame_checkpoint(path)
    ckpt = load_checkpoint(path)
    for key, value in ckpt["model"].items():
        if key.endswith("obj_pred.weight"):
            ckpt["model"][key] = torch.zeros_like(value)
        if key.endswith("obj_pred.bias"):
            ckpt["model"][key] = torch.full_like(value, -30.0)
    save_checkpoint(ckpt, path)
    return path


def test_a_model_that_detects_nothing_fails_verification(tmp_path: Path) -> None:
    checkpoint = silent_checkpoint(tmp_path / "silent.pt")
    out = tmp_path / "silent.onnx"
    result = CliRunner().invoke(
        main, ["export", str(checkpoint), "--out", str(out), "--exporter", "torchscript"]
    )
    assert result.exit_code == 1, result.output
    assert (
        f"no evidence: 0 detections on 16 images (need >= {MIN_DETECTIONS}); pass --data"
        in result.output
    )
    assert "result: FAIL" in result.output and "PASS" not in result.output


def shifted_background_boxes(source: Path, out: Path, shift: float) -> Path:
    """A copy of a dense .onnx (opset >= 18) whose boxes move by `shift` px in every cell
    whose best score is under 0.25: no detection changes, the dense outputs do."""
    model = onnx.load(str(source))
    for node in model.graph.node:
        node.output[:] = ["boxes/raw" if name == "boxes" else name for name in node.output]
    constants = {
        "bg/axes": np.array([2], np.int64),
        "bg/threshold": np.array(0.25, np.float32),
        "bg/shift": np.array(shift, np.float32),
        "bg/zero": np.array(0.0, np.float32),
    }
    for name, value in constants.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    make = onnx.helper.make_node
    model.graph.node.extend(
        [
            make("ReduceMax", ["scores", "bg/axes"], ["bg/best"], keepdims=1),  # [B, A, 1]
            make("Less", ["bg/best", "bg/threshold"], ["bg/background"]),
            make("Where", ["bg/background", "bg/shift", "bg/zero"], ["bg/offset"]),
            make("Add", ["boxes/raw", "bg/offset"], ["boxes"]),
        ]
    )
    onnx.save(model, str(out))
    return out


def test_boxes_beyond_the_tolerance_fail_even_when_detections_match(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    exported = export_checkpoint(
        tiny_checkpoint, ExportOptions(out=tmp_path / "m.onnx", exporter="torchscript")
    ).path
    good = verify_export(exported, tiny_checkpoint, num_images=8)
    assert good.passed, good.table()
    # Boxes 0.5 px off where no detection comes from: every detection still matches, but
    # the dense outputs are far outside the fp32 box tolerance.
    bad = verify_export(
        shifted_background_boxes(exported, tmp_path / "shifted.onnx", 0.5),
        tiny_checkpoint,
        num_images=8,
    )
    assert bad.matched == bad.total > 0  # the match alone would pass
    assert bad.box_abs == pytest.approx(0.5, abs=0.01)
    assert not bad.passed
    assert "result: FAIL" in bad.table()


def test_matching_uses_the_packages_box_iou(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = getattr(verify_module, "box_iou", None)

    def spy(a, b):
        calls.append((a.shape, b.shape))
        return real(a, b)

    monkeypatch.setattr(verify_module, "box_iou", spy)

    def dets(boxes, scores, labels):
        return Detections(
            boxes=np.array(boxes, np.float32),
            scores=np.array(scores, np.float32),
            labels=np.array(labels, np.int64),
            label_names=[],
            width=100,
            height=100,
        )

    ref = dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1])
    cand = dets([[20, 20, 40.1, 40], [0, 0, 10, 10], [0, 0, 10, 10]], [0.8, 0.9, 0.5], [1, 0, 0])
    matched, total, pairs = match_detections(ref, cand)
    assert (matched, total, sorted(pairs)) == (2, 3, [(0, 1), (1, 0)])
    assert calls == [((2, 4), (3, 4))]
