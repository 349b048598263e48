"""The inference settings and their defaults, written once.

    from detector.defaults import InferenceOptions
    options = InferenceOptions(score_threshold=0.4, classes=("person",), out_dir="out/")
    detector = Detector.from_checkpoint("best.pt", **options.detector_settings())

`InferenceOptions` is the one options object of `detect` and `track` (`SlicingOptions`,
its sliced-inference part, also `evaluate`'s): their click
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

# Sliced inference (docs/slicing.md says how the merge default was chosen).
DEFAULT_SLICE_OVERLAP = 0.2  # fraction of a tile its neighbours share
DEFAULT_SLICE_MERGE = "nms"  # class-aware NMS; "nmm" fuses instead of dropping (docs/slicing.md)
DEFAULT_SLICE_MATCH_METRIC = "iou"  # or "ios": intersection over the smaller box
DEFAULT_SLICE_MATCH_THRESHOLD = 0.5


@dataclass(frozen=True)
class SlicingOptions:
    """Sliced inference: tiles at native resolution, boxes merged across tiles (docs/slicing.md).

    Checked against the model when a `Detector` takes them (`inference.slicing`).
    """

    size: int  # tile side in pixels: >= 32 and a multiple of the model's largest stride
    overlap: float = DEFAULT_SLICE_OVERLAP  # in [0, 1)
    full_image: bool = True  # add one letterboxed full-image pass (large objects)
    batch_size: int | None = None  # tiles per forward; None: sized for the device
    merge: str = DEFAULT_SLICE_MERGE
    match_metric: str = DEFAULT_SLICE_MATCH_METRIC
    match_threshold: float = DEFAULT_SLICE_MATCH_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the settings (what `--save-json` writes)."""
        return {
            "size": self.size,
            "overlap": self.overlap,
            "full_image": self.full_image,
            "batch_size": self.batch_size,
            "merge": self.merge,
            "match_metric": self.match_metric,
            "match_threshold": self.match_threshold,
        }


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
    slicing: SlicingOptions | None = None  # None: one letterboxed pass per image

    def detector_settings(self) -> dict[str, Any]:
        """The keywords of `Detector.from_checkpoint` these options set."""
        return {
            "device": self.device,
            "half": self.precision,
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_det": self.max_det,
            "classes": list(self.classes) if self.classes is not None else None,
            "compile": self.compile,
            "slicing": self.slicing,
        }
