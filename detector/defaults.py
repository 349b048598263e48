"""The inference settings and their defaults, written once.

    from detector.defaults import InferenceOptions
    options = InferenceOptions(score_threshold=0.4, classes=("person",), out_dir="out/")
    detector = Detector.from_checkpoint("best.pt", **options.detector_settings())

`InferenceOptions` is the one options object of `detect` and `track`: their click
options take their defaults from it, `commands.detect.run_inference` runs one, and
`Detector` (`detector_settings`) gets its part. `Detector`, `export` (its --nms graph
and metadata), exported-file backends and the confusion-matrix plot take the
thresholds' defaults from here. A leaf that imports nothing, so the click commands
can use it without importing torch. Evaluation has its own thresholds
(`eval.score_threshold` etc. in detector/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_SCORE_THRESHOLD = 0.25  # the boxes a user is shown
DEFAULT_IOU_THRESHOLD = 0.45  # class-aware NMS
DEFAULT_MAX_DET = 300  # detections kept per image


@dataclass(frozen=True)
class InferenceOptions:
    """How `detect` / `track` run a detector over a source, and where the results go."""

    # The detector (`Detector.from_checkpoint`'s keywords: `detector_settings`).
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # None: the checkpoint's training precision; "fp16" / "bf16": autocast on CUDA; "fp32".
    precision: str | None = None
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_det: int = DEFAULT_MAX_DET
    classes: tuple[str, ...] | None = None  # names or indices (as text) to keep; None: all
    compile: bool = False  # torch.compile the model (checkpoints only)
    # The run (`inference.runner.run_detection`, the source and the outputs).
    out_dir: str | None = None  # annotated images, or the annotated video <name>.mp4
    json_path: str | None = None  # one JSON record per image/frame
    show: bool = False  # an OpenCV window
    serve_port: int | None = None  # MJPEG at http://serve_host:serve_port/
    serve_host: str = "127.0.0.1"
    batch_size: int = 1  # frames per forward for file sources (live sources use 1)
    draw: bool = True  # boxes on the written / shown / served frames
    timeout: float = 5.0  # seconds to open a camera/stream and to wait for its data
    max_image_pixels: int | None = None  # None: data.max_image_pixels' default

    def detector_settings(self) -> dict[str, Any]:
        """The keywords of `Detector.from_checkpoint` these options set."""
        return {"device": self.device, "half": self.precision,
                "score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
                "max_det": self.max_det,
                "classes": list(self.classes) if self.classes is not None else None,
                "compile": self.compile}
