"""From a checkpoint to a self-describing exported file: options, checks, one call.

    from detector.export import ExportOptions, export_checkpoint
    result = export_checkpoint("best.pt", ExportOptions(format="onnx", out="best.onnx", nms=True))
    result.path, result.metadata

Every option is checked before anything is written, and the file appears only
when complete (temp file + os.replace), so a failed export leaves nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import torch

from detector.defaults import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET, DEFAULT_SCORE_THRESHOLD
from detector.export.files import file_sha256
from detector.export.graph import DecodedDetector
from detector.export.metadata import ExportMetadata
from detector.export.onnx_export import EXPORTERS, ExportError, require_onnx, write_onnx

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}


@dataclass
class ExportOptions:
    """What `detector export` was asked for (see its --help for each option)."""

    format: str = "onnx"
    out: str | Path | None = None  # default: the checkpoint's path with .onnx / .torchscript
    image_size: int | None = None  # default: the checkpoint's
    dynamic: bool = False
    batch: int = 1
    half: bool = False
    nms: bool = False
    opset: int = 18
    exporter: str = "dynamo"
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_det: int = DEFAULT_MAX_DET
    device: str = "cpu"
    int8: bool = False
    data_config: str | Path | None = None  # --int8: calibration images from its training split
    calibration_images: int = 128
    calibration_seed: int = 0


@dataclass
class ExportResult:
    """The written file, its metadata, and how long the export took."""

    path: Path
    metadata: ExportMetadata
    seconds: float


def _package_version() -> str:
    try:
        return importlib_metadata.version("detector")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def check_options(checkpoint: str | Path, options: ExportOptions) -> Path:
    """Validate `options` for `checkpoint`; returns the output path, or ExportError naming it."""
    if options.format not in FORMATS:
        raise ExportError(f"--format {options.format!r}: choose one of {', '.join(FORMATS)}")
    if options.exporter not in EXPORTERS:
        raise ExportError(f"--exporter {options.exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if options.image_size is not None and (options.image_size <= 0 or options.image_size % 32):
        raise ExportError(f"--image-size {options.image_size}: must be a positive multiple of 32")
    if options.batch < 1:
        raise ExportError(f"--batch {options.batch}: must be >= 1")
    if options.max_det < 1:
        raise ExportError(f"--max-det {options.max_det}: must be >= 1")
    if not 0.0 <= options.score_threshold <= 1.0:
        raise ExportError(f"--conf {options.score_threshold}: must be in [0, 1]")
    if not 0.0 < options.iou_threshold <= 1.0:
        raise ExportError(f"--iou {options.iou_threshold}: must be in (0, 1]")
    if options.int8:
        _check_int8(options)
    if options.nms and options.format != "onnx":
        raise ExportError(
            "--nms: NMS in the graph is ONNX only (the TorchScript file outputs boxes and scores)"
        )
    out = (
        Path(options.out)
        if options.out is not None
        else Path(checkpoint).with_suffix(SUFFIX[options.format])
    )
    if out.suffix != SUFFIX[options.format]:
        raise ExportError(
            f"--out {out}: --format {options.format} writes a {SUFFIX[options.format]} file"
        )
    if not out.parent.is_dir():
        raise ExportError(f"--out {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise ExportError(f"--out {out}: is a folder")
    if options.format == "onnx":
        require_onnx()
    return out


def _check_int8(options: ExportOptions) -> None:
    if options.format != "onnx":
        raise ExportError("--int8: INT8 quantization is ONNX only (ONNX Runtime's quantize_static)")
    if options.half:
        raise ExportError("--int8 and --half: choose one precision")
    if options.data_config is None:
        raise ExportError(
            "--int8 needs --data CONFIG: the calibration images come from its training split"
        )
    if options.calibration_images < 1:
        raise ExportError(f"--calibration-images {options.calibration_images}: must be >= 1")
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise ExportError("--int8 needs onnxruntime: pip install 'detector[export]'") from None


def _int8_transform(options: ExportOptions, metadata: ExportMetadata):
    """The `write_onnx` transform quantizing the graph; fills the calibration metadata."""
    from detector.config import load_config
    from detector.export.int8 import (
        LetterboxCalibrationReader,
        calibration_image_paths,
        quantization_settings,
        quantize_int8,
    )

    cfg = load_config(options.data_config)
    paths = calibration_image_paths(cfg.data, options.calibration_images, options.calibration_seed)
    reader = LetterboxCalibrationReader(paths, image_size=metadata.image_size, batch=metadata.batch)
    settings = quantization_settings()
    metadata.calibration_images = len(paths)
    metadata.calibration_seed = options.calibration_seed
    metadata.quantization = (
        f"onnxruntime quantize_static QDQ, per-channel {settings.weight_type} weights, "
        f"{settings.activation_type} activations, MinMax, reduce_range={settings.reduce_range} "
        f"({settings.reason}); float: decode tail and prediction convs; calibration: "
        f"{len(paths)} training images of {options.data_config}, seed {options.calibration_seed}"
    )

    def transform(model):
        try:
            return quantize_int8(model, reader, settings=settings)
        except Exception as exc:  # ORT raises many types; report the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"INT8 quantization failed: {first}") from exc

    return transform


def export_checkpoint(checkpoint: str | Path, options: ExportOptions) -> ExportResult:
    """Export `checkpoint` as `options` say.

    Raises:
        CheckpointError: the checkpoint is missing, corrupt or not ours.
        ExportError: a bad option, a missing package, or the exporter failed.
    """
    from detector.checkpoint import load_checkpoint
    from detector.inference.backends import resolve_device
    from detector.model.build import model_from_checkpoint

    out = check_options(checkpoint, options)
    ckpt = load_checkpoint(checkpoint)
    device = resolve_device(options.device)
    model, _ = model_from_checkpoint(ckpt, device)
    wrapper = DecodedDetector(model, half=options.half).eval()
    exporter_name = (
        (
            "torch.onnx.export(dynamo=True)"
            if options.exporter == "dynamo"
            else "torch.onnx.export(dynamo=False)"
        )
        if options.format == "onnx"
        else "torch.jit.trace"
    )
    metadata = ExportMetadata(
        names=list(ckpt["names"]),
        image_size=int(options.image_size or ckpt["image_size"]),
        strides=list(model.strides),
        dynamic=options.dynamic,
        batch=1 if options.dynamic else options.batch,
        nms=options.nms,
        precision="int8" if options.int8 else "fp16" if options.half else "fp32",
        score_threshold=options.score_threshold,
        iou_threshold=options.iou_threshold,
        max_det=options.max_det,
        mean=[float(v) for v in ckpt["mean"]],
        std=[float(v) for v in ckpt["std"]],
        detector_version=_package_version(),
        checkpoint_sha256=file_sha256(checkpoint),
        exporter=f"{exporter_name}, torch {torch.__version__}",
    )
    start = time.perf_counter()
    with torch.no_grad():
        if options.format == "onnx":
            transform = _int8_transform(options, metadata) if options.int8 else None
            path = write_onnx(
                wrapper,
                out,
                metadata=metadata,
                exporter=options.exporter,
                opset=options.opset,
                transform=transform,
            )
        else:
            from detector.export.torchscript_export import write_torchscript

            path = write_torchscript(wrapper, out, metadata=metadata)
    return ExportResult(path=path, metadata=metadata, seconds=time.perf_counter() - start)
