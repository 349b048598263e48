"""What an exported file says about itself: names, input size, thresholds, provenance.

    meta = ExportMetadata(names=["cat", "dog"], image_size=320, ...)
    props = meta.to_props()                     # {str: str}: ONNX metadata_props
    meta = ExportMetadata.from_props(props, source="model.onnx")   # ExportedModelError if not ours

The same string map goes into an ONNX file's `metadata_props` and, as
`detector.json`, into a TorchScript file's extra files, so an exported file is
self-describing: `Detector.from_checkpoint("model.onnx")` needs nothing else.
Lists are JSON; every other value is its plain string. No onnx import: the runtime
backends read it with onnxruntime alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from detector.checkpoint import CheckpointError
from detector.data.letterbox import PAD_VALUE
from detector.defaults import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET, DEFAULT_SCORE_THRESHOLD

MARKER_KEY = "detector.export"  # present in every file we write; its value is the format version
FORMAT_VERSION = "1"
TORCHSCRIPT_EXTRA_FILE = "detector.json"

DENSE_OUTPUTS = ("boxes", "scores")
NMS_OUTPUTS = ("detections", "num_detections")
# Inputs of an --nms graph with the exported defaults (older --nms files have none).
NMS_INPUTS = ("score_threshold", "iou_threshold", "max_det", "class_mask")
INPUT_NAME = "images"
PRECISIONS = ("fp32", "fp16", "int8")


class ExportedModelError(CheckpointError):
    """An exported model file that is missing, corrupt, foreign, or cannot run here.

    A `CheckpointError`, so every command that reports a bad checkpoint in one
    line reports a bad exported file the same way.
    """


@dataclass
class ExportMetadata:
    """The self-description of an exported model.

    Attributes:
        names: class names, index = label.
        image_size: input side S the model was exported (and verified) at.
        strides: grid strides of the model (informational; the decode is in the graph).
        dynamic: batch, height and width are dynamic (multiples of 32).
        batch: the static batch size (1 when dynamic: any batch works).
        nms: NonMaxSuppression is in the graph (outputs `detections`, `num_detections`).
        precision: "fp32" or "fp16" weights and activations, or "int8" (QDQ: int8
            weights and 8-bit activations, the decode tail in float; detector/export/int8.py).
        score_threshold, iou_threshold, max_det: the graph's NMS settings with `nms`,
            else the defaults recommended with the file.
        mean, std: RGB normalisation (0..1 units) applied inside the graph.
        detector_version: package version that wrote the file.
        checkpoint_sha256: hash of the source checkpoint file.
        exporter: which torch exporter built the graph, with the torch version.
        opset: ONNX opset (0 for TorchScript).
        calibration_images: int8: training images the activation ranges came from (else 0).
        calibration_seed: int8: the seed that drew them.
        quantization: int8: how (format, types, reduce_range and why, nodes left in float).
    """

    names: list[str]
    image_size: int
    strides: list[int] = field(default_factory=lambda: [8, 16, 32])
    dynamic: bool = False
    batch: int = 1
    nms: bool = False
    precision: str = "fp32"
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_det: int = DEFAULT_MAX_DET
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    detector_version: str = ""
    checkpoint_sha256: str = ""
    exporter: str = ""
    opset: int = 0
    calibration_images: int = 0
    calibration_seed: int = 0
    quantization: str = ""

    @property
    def output_names(self) -> tuple[str, str]:
        return NMS_OUTPUTS if self.nms else DENSE_OUTPUTS

    def to_props(self) -> dict[str, str]:
        """The string map stored in the file (lists as JSON, booleans as true/false)."""
        props = {MARKER_KEY: FORMAT_VERSION}
        for key, value in self.__dict__.items():
            if isinstance(value, bool):
                props[key] = "true" if value else "false"
            elif isinstance(value, list):
                props[key] = json.dumps(value)
            else:
                props[key] = str(value)
        props["input"] = (
            f"{INPUT_NAME}: float32 RGB 0..255 [B, 3, H, W], letterboxed with grey {PAD_VALUE}"
        )
        props["outputs"] = (
            "detections [B, max_det, 6] (x1 y1 x2 y2 score label, input px), "
            "num_detections int64 [B]"
            if self.nms
            else "boxes [B, A, 4] xyxy input px, scores [B, A, C]"
        )
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], *, source: str) -> ExportMetadata:
        """Parse `to_props` output; ExportedModelError naming `source` if it is not ours."""
        if MARKER_KEY not in props:
            raise ExportedModelError(
                f"{source}: not a detector export (no '{MARKER_KEY}' metadata); "
                "write one with `detector export`"
            )
        if props[MARKER_KEY] != FORMAT_VERSION:
            raise ExportedModelError(
                f"{source}: export format {props[MARKER_KEY]!r} is not the one this version reads "
                f"({FORMAT_VERSION})"
            )
        values: dict[str, Any] = {}
        template = cls(names=[], image_size=0)  # each field's type, from its default
        try:
            for name in cls.__dataclass_fields__:
                if name not in props:
                    if name in ("names", "image_size"):
                        raise KeyError(name)
                    continue
                text = props[name]
                kind = type(getattr(template, name))
                if kind is bool:
                    if text not in ("true", "false"):
                        raise ValueError(f"{name}={text!r}")
                    values[name] = text == "true"
                elif kind is list:
                    values[name] = json.loads(text)
                elif kind in (int, float):
                    values[name] = kind(text)
                else:
                    values[name] = text
        except (KeyError, ValueError) as exc:
            raise ExportedModelError(
                f"{source}: detector metadata is missing or malformed ({exc})"
            ) from None
        meta = cls(**values)
        if not meta.names or not all(isinstance(n, str) for n in meta.names):
            raise ExportedModelError(f"{source}: detector metadata has no class names")
        if meta.image_size <= 0 or meta.image_size % 32:
            raise ExportedModelError(
                f"{source}: metadata image_size {meta.image_size} is not a multiple of 32"
            )
        if meta.precision not in PRECISIONS:
            raise ExportedModelError(
                f"{source}: metadata precision {meta.precision!r} is not one of "
                f"{', '.join(PRECISIONS)}"
            )
        return meta
