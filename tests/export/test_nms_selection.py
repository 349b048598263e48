"""The in-graph NMS of `detector export --nms` selects what `Detector` selects (issue 18, item 2):
the same top-k pre-cut, `>=` on the score, the class filter before NMS, and score threshold, IoU
threshold and max_det as graph inputs with the exported defaults. Checked on a fake dense graph
(boxes and scores fed directly) with more candidates than the pre-cut, and end to end at 256 px."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

from detector import Detector
from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.cli import main
from detector.export import ExportOptions, export_checkpoint
from detector.export.nms_graph import append_nms
from detector.export.verify import match_detections, synthetic_images
from detector.inference.synthetic import write_synthetic_video
from detector.model.decode import select_detections

from .conftest import legacy_nms_file, tame_checkpoint


def fake_dense_nms(
    path: Path,
    num_classes: int,
    *,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_det: int = 300,
) -> Path:
    """An .onnx taking dense boxes [B, A, 4] and scores [B, A, C] as inputs, with our NMS tail."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["in_boxes"], ["boxes"]),
            helper.make_node("Identity", ["in_scores"], ["scores"]),
        ],
        "fake",
        [
            helper.make_tensor_value_info("in_boxes", TensorProto.FLOAT, ["B", "A", 4]),
            helper.make_tensor_value_info("in_scores", TensorProto.FLOAT, ["B", "A", num_classes]),
        ],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["B", "A", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", "A", num_classes]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    append_nms(model, score_threshold=score_threshold, iou_threshold=iou_threshold, max_det=max_det)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def run(
    path: Path, boxes: torch.Tensor, scores: torch.Tensor, **feeds: np.ndarray
) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"in_boxes": boxes.numpy(), "in_scores": scores.numpy(), **feeds})


def crowded_scene() -> tuple[torch.Tensor, torch.Tensor]:
    """2 images x 1500 cells x 2 classes: 600 near-copies of one box score highest (1200
    candidates, more than the 1000 pre-cut; NMS keeps one per class), then 900 distinct boxes."""
    boxes = torch.zeros(1500, 4)
    boxes[:600] = torch.tensor([10.0, 10.0, 50.0, 50.0]) + torch.linspace(0, 1, 600)[:, None]
    grid = torch.arange(900)
    corner = torch.stack([(grid % 30) * 20.0, (grid // 30) * 20.0], 1) + 100.0
    boxes[600:] = torch.cat([corner, corner + 15.0], 1)  # apart from each other and the crowd
    scores = torch.zeros(1500, 2)
    scores[:600, 0] = torch.linspace(0.95, 0.80, 600)
    scores[:600, 1] = torch.linspace(0.94, 0.79, 600)
    scores[600:, 0] = torch.linspace(0.70, 0.30, 900)
    scores[600:, 1] = torch.linspace(0.29, 0.26, 900)
    return torch.stack([boxes, boxes.flip(0)]), torch.stack([scores, scores.flip(0)])


def expected(boxes: torch.Tensor, scores: torch.Tensor, **settings) -> list[np.ndarray]:
    """`Detector`'s selection (select_detections, pre_nms_topk 1000): per image [K, 6]."""
    return [
        torch.cat([d["boxes"], d["scores"][:, None], d["labels"][:, None].float()], 1).numpy()
        for d in select_detections(boxes, scores, **settings)
    ]


def assert_same(outputs: list[np.ndarray], reference: list[np.ndarray]) -> None:
    detections, counts = outputs
    for index, rows in enumerate(reference):
        assert int(counts[index]) == len(rows), (index, int(counts[index]), len(rows))
        np.testing.assert_allclose(detections[index, : len(rows)], rows, rtol=1e-6, atol=1e-5)
        assert not detections[index, len(rows) :].any()


def test_graph_applies_the_same_pre_nms_top_k_as_detector(tmp_path: Path) -> None:
    boxes, scores = crowded_scene()
    path = fake_dense_nms(
        tmp_path / "fake.onnx", 2, score_threshold=0.25, iou_threshold=0.45, max_det=300
    )
    reference = expected(boxes, scores, score_threshold=0.25, iou_threshold=0.45, max_det=300)
    assert [len(r) for r in reference] == [
        2,
        2,
    ]  # the 1000 best are all crowd: one per class survives
    assert_same(run(path, boxes, scores), reference)


def test_thresholds_and_max_det_are_graph_inputs_with_the_exported_defaults(tmp_path: Path) -> None:
    boxes, scores = crowded_scene()
    boxes, scores = boxes[:, 600:], scores[:, 600:]  # the distinct boxes only: 1800 candidates
    scores[0, 5, 1] = (
        0.6875  # exactly representable, and exactly the threshold fed below: kept (>=)
    )
    boxes[0, 6] = boxes[0, 7] + torch.tensor([2.0, 0.0, 2.0, 0.0])  # IoU 0.76 with cell 7
    path = fake_dense_nms(
        tmp_path / "fake.onnx", 2, score_threshold=0.25, iou_threshold=0.45, max_det=300
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    defaults = {
        i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
    }
    assert [i.name for i in session.get_inputs()] == [
        "in_boxes",
        "in_scores",
    ]  # the others have defaults
    assert (
        float(defaults["score_threshold"]) == pytest.approx(0.25)
        and int(defaults["max_det"]) == 300
    )
    feeds = {
        "score_threshold": np.array(0.6875, np.float32),
        "iou_threshold": np.array(0.8, np.float32),
        "max_det": np.array(50, np.int64),
    }
    reference = expected(boxes, scores, score_threshold=0.6875, iou_threshold=0.8, max_det=50)
    assert 0.6875 in reference[0][:, 4] and 20 < len(reference[0]) < 50
    assert {tuple(b) for b in boxes[0, 6:8].tolist()} <= {
        tuple(r[:4]) for r in reference[0].tolist()
    }
    assert_same(run(path, boxes, scores, **feeds), reference)
    feeds["max_det"] = np.array(10, np.int64)  # max_det lowers the count, rows after it are zeros
    assert_same(
        run(path, boxes, scores, **feeds),
        expected(boxes, scores, score_threshold=0.6875, iou_threshold=0.8, max_det=10),
    )
    # The class filter goes before the pre-cut and NMS, as in select_detections.
    mask = np.array([False, True])
    reference = expected(
        boxes, scores, score_threshold=0.25, iou_threshold=0.45, max_det=300, classes=[1]
    )
    assert (reference[0][:, 5] == 1).all() and len(reference[0]) > 20
    assert_same(run(path, boxes, scores, class_mask=mask), reference)


@pytest.fixture(scope="module")
def nms_256(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tame checkpoint at 256 px (1344 cells x 3 classes), --nms at 0.25 / 0.45 / 300."""
    out = tmp_path_factory.mktemp("nms256") / "nms256.onnx"
    torch.set_num_threads(1)
    return export_checkpoint(
        tiny_checkpoint,
        ExportOptions(out=out, nms=True, image_size=256, dynamic=True, exporter="torchscript"),
    ).path


def test_detector_on_an_nms_file_equals_the_checkpoint_at_the_callers_settings(
    nms_256: Path, tiny_checkpoint: Path
) -> None:
    images = synthetic_images(4, 256)
    settings = {
        "score_threshold": 0.05,
        "iou_threshold": 0.3,
        "max_det": 100,
        "classes": ["square", "triangle"],
    }
    exported = Detector.from_checkpoint(nms_256, device="cpu", **settings)
    checkpoint = Detector.from_checkpoint(tiny_checkpoint, device="cpu", **settings)
    checkpoint = Detector(checkpoint.model, names=checkpoint.names, image_size=256, **settings)
    from detector.inference.preprocess import preprocess_batch

    batch, _ = preprocess_batch(images, 256, "cpu")
    dense = Detector.from_checkpoint(tiny_checkpoint, device="cpu").backend.forward(batch)
    assert ((dense.scores[:, :, 1:] >= 0.05).flatten(1).sum(1) > 1000).all()  # the pre-cut bites
    for ref, got in zip(
        checkpoint.predict_frames(images), exported.predict_frames(images), strict=True
    ):
        matched, total, _ = match_detections(ref, got)
        assert matched == total == len(ref) > 0
        assert set(ref.labels.tolist()) <= {1, 2}


def test_old_nms_files_without_inputs_still_load(
    nms_256: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = legacy_nms_file(nms_256, tmp_path / "old.onnx")
    with caplog.at_level("WARNING", logger="detector.inference.exported"):
        detector = Detector.from_checkpoint(old, device="cpu", score_threshold=0.1)
    assert any("cannot bring back what it dropped" in r.getMessage() for r in caplog.records)
    results = detector.predict_frames(synthetic_images(2, 256))
    assert all(len(r) and r.scores.min() >= 0.25 for r in results)


def test_track_on_an_nms_file_keeps_the_low_score_stage(tmp_path: Path) -> None:
    checkpoint = tame_checkpoint(tmp_path / "dim.pt")
    ckpt = load_checkpoint(checkpoint)
    for key in ckpt["model"]:
        if key.endswith("obj_pred.bias"):  # objectness ~0.25: scores spread over 0.05..0.3
            ckpt["model"][key] = torch.full_like(ckpt["model"][key], -1.1)
    save_checkpoint(ckpt, checkpoint)
    nms_file = export_checkpoint(
        checkpoint, ExportOptions(out=tmp_path / "dim.onnx", nms=True, exporter="torchscript")
    ).path  # --conf 0.25
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=4, size=(80, 60), fps=10.0)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "track",
            str(nms_file),
            str(video),
            "--device",
            "cpu",
            "--conf",
            "0.1",
            "--save-json",
            str(out / "t.json"),
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    records = json.loads((out / "t.json").read_text())
    scores = [d["score"] for r in records for d in r["detections"]]
    assert len(records) == 4 and scores
    # ByteTrack's second stage needs the detections between --conf and --track-high; the
    # graph exported at 0.25 must hand over those under 0.25 too.
    assert min(scores) < 0.25 and min(scores) >= 0.1
