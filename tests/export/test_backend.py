"""The ONNX Runtime / TorchScript backends of `Detector`: same detections as the checkpoint,
same thresholds and class filter, and a one-line error for every bad file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from detector.export.metadata import ExportedModelError, ExportMetadata
from detector.export.verify import match_detections, synthetic_images
from detector.inference.exported import OnnxRuntimeBackend, onnx_providers
from detector.inference.predictor import Detector

from .conftest import legacy_nms_file


def assert_same_detections(a, b) -> None:
    matched, total, _ = match_detections(a, b)
    assert total > 0 and matched == total, f"{matched}/{total} matched"
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
    assert a.names == b.names and (a.width, a.height) == (b.width, b.height)


@pytest.mark.parametrize("fixture", ["onnx_static", "onnx_dynamic", "onnx_nms"])
def test_exported_detector_gives_the_checkpoints_detections(
    fixture: str, tiny_checkpoint: Path, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(fixture)
    settings = {
        "score_threshold": 0.3,
        "iou_threshold": 0.5,
        "max_det": 20,
    }  # the --nms export's own
    exported = Detector.from_checkpoint(path, device="cpu", **settings)
    checkpoint = Detector.from_checkpoint(tiny_checkpoint, device="cpu", **settings)
    assert (
        exported.class_names == checkpoint.class_names == checkpoint.names
        and exported.image_size == 64
        and exported.model is None
    )
    images = synthetic_images(3, 64)  # 3 frames: a static batch of 1 or 2 is split and padded
    for ours, theirs in zip(
        exported.predict_frames(images), checkpoint.predict_frames(images), strict=True
    ):
        assert_same_detections(ours, theirs)
    single = exported(images[0])  # the array/path API too
    assert_same_detections(single, checkpoint(images[0]))


def test_thresholds_and_class_filter_apply_to_exported_models(
    onnx_dynamic: Path, onnx_nms: Path, tiny_checkpoint: Path
) -> None:
    image = synthetic_images(1, 64)[0]
    for path in (onnx_dynamic, onnx_nms):
        everything = Detector.from_checkpoint(
            path, device="cpu", score_threshold=0.3, iou_threshold=0.5
        )(image)
        strict = Detector.from_checkpoint(
            path, device="cpu", score_threshold=0.5, iou_threshold=0.5
        )(image)
        assert 0 < len(strict) < len(everything) and (strict.scores >= 0.5).all()
        squares = Detector.from_checkpoint(
            path, device="cpu", score_threshold=0.3, iou_threshold=0.5, classes=["square"]
        )(image)
        assert len(squares) and set(squares.names) == {"square"}
    # Dense exports filter classes before NMS and max_det, exactly like the checkpoint.
    ref = Detector.from_checkpoint(tiny_checkpoint, device="cpu", classes=["square"], max_det=3)(
        image
    )
    ours = Detector.from_checkpoint(onnx_dynamic, device="cpu", classes=["square"], max_det=3)(
        image
    )
    assert_same_detections(ours, ref)


def test_dynamic_export_runs_at_another_size_static_refuses(
    onnx_dynamic: Path, onnx_static: Path, tiny_checkpoint: Path
) -> None:
    backend = Detector.from_checkpoint(onnx_dynamic, device="cpu").backend
    ours = Detector(backend, names=backend.metadata.names, image_size=96)
    base = Detector.from_checkpoint(tiny_checkpoint, device="cpu")
    theirs = Detector(base.model, names=base.names, image_size=96)
    image = synthetic_images(1, 96)[0]
    assert_same_detections(ours(image), theirs(image))
    static = Detector.from_checkpoint(onnx_static, device="cpu").backend
    with pytest.raises(ValueError, match="image_size 96: this model was exported for 64 only"):
        Detector(static, names=static.metadata.names, image_size=96)


def test_torchscript_file_runs_through_the_same_detector(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from detector.export import ExportOptions, export_checkpoint

    path = export_checkpoint(
        tiny_checkpoint, ExportOptions(format="torchscript", out=tmp_path / "m.torchscript")
    ).path
    images = synthetic_images(2, 64)
    ours = Detector.from_checkpoint(path, device="cpu").predict_frames(images)
    theirs = Detector.from_checkpoint(tiny_checkpoint, device="cpu").predict_frames(images)
    for a, b in zip(ours, theirs, strict=True):
        assert_same_detections(a, b)


def _foreign_model(
    path: Path, *, input_name: str = "x", metadata: dict[str, str] | None = None
) -> Path:
    """A valid ONNX file that is not ours: Identity on one input."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], ["y"])],
        "g",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def test_bad_exported_files_are_one_line_errors(tmp_path: Path, onnx_static: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(onnx_static.read_bytes()[:5000])
    cases = {
        tmp_path / "missing.onnx": "exported model not found",
        corrupt: "not a loadable ONNX model",
        _foreign_model(tmp_path / "foreign.onnx"): "not a detector export",
        _foreign_model(
            tmp_path / "wrong_input.onnx",
            metadata=ExportMetadata(names=["a"], image_size=64).to_props(),
        ): r"expected one input 'images' \[B, 3, H, W\], got x",
        _foreign_model(
            tmp_path / "wrong_outputs.onnx",
            input_name="images",
            metadata=ExportMetadata(names=["a"], image_size=64).to_props(),
        ): r"expected outputs \['boxes', 'scores'\], got \['y'\]",
    }
    for path, message in cases.items():
        with pytest.raises(ExportedModelError, match=message) as info:
            Detector.from_checkpoint(path, device="cpu")
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    text = tmp_path / "text.torchscript"
    text.write_text("not a zip")
    with pytest.raises(
        ExportedModelError, match="text.torchscript: not a loadable TorchScript file"
    ):
        Detector.from_checkpoint(text, device="cpu")
    with pytest.raises(ValueError, match="compile applies to checkpoints"):
        Detector.from_checkpoint(onnx_static, device="cpu", compile=True)


def test_missing_runtime_says_what_to_install(
    onnx_static: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(
        ExportedModelError, match=r"needs onnxruntime: pip install 'detector\[export\]'"
    ):
        Detector.from_checkpoint(onnx_static, device="cpu")


def test_execution_providers_follow_the_device() -> None:
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    on_gpu0 = [(name, {"device_id": "0"}) for name in gpu[:2]]
    assert onnx_providers("auto", gpu) == [*on_gpu0, "CPUExecutionProvider"]
    assert onnx_providers("cuda", gpu[1:]) == [*on_gpu0[1:], "CPUExecutionProvider"]
    assert onnx_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers("cpu", gpu) == ["CPUExecutionProvider"]
    with pytest.raises(ExportedModelError, match="no CUDA execution provider.*onnxruntime-gpu"):
        onnx_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ExportedModelError, match="auto, cpu or cuda"):
        onnx_providers("mps", gpu)


def test_looser_settings_than_an_old_graphs_nms_and_half_are_warned_about(
    onnx_nms: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="detector.inference.exported"):
        Detector.from_checkpoint(
            onnx_nms, device="cpu", score_threshold=0.01, iou_threshold=0.7, max_det=20
        )
    assert not caplog.records  # the thresholds are graph inputs: nothing to say
    with caplog.at_level("WARNING", logger="detector.inference.exported"):
        Detector.from_checkpoint(onnx_nms, device="cpu", max_det=50)
    assert "the graph outputs at most 20 detections per image; max_det=50 gives 20" in caplog.text
    caplog.clear()
    old = legacy_nms_file(onnx_nms, tmp_path / "old.onnx")
    with caplog.at_level("WARNING", logger="detector.inference.exported"):
        Detector.from_checkpoint(
            old, device="cpu", score_threshold=0.3, iou_threshold=0.5, max_det=20
        )
    assert not caplog.records  # the graph's own settings: nothing to say
    with caplog.at_level("WARNING", logger="detector.inference.exported"):
        Detector.from_checkpoint(
            old, device="cpu", score_threshold=0.01, iou_threshold=0.5, max_det=20, half=True
        )
    messages = [r.getMessage() for r in caplog.records]
    assert any("precision is fixed at export (fp32)" in m for m in messages)
    assert any("NMS is in the graph (score >= 0.3, IoU 0.5, max_det 20)" in m for m in messages)


def test_cuda_n_reaches_the_providers_as_device_id() -> None:
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cuda:1", gpu) == [
        ("TensorrtExecutionProvider", {"device_id": "1"}),
        ("CUDAExecutionProvider", {"device_id": "1"}),
        "CPUExecutionProvider",
    ]
    assert onnx_providers(torch.device("cuda", 2), gpu[1:]) == [
        ("CUDAExecutionProvider", {"device_id": "2"}),
        "CPUExecutionProvider",
    ]
    assert onnx_providers("cuda", gpu[1:])[0] == ("CUDAExecutionProvider", {"device_id": "0"})
    with pytest.raises(ExportedModelError, match="cuda:x"):
        onnx_providers("cuda:x", gpu)


@pytest.mark.parametrize("fixture", ["onnx_static", "onnx_dynamic", "onnx_nms"])
def test_io_binding_gives_what_session_run_gives(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """The bound path (what a CUDA session uses, so frames stay on the GPU) run on the CPU."""
    path = request.getfixturevalue(fixture)
    plain = OnnxRuntimeBackend(path, device="cpu")
    bound = OnnxRuntimeBackend(path, device="cpu", io_binding=True)
    assert bound.io_binding and not plain.io_binding
    batch = torch.randint(0, 256, (3, 3, 64, 64)).float()  # 3 frames: static batches split/padded
    bound_out, plain_out = vars(bound.forward(batch)), vars(plain.forward(batch))
    for ours, theirs in zip(bound_out.values(), plain_out.values(), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.shape[0] == 3
        torch.testing.assert_close(ours, theirs)
