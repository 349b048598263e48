"""`detector detect`: run a checkpoint on images, folders, videos, cameras or streams.

Usage:

    detector detect runs/train/exp/weights/best.pt video.mp4 --out out/        # out/video.mp4
    detector detect best.pt "photos/*.jpg" --out out/ --save-json out/dets.json
    detector detect best.pt 0 --show                    # webcam (needs OpenCV with a GUI)
    detector detect best.pt rtsp://cam.local/stream --serve 8080   # watch http://127.0.0.1:8080/
    detector detect best.pt 0 --serve 8080 --host 0.0.0.0          # reachable from the network
    detector detect best.pt video.mp4 --device cuda --half --batch 8 --out out/
    detector detect best.pt aerial.jpg --slice 640 --out out/      # large images, small objects
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from detector.commands.slicing_options import slice_options, slicing_from_cli
from detector.defaults import InferenceOptions


def _check_gui() -> None:
    """Fail fast when --show cannot work (opencv-python-headless has no windows)."""
    import cv2

    try:
        cv2.namedWindow("detector", cv2.WINDOW_NORMAL)
    except cv2.error:
        raise click.ClickException(
            "--show needs OpenCV with GUI support, but this OpenCV is headless "
            "(opencv-python-headless). Use --serve PORT to watch in a browser, or replace it: "
            "pip uninstall -y opencv-python-headless && pip install opencv-python"
        ) from None


DEFAULTS = InferenceOptions()


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("source")
@click.option(
    "--device", default=DEFAULTS.device, show_default=True, help="auto | cpu | cuda | cuda:N"
)
@click.option(
    "--conf",
    "score_threshold",
    type=click.FloatRange(0, 1),
    default=DEFAULTS.score_threshold,
    show_default=True,
    help="Score threshold.",
)
@click.option(
    "--iou",
    "iou_threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULTS.iou_threshold,
    show_default=True,
    help="NMS IoU threshold.",
)
@click.option(
    "--max-det",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_det,
    show_default=True,
    help="Most detections kept per image.",
)
@click.option(
    "--classes", default=None, help="Keep only these classes: names or indices, comma-separated."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=DEFAULTS.out_dir,
    help="Folder for annotated images, or the annotated video (<name>.mp4).",
)
@click.option(
    "--save-json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=DEFAULTS.json_path,
    help="JSON file with one record per image/frame.",
)
@click.option("--show", is_flag=True, help="Live window (needs OpenCV with GUI support).")
@click.option(
    "--serve",
    "serve_port",
    type=click.IntRange(0, 65535),
    default=DEFAULTS.serve_port,
    help="Publish the annotated stream as MJPEG on http://127.0.0.1:PORT/.",
)
@click.option(
    "--host",
    "serve_host",
    default=DEFAULTS.serve_host,
    show_default=True,
    help="Address --serve binds to. On a loopback address only requests for localhost "
    "are answered (DNS-rebinding guard); another address (0.0.0.0: all) answers "
    "anyone.",
)
@click.option(
    "--batch",
    "batch_size",
    type=click.IntRange(min=1),
    default=DEFAULTS.batch_size,
    show_default=True,
    help="Frames per forward pass for files (live sources always use 1).",
)
@click.option("--half", is_flag=True, help="fp16 autocast on CUDA (ignored on CPU).")
@click.option("--bf16", is_flag=True, help="bf16 autocast on CUDA (ignored on CPU).")
@click.option(
    "--fp32",
    is_flag=True,
    help="Full precision. Default: a checkpoint's training precision (bf16 AMP on "
    "CUDA unless trained without train.amp), as validation and evaluate use.",
)
@click.option(
    "--compile", "compile_model", is_flag=True, help="torch.compile the model (slow first frame)."
)
@click.option("--no-draw", is_flag=True, help="Write/serve frames without boxes drawn.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULTS.timeout,
    show_default=True,
    help="Seconds to open a camera/stream and to wait for stream data before reconnecting.",
)
@click.option(
    "--max-pixels",
    "max_image_pixels",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_image_pixels,
    help="Skip (and report) image files whose header claims more pixels "
    "[default: 100000000, as data.max_image_pixels].",
)
@slice_options
def detect(checkpoint: str, source: str, **cli_options: Any) -> None:
    """Detect objects in SOURCE with CHECKPOINT (a .pt, or an exported .onnx / .torchscript).

    SOURCE is an image, a folder, a glob ("imgs/*.jpg"), a video file, a webcam
    index (0) or an rtsp/rtmp/http(s) URL. Ctrl-C stops and finalises the outputs.
    """
    run_inference(checkpoint, source, options_from_cli(**cli_options))


def options_from_cli(
    *,
    device: str,
    score_threshold: float,
    iou_threshold: float,
    max_det: int,
    classes: str | None,
    out_dir: str | None,
    json_path: str | None,
    show: bool,
    serve_port: int | None,
    serve_host: str,
    batch_size: int,
    half: bool,
    bf16: bool,
    fp32: bool,
    compile_model: bool,
    no_draw: bool,
    timeout: float,
    max_image_pixels: int | None,
    slice_size: int | None,
    slice_overlap: float,
    slice_full: bool,
    slice_batch: int | None,
) -> InferenceOptions:
    """The `InferenceOptions` that `detect`'s (and `track`'s) click options spell.

    Raises:
        click.UsageError: --host without --serve; more than one of --half, --bf16, --fp32;
            a --slice-* option without --slice.
        click.ClickException: --show with a headless OpenCV.
    """
    if serve_host != DEFAULTS.serve_host and serve_port is None:
        raise click.UsageError("--host is the address of --serve PORT; give --serve too")
    if show:
        _check_gui()
    if half + bf16 + fp32 > 1:
        raise click.UsageError("give at most one of --half, --bf16 and --fp32")
    # None: the checkpoint's training precision (Detector.from_checkpoint, docs/internals.md).
    precision = "fp16" if half else "bf16" if bf16 else "fp32" if fp32 else None
    names = tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else None
    slicing = slicing_from_cli(
        slice_size=slice_size,
        slice_overlap=slice_overlap,
        slice_full=slice_full,
        slice_batch=slice_batch,
    )
    return InferenceOptions(
        device=device,
        precision=precision,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_det=max_det,
        classes=names,
        compile=compile_model,
        out_dir=out_dir,
        json_path=json_path,
        show=show,
        serve_port=serve_port,
        serve_host=serve_host,
        batch_size=batch_size,
        draw=not no_draw,
        timeout=timeout,
        max_image_pixels=max_image_pixels,
        slicing=slicing,
    )


def run_inference(
    checkpoint: str,
    source: str,
    options: InferenceOptions,
    *,
    make_stage: Callable[[Any, Any], Any] | None = None,
) -> None:
    """The body of `detect` (and of `track`, which passes `make_stage`).

    `make_stage(detector, opened_source)` returns an object with `__call__(frames,
    results) -> results`, `draw(image, result)` and `close() -> [outputs]`
    (`detector.tracking.stream.TrackingStage`); it runs on every frame.
    """
    from detector.checkpoint import CheckpointError
    from detector.inference.predictor import Detector
    from detector.inference.runner import StatusLine, run_detection
    from detector.inference.sinks import SinkError
    from detector.inference.sources import SourceError, open_source

    try:
        detector = Detector.from_checkpoint(checkpoint, **options.detector_settings())
        opened = open_source(
            source, timeout=options.timeout, max_image_pixels=options.max_image_pixels
        )
    except (CheckpointError, SourceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None

    try:
        stage = make_stage(detector, opened) if make_stage is not None else None
    except BaseException:
        opened.close()
        raise
    server = None
    serve_port, serve_host = options.serve_port, options.serve_host
    if serve_port is not None:
        from detector.inference.serve import MJPEGServer, is_loopback

        try:
            server = MJPEGServer(serve_port, host=serve_host).start()
        except OSError as exc:
            raise click.ClickException(
                f"--serve {serve_port} --host {serve_host}: cannot listen ({exc})"
            ) from None
        click.echo(f"serving the annotated stream at {server.url}", err=True)
        if not is_loopback(serve_host):
            click.echo(
                f"--host {serve_host}: not a loopback address; anyone who can reach it can watch",
                err=True,
            )
    hooks = {"transform": stage, "draw_fn": stage.draw} if stage is not None else {}
    stage_outputs: list[str] = []
    try:
        summary = run_detection(
            detector,
            opened,
            out_dir=options.out_dir,
            json_path=options.json_path,
            draw=options.draw,
            batch_size=options.batch_size,
            show=options.show,
            server=server,
            status=StatusLine(sys.stderr),
            **hooks,
        )
    except (SourceError, SinkError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        opened.close()
        if server is not None:
            server.close()
        if stage is not None:
            stage_outputs = stage.close()

    lines = [
        f"{summary.frames} frames, {summary.detections} detections in {summary.seconds:.1f} s "
        f"({summary.fps:.1f} FPS)"
        + (f", {summary.dropped} live frames dropped" if summary.dropped else "")
    ]
    if summary.failed:
        lines.append(
            f"{len(summary.failed)} unreadable: "
            + "; ".join(f"{p} ({r})" for p, r in summary.failed)
        )
    if summary.interrupted:
        lines.append("interrupted: outputs finalised")
    if stage is not None and hasattr(stage, "summary"):
        lines.append(stage.summary())
    lines += [f"wrote {path}" for path in summary.outputs + stage_outputs]
    click.echo("\n".join(lines))
    if summary.interrupted:
        sys.exit(130)  # the shell convention for Ctrl-C, after the outputs were finalised
