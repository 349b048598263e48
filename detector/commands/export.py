"""`detector export`: a checkpoint to ONNX (or TorchScript), verified against the checkpoint.

    detector export runs/train/exp/weights/best.pt        # best.onnx beside it, verified
    detector export best.pt --nms --out deploy/best-nms.onnx --data configs/voc.yaml
    detector export best.pt --dynamic --half --no-verify  # fp16, any batch and size
    detector export best.pt --format torchscript
    detector export best.pt --int8 --data configs/shapes.yaml  # INT8 for CPUs, AP drop checked
    detector detect best.onnx video.mp4 --out out/        # runs on ONNX Runtime

The graph takes RGB 0..255 letterboxed [B, 3, S, S] (normalisation inside) and
outputs boxes [B, A, 4] xyxy input px and scores [B, A, C]; with --nms,
detections [B, max_det, 6] (x1 y1 x2 y2 score label) and num_detections [B].
--verify (default) prints the difference table and exits 1 outside tolerance.
--int8 quantizes the graph (ONNX Runtime static QDQ, calibrated on --data's training
images through the inference letterbox; decode and NMS stay float, docs/export.md);
its verification is the AP drop on --data's val split against the checkpoint.
"""

from __future__ import annotations

import sys

import click

from detector.defaults import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET, DEFAULT_SCORE_THRESHOLD


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["onnx", "torchscript"]),
    default="onnx",
    show_default=True,
    help="Exported file format.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Output file (default: the checkpoint's path with .onnx / .torchscript).",
)
@click.option(
    "--image-size",
    type=int,
    default=None,
    help="Input side S, a multiple of 32 (default: the checkpoint's).",
)
@click.option("--dynamic", is_flag=True, help="Dynamic batch, height and width (multiples of 32).")
@click.option(
    "--batch", type=int, default=1, show_default=True, help="Static batch size (without --dynamic)."
)
@click.option(
    "--half",
    is_flag=True,
    help="fp16 weights and activations (for GPU runtimes); decode stays fp32.",
)
@click.option(
    "--int8",
    is_flag=True,
    help="INT8 weights and activations (ONNX Runtime static QDQ; needs --data for calibration).",
)
@click.option(
    "--calibration-images",
    type=int,
    default=128,
    show_default=True,
    help="--int8: training images of --data that set the activation ranges.",
)
@click.option(
    "--calibration-seed",
    type=int,
    default=0,
    show_default=True,
    help="--int8: seed drawing the calibration images.",
)
@click.option(
    "--nms", is_flag=True, help="Class-aware ONNX NonMaxSuppression in the graph (ONNX only)."
)
@click.option(
    "--conf",
    "score_threshold",
    type=float,
    default=DEFAULT_SCORE_THRESHOLD,
    show_default=True,
    help="Score threshold: with --nms the default of the graph's score_threshold input "
    "(else the default stored in the metadata).",
)
@click.option(
    "--iou",
    "iou_threshold",
    type=float,
    default=DEFAULT_IOU_THRESHOLD,
    show_default=True,
    help="NMS IoU threshold (with --nms the default of the graph's input).",
)
@click.option(
    "--max-det",
    type=int,
    default=DEFAULT_MAX_DET,
    show_default=True,
    help="Detections per image with --nms.",
)
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version.")
@click.option(
    "--exporter",
    type=click.Choice(["dynamo", "torchscript"]),
    default="dynamo",
    show_default=True,
    help=(
        "torch.onnx.export(dynamo=True) or the legacy TorchScript-based dynamo=False "
        "(docs/export.md)."
    ),
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where to export and verify: cpu | cuda | auto.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Run the file against the checkpoint and exit 1 outside the tolerances.",
)
@click.option(
    "--data",
    "data_config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Verify on this config's val split and compare COCO AP (default: synthetic "
    "images); --int8 calibrates on its training split.",
)
def export(
    checkpoint: str,
    file_format: str,
    out: str | None,
    image_size: int | None,
    dynamic: bool,
    batch: int,
    half: bool,
    int8: bool,
    calibration_images: int,
    calibration_seed: int,
    nms: bool,
    score_threshold: float,
    iou_threshold: float,
    max_det: int,
    opset: int,
    exporter: str,
    device: str,
    verify: bool,
    data_config: str | None,
) -> None:
    """Export CHECKPOINT to ONNX or TorchScript and verify the file against it."""
    from detector.checkpoint import CheckpointError
    from detector.config import ConfigError
    from detector.export import ExportError, ExportOptions, export_checkpoint

    options = ExportOptions(
        format=file_format,
        out=out,
        image_size=image_size,
        dynamic=dynamic,
        batch=batch,
        half=half,
        nms=nms,
        opset=opset,
        exporter=exporter,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_det=max_det,
        device=device,
        int8=int8,
        data_config=data_config,
        calibration_images=calibration_images,
        calibration_seed=calibration_seed,
    )
    try:
        result = export_checkpoint(checkpoint, options)
    except (ExportError, CheckpointError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    meta = result.metadata
    size = "dynamic" if meta.dynamic else f"{meta.batch}x3x{meta.image_size}x{meta.image_size}"
    click.echo(
        f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB, {meta.precision}, "
        f"input {size}, "
        f"outputs {', '.join(meta.output_names)}, {meta.exporter}) in {result.seconds:.1f} s"
    )
    if meta.precision == "int8":
        click.echo(f"int8: {meta.quantization}")
    if not verify:
        return
    from detector.export.verify import verify_export

    try:
        report = verify_export(result.path, checkpoint, data_config=data_config, device=device)
    except (CheckpointError, ConfigError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(f"verify: {exc}") from None
    click.echo(report.table())
    if not report.passed:
        sys.exit(1)
