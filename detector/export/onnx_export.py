"""Export a `DecodedDetector` to ONNX, optionally with NMS, metadata in `metadata_props`.

    write_onnx(wrapper, "model.onnx", metadata=meta, exporter="dynamo", opset=18)

Exporter: `torch.onnx.export(..., dynamo=True)` by default, chosen explicitly
(docs/export.md has the comparison on our model with torch 2.13): it is the
maintained exporter, folds the grid into constants for static inputs (162 nodes
against 279) and runs as fast in ONNX Runtime; the TorchScript-based exporter
(`dynamo=False`) is deprecated, marked for removal, and kept as
`--exporter torchscript` because it exports in a tenth of the time.

Dynamic shapes: batch, height and width; height and width are declared as
32 * k, so the exported graph knows they are multiples of 32. The dynamo
exporter specialises sizes 0 and 1, so the example batch for a dynamic export
has 2 images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from detector.data.letterbox import PAD_VALUE
from detector.export.files import write_atomic
from detector.export.metadata import DENSE_OUTPUTS, INPUT_NAME, ExportMetadata
from detector.export.nms_graph import append_nms

EXPORTERS = ("dynamo", "torchscript")
MIN_OPSET = {"dynamo": 18, "torchscript": 13}  # NMS tail needs 13 (Unsqueeze/ReduceSum axes inputs)
MAX_SIDE = 4096  # largest height/width a dynamic export accepts


class ExportError(ValueError):
    """An export that cannot be done as asked (bad option, missing package, exporter failure)."""


def require_onnx() -> None:
    """Raise ExportError saying what to install when onnx/onnxscript are missing."""
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'detector[export]'"
        )


def _export_graph(
    wrapper: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    exporter: str,
    opset: int,
    dynamic: bool,
) -> None:
    """Run the chosen torch exporter into `path` (boxes and scores outputs)."""
    kwargs: dict = {}
    if dynamic and exporter == "dynamo":
        dim = torch.export.Dim
        kwargs["dynamic_shapes"] = (
            {
                0: dim("batch", min=1, max=1024),
                2: 32 * dim("height_32", min=1, max=MAX_SIDE // 32),
                3: 32 * dim("width_32", min=1, max=MAX_SIDE // 32),
            },
        )
    elif dynamic:
        kwargs["dynamic_axes"] = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            DENSE_OUTPUTS[0]: {0: "batch", 1: "anchors"},
            DENSE_OUTPUTS[1]: {0: "batch", 1: "anchors"},
        }
    # Both exporters print progress and raise warnings about our own shape checks
    # (which the trace specialises, correctly, to multiples of 32); keep the CLI quiet.
    quiet = logging.getLogger("torch")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                dynamo=exporter == "dynamo",
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(DENSE_OUTPUTS),
                external_data=False,
                **kwargs,
            )
    finally:
        quiet.setLevel(level)


def write_onnx(
    wrapper: torch.nn.Module,
    out: str | Path,
    *,
    metadata: ExportMetadata,
    exporter: str = "dynamo",
    opset: int = 18,
    transform: Callable[[Any], Any] | None = None,
) -> Path:
    """Export `wrapper` (a `DecodedDetector`) to `out` atomically.

    Args:
        wrapper: eval-mode module images [B, 3, H, W] -> (boxes, scores).
        out: destination .onnx; its folder must exist.
        metadata: what goes into `metadata_props`; its `image_size`, `batch`,
            `dynamic`, `nms` and thresholds also shape the graph.
        exporter: "dynamo" (torch.onnx.export(dynamo=True)) or "torchscript" (dynamo=False).
        opset: ONNX opset version.
        transform: rewrites the dense graph (onnx.ModelProto -> onnx.ModelProto) before the
            NMS tail and metadata go in: INT8 quantization (`detector.export.int8`).

    Returns:
        The written path.

    Raises:
        ExportError: a missing package, an unsupported option, or the exporter failed.
    """
    require_onnx()
    import onnx

    if exporter not in EXPORTERS:
        raise ExportError(f"--exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if opset < MIN_OPSET[exporter]:
        raise ExportError(
            f"--opset {opset}: the {exporter} exporter needs opset >= {MIN_OPSET[exporter]}"
        )
    size = metadata.image_size
    batch = 2 if metadata.dynamic and exporter == "dynamo" else metadata.batch
    device = next(wrapper.parameters()).device
    example = torch.full((batch, 3, size, size), float(PAD_VALUE), device=device)
    example[:, :, size // 4 : size // 2] = 200.0  # not constant: nothing data-dependent is folded
    with tempfile.TemporaryDirectory(prefix="detector-export-") as tmp:
        raw_path = Path(tmp) / "graph.onnx"
        try:
            _export_graph(
                wrapper, example, raw_path, exporter=exporter, opset=opset, dynamic=metadata.dynamic
            )
        except Exception as exc:  # the exporters raise many types; report the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"torch.onnx.export ({exporter}) failed: {first}") from exc
        model = onnx.load(str(raw_path))
    if transform is not None:
        model = transform(model)
    if metadata.nms:
        append_nms(
            model,
            score_threshold=metadata.score_threshold,
            iou_threshold=metadata.iou_threshold,
            max_det=metadata.max_det,
            num_classes=len(metadata.names),
        )
    metadata.opset = opset
    onnx.helper.set_model_props(model, metadata.to_props())
    model.producer_name = "detector"
    model.producer_version = metadata.detector_version
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    return write_atomic(out, lambda handle: handle.write(data))
