"""Exported graphs equal the PyTorch model: static and dynamic, batch 1 and 3, two sizes;
the in-graph NMS equals our batched_nms + max_det; metadata round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from detector.checkpoint import load_checkpoint
from detector.export import ExportMetadata, ExportOptions, export_checkpoint
from detector.export.files import file_sha256
from detector.export.graph import DecodedDetector
from detector.export.metadata import ExportedModelError
from detector.model.build import model_from_checkpoint
from detector.postprocess import batched_nms

from .conftest import NAMES


def reference(checkpoint: Path, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    model, _ = model_from_checkpoint(load_checkpoint(checkpoint))
    with torch.no_grad():
        boxes, scores = DecodedDetector(model).eval()(images)
    return boxes.numpy(), scores.numpy()


def run_onnx(path: Path, images: torch.Tensor) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})


def random_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), generator=generator).float()


def assert_close(ours: list[np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> None:
    boxes, scores = ours
    assert boxes.shape == ref[0].shape and scores.shape == ref[1].shape
    # fp32 convolution order differs between the runtimes: ~1e-5 relative.
    np.testing.assert_allclose(boxes, ref[0], rtol=1e-3, atol=0.05)
    np.testing.assert_allclose(scores, ref[1], rtol=1e-3, atol=1e-4)


def test_static_export_equals_pytorch(onnx_static: Path, tiny_checkpoint: Path) -> None:
    images = random_images(1, 64, 64)
    outputs = run_onnx(onnx_static, images)
    assert outputs[0].shape == (1, 64 + 16 + 4, 4) and outputs[1].shape == (1, 84, len(NAMES))
    assert_close(outputs, reference(tiny_checkpoint, images))
    with pytest.raises(Exception, match="images"):  # static: another size is refused by the runtime
        run_onnx(onnx_static, random_images(1, 96, 96))


def test_static_batch_3_at_a_second_size(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = export_checkpoint(
        tiny_checkpoint, ExportOptions(out=tmp_path / "b3.onnx", batch=3, image_size=96)
    ).path
    images = random_images(3, 96, 96, seed=1)
    outputs = run_onnx(path, images)
    assert outputs[0].shape == (3, 144 + 36 + 9, 4)
    assert_close(outputs, reference(tiny_checkpoint, images))


@pytest.mark.parametrize(
    ("batch", "height", "width"), [(1, 64, 64), (3, 64, 64), (1, 96, 96), (3, 96, 128)]
)
def test_dynamic_export_equals_pytorch(
    onnx_dynamic: Path, tiny_checkpoint: Path, batch: int, height: int, width: int
) -> None:
    images = random_images(batch, height, width, seed=batch + height)
    assert_close(run_onnx(onnx_dynamic, images), reference(tiny_checkpoint, images))


def test_torchscript_based_exporter_equals_pytorch(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = export_checkpoint(
        tiny_checkpoint,
        ExportOptions(out=tmp_path / "ts.onnx", exporter="torchscript", dynamic=True),
    ).path
    for batch, size in ((1, 64), (2, 96)):
        images = random_images(batch, size, size, seed=size)
        assert_close(run_onnx(path, images), reference(tiny_checkpoint, images))


def test_torchscript_file_equals_pytorch_and_carries_metadata(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    path = export_checkpoint(
        tiny_checkpoint, ExportOptions(format="torchscript", out=tmp_path / "m.torchscript")
    ).path
    extra = {"detector.json": ""}
    with pytest.warns(DeprecationWarning, match="torch.jit.load"):  # torch 2.13 (docs/export.md)
        module = torch.jit.load(str(path), _extra_files=extra)
    meta = ExportMetadata.from_props(json.loads(extra["detector.json"]), source=str(path))
    assert (
        meta.names == list(NAMES)
        and meta.image_size == 64
        and meta.exporter.startswith("torch.jit.trace")
    )
    images = random_images(2, 96, 64, seed=5)  # traced at 1 x 64 x 64: other shapes work too
    with torch.no_grad():
        ours = [t.numpy() for t in module(images)]
    assert_close(ours, reference(tiny_checkpoint, images))


def test_metadata_round_trip(onnx_nms: Path, tiny_checkpoint: Path) -> None:
    props = {p.key: p.value for p in onnx.load(str(onnx_nms)).metadata_props}
    meta = ExportMetadata.from_props(props, source="nms.onnx")
    assert meta.names == list(NAMES) and meta.image_size == 64 and meta.strides == [8, 16, 32]
    assert (meta.nms, meta.dynamic, meta.batch, meta.precision) == (True, False, 2, "fp32")
    assert (meta.score_threshold, meta.iou_threshold, meta.max_det) == (0.3, 0.5, 20)
    assert meta.checkpoint_sha256 == file_sha256(tiny_checkpoint) and meta.detector_version
    assert meta.exporter.startswith("torch.onnx.export(dynamo=True)") and meta.opset == 18
    assert json.loads(props["names"]) == list(NAMES) and props["nms"] == "true"
    again = ExportMetadata.from_props(meta.to_props(), source="x")
    assert again == meta


def test_metadata_that_is_not_ours_or_broken_is_refused() -> None:
    with pytest.raises(ExportedModelError, match="x.onnx: not a detector export"):
        ExportMetadata.from_props({"producer": "other"}, source="x.onnx")
    props = ExportMetadata(names=["a"], image_size=64).to_props()
    with pytest.raises(ExportedModelError, match="malformed"):
        ExportMetadata.from_props({**props, "max_det": "many"}, source="x.onnx")
    with pytest.raises(ExportedModelError, match="multiple of 32"):
        ExportMetadata.from_props({**props, "image_size": "100"}, source="x.onnx")
    with pytest.raises(ExportedModelError, match="no class names"):
        ExportMetadata.from_props({**props, "names": "[]"}, source="x.onnx")


def reference_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_det: int,
) -> np.ndarray:
    """Each (cell, class) above the threshold -> batched_nms per class -> best max_det: [K, 6]."""
    num_classes = scores.shape[1]
    flat = scores.reshape(-1)
    keep = flat > score_threshold
    cell = torch.arange(flat.numel()) // num_classes
    label = torch.arange(flat.numel()) % num_classes
    cand_boxes, cand_scores, cand_labels = boxes[cell[keep]], flat[keep], label[keep]
    kept = batched_nms(cand_boxes, cand_scores, cand_labels, iou_threshold)[:max_det]
    return torch.cat(
        [cand_boxes[kept], cand_scores[kept, None], cand_labels[kept, None].float()], 1
    ).numpy()


def test_in_graph_nms_equals_batched_nms_and_max_det(onnx_nms: Path, tiny_checkpoint: Path) -> None:
    images = random_images(2, 64, 64, seed=3)
    images[1] = 114.0  # a flat grey image: different scores, fewer detections
    detections, num_detections = run_onnx(onnx_nms, images)
    assert (
        detections.shape == (2, 20, 6)
        and num_detections.shape == (2,)
        and num_detections.dtype == np.int64
    )
    boxes, scores = reference(tiny_checkpoint, images)
    capped = 0
    for index in range(2):
        expected = reference_nms(
            torch.from_numpy(boxes[index]),
            torch.from_numpy(scores[index]),
            score_threshold=0.3,
            iou_threshold=0.5,
            max_det=20,
        )
        count = int(num_detections[index])
        assert count == len(expected) > 0
        rows = detections[index, :count]
        np.testing.assert_array_equal(rows[:, 5], expected[:, 5])  # same labels in the same order
        np.testing.assert_allclose(rows[:, :5], expected[:, :5], rtol=1e-3, atol=1e-3)
        assert (np.diff(rows[:, 4]) <= 0).all()
        assert (detections[index, count:] == 0).all()  # padding rows are zeros
        capped += count == 20
    assert capped >= 1  # max_det bites on at least one image


def test_nms_with_no_candidate_gives_zero_detections(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = export_checkpoint(
        tiny_checkpoint,
        ExportOptions(
            out=tmp_path / "none.onnx",
            nms=True,
            dynamic=True,
            exporter="torchscript",
            score_threshold=1.0,
        ),
    ).path
    detections, num_detections = run_onnx(path, random_images(3, 64, 64))
    assert detections.shape == (3, 300, 6) and num_detections.tolist() == [0, 0, 0]
    assert not detections.any()


def test_half_export_stores_fp16_and_passes_the_fp16_tolerance(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from detector.export.verify import TOLERANCES, verify_export

    path = export_checkpoint(
        tiny_checkpoint, ExportOptions(out=tmp_path / "half.onnx", half=True)
    ).path
    model = onnx.load(str(path))
    weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    assert (
        model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    )  # fp32 in and out
    report = verify_export(path, tiny_checkpoint, num_images=8)
    assert report.precision == "fp16" and report.tolerances == TOLERANCES["fp16"]
    assert report.passed, report.table()
    assert 0 < report.score_abs < 0.05  # fp16 really differs from fp32, but only a little
