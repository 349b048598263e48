"""The Python inference API: `Detector` turns images into per-image `Detections`.

    from detector import Detector
    det = Detector.from_checkpoint("runs/train/exp/weights/best.pt", device="cuda", half=True)
    result = det("photo.jpg")                         # one Detections
    results = det([frame_bgr, frame_bgr2])            # numpy arrays are BGR (OpenCV) by default
    results = det(batch_rgb, color="rgb")             # uint8 [B, H, W, 3] RGB
    result.boxes, result.scores, result.labels, result.label_names, result.to_dict()
    det = Detector.from_checkpoint("best.onnx")       # a `detector export` file, on ONNX Runtime
    det = Detector.from_checkpoint("best.pt", slicing=SlicingOptions(size=640))  # large images

Boxes are float32 xyxy pixels in the original image. Preprocessing (letterbox,
colour flip) runs on the model's device; results are copied to the host once
per batch, the only host-device synchronisation in `predict_frames`. Only the
forward differs between a checkpoint and an exported file (a backend,
detector/inference/backends.py); letterbox, selection and outputs are shared.
With `slicing`, images go through the model as native-resolution tiles, merged
across tiles (detector/inference/slicing.py), into the same `Detections`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector import defaults
from detector.data.letterbox import Letterbox, boxes_to_original
from detector.inference.backends import InferenceBackend, Selection, TorchBackend, resolve_device
from detector.inference.detections import Detections
from detector.inference.preprocess import preprocess_batch
from detector.inference.slicing import check_slicing, predict_sliced_rows, slice_batch_size
from detector.model import precision

log = logging.getLogger(__name__)


def _precision(half: bool | str, device: torch.device) -> torch.dtype | None:
    """`half_dtype`, with a warning when half precision was asked for off CUDA."""
    dtype = precision.half_dtype(half, device)
    if dtype is None and half not in (False, None, "fp32"):
        log.warning("half precision is only used on CUDA; running fp32 on %s", device)
    return dtype


def _as_image(item: np.ndarray, index: int) -> np.ndarray:
    """Validate one input array and bring grey/alpha images to 3 channels (same order)."""
    if not isinstance(item, np.ndarray):
        raise TypeError(
            f"input {index}: expected a path or a numpy array, got {type(item).__name__}"
        )
    if item.dtype != np.uint8:
        raise ValueError(f"input {index}: expected a uint8 image, got dtype {item.dtype}")
    if item.ndim == 2:
        return np.repeat(item[:, :, None], 3, axis=2)
    if item.ndim == 3 and item.shape[2] == 4:
        return item[:, :, :3]
    if item.ndim == 3 and item.shape[2] == 3:
        return item
    raise ValueError(
        f"input {index}: expected [H, W], [H, W, 3] or [H, W, 4], got {list(item.shape)}"
    )


class Detector:
    """A loaded detector with its thresholds; call it on images.

    Attributes:
        class_names: every class name, index = label (also `names`, the public name).

    Args:
        model: a model from a checkpoint (run by `TorchBackend`), or a backend of an
            exported file (`detector.inference.exported.load_exported_backend`).
        names: class names, index = label (kept as `class_names`).
        image_size: square network input side.
        device: where the model lives.
        half: False, True/"fp16" or "bf16": autocast precision on CUDA.
        score_threshold, iou_threshold, max_det: postprocessing.
        classes: keep only these classes (names or indices); None keeps all.
        compile: wrap the forward in `torch.compile`.
        slicing: sliced inference settings (`detector.defaults.SlicingOptions`), or None
            for one letterboxed pass per image.
    """

    def __init__(
        self,
        model: torch.nn.Module | InferenceBackend,
        *,
        names: Sequence[str],
        image_size: int,
        device: torch.device | str = "cpu",
        half: bool | str = False,
        score_threshold: float = defaults.DEFAULT_SCORE_THRESHOLD,
        iou_threshold: float = defaults.DEFAULT_IOU_THRESHOLD,
        max_det: int = defaults.DEFAULT_MAX_DET,
        classes: Sequence[str | int] | None = None,
        compile: bool = False,
        slicing: defaults.SlicingOptions | None = None,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {max_det}")
        if isinstance(model, torch.nn.Module):
            resolved = resolve_device(device)
            backend: InferenceBackend = TorchBackend(
                model, device=resolved, autocast_dtype=_precision(half, resolved), compile=compile
            )
        else:  # an exported file's backend (detector/inference/exported.py)
            backend = model
        if backend.fixed_size is not None and int(image_size) != backend.fixed_size:
            raise ValueError(
                f"image_size {image_size}: this model was exported for {backend.fixed_size} only"
            )
        # Only the forward differs between backends; preprocessing and selection are shared.
        self.backend = backend
        self.device = backend.device
        self.model = getattr(backend, "model", None)  # the nn.Module of a checkpoint, else None
        self.autocast_dtype = getattr(backend, "autocast_dtype", None)
        self.class_names = list(names)
        self.image_size = int(image_size)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_det = int(max_det)
        self.class_ids = self._class_ids(classes)
        self.slicing = slicing
        self.slice_batch = 0
        if slicing is not None:
            strides = getattr(backend, "strides", None) or backend.metadata.strides
            check_slicing(slicing, max_stride=max(strides), fixed_size=backend.fixed_size)
            source = str(getattr(backend, "path", "the model"))
            self.slice_batch = slice_batch_size(slicing, backend, source)

    @property
    def names(self) -> list[str]:
        """The public name of `class_names` (the README's): index = label."""
        return self.class_names

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        half: bool | str | None = None,
        score_threshold: float = defaults.DEFAULT_SCORE_THRESHOLD,
        iou_threshold: float = defaults.DEFAULT_IOU_THRESHOLD,
        max_det: int = defaults.DEFAULT_MAX_DET,
        classes: Sequence[str | int] | None = None,
        compile: bool = False,
        slicing: defaults.SlicingOptions | None = None,
    ) -> Detector:
        """Load a checkpoint written by training, or a file `detector export` wrote.

        `path` ending in `.onnx` runs on ONNX Runtime and `.torchscript` on
        TorchScript; names, input size and precision then come from the file's
        metadata (`half` and `compile` apply to checkpoints only).

        `half=None` (the default) predicts at the precision the checkpoint was
        trained with, as validation and `detector evaluate` do: on CUDA autocast at
        `train.amp_dtype` when `train.amp`, else fp32 (docs/internals.md, Precision).

        Raises `CheckpointError` (missing, corrupt, wrong content; for exported
        files its subclass `ExportedModelError`) naming the file.
        """
        from detector.inference.exported import is_exported_path, open_exported

        if is_exported_path(path):
            backend = open_exported(
                path,
                device=device,
                half=half,
                compile=compile,
                score_threshold=score_threshold,
                iou_threshold=iou_threshold,
                max_det=max_det,
            )
            return cls(
                backend,
                names=backend.metadata.names,
                image_size=backend.metadata.image_size,
                score_threshold=score_threshold,
                iou_threshold=iou_threshold,
                max_det=max_det,
                classes=classes,
                slicing=slicing,
            )
        from detector.checkpoint import load_checkpoint
        from detector.inference.backends import autotune_convolutions
        from detector.model.build import model_from_checkpoint

        resolved = resolve_device(device)
        autotune_convolutions(resolved)  # an inference entry point (never inside training)
        checkpoint = load_checkpoint(path)
        model, cfg = model_from_checkpoint(checkpoint, resolved)
        if half is None:  # as trained; off CUDA that is fp32, silently (nothing was asked)
            trained = precision.trained_half(cfg.train)
            half = trained if precision.half_dtype(trained, resolved) is not None else False
        return cls(
            model,
            names=list(checkpoint["names"]),
            image_size=int(checkpoint["image_size"]),
            device=resolved,
            half=half,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_det=max_det,
            classes=classes,
            compile=compile,
            slicing=slicing,
        )

    def _class_ids(self, classes: Sequence[str | int] | None) -> torch.Tensor | None:
        if classes is None:
            return None
        ids = []
        for item in classes:
            if isinstance(item, str) and not item.isdigit():
                if item not in self.class_names:
                    raise ValueError(
                        f"unknown class {item!r}; known: {', '.join(self.class_names)}"
                    )
                ids.append(self.class_names.index(item))
            else:
                index = int(item)
                if not 0 <= index < len(self.class_names):
                    raise ValueError(
                        f"class index {index} out of range 0..{len(self.class_names) - 1}"
                    )
                ids.append(index)
        return torch.tensor(sorted(set(ids)), dtype=torch.int64, device=self.device)

    def __call__(self, inputs: Any, color: str = "bgr") -> Detections | list[Detections]:
        """Detect objects in a path, an array, a list of those or a batch array.

        Args:
            inputs: a path (str/Path); a uint8 array [H, W, 3] (or [H, W] grey,
                [H, W, 4] with alpha); a list of paths/arrays; or a uint8 batch
                [B, H, W, 3].
            color: channel order of the arrays: "bgr" (OpenCV, default) or "rgb".
                Files are decoded by the package and need no hint.

        Returns:
            One Detections for a single path/array, else a list in input order.
        """
        single = isinstance(inputs, (str, Path)) or (
            isinstance(inputs, np.ndarray) and inputs.ndim in (2, 3)
        )
        items = [inputs] if single else list(inputs)
        if not items:
            return []
        from detector.data.images import read_image_rgb  # imported here: only paths need it

        images, paths = [], []
        for index, item in enumerate(items):
            if isinstance(item, (str, Path)):
                rgb = read_image_rgb(item)
                # Files are RGB; bring them to the caller's order so one batch has one order.
                images.append(rgb[:, :, ::-1] if color == "bgr" else rgb)
                paths.append(str(item))
            else:
                images.append(_as_image(item, index))
                paths.append(None)
        results = self.predict_frames(images, color=color)
        for result, path in zip(results, paths, strict=True):
            result.path = path
        return results[0] if single else results

    def track(self, source: Any, **tracker_options: Any) -> Any:
        """Yield (frame, TrackedDetections) over a video, camera, stream or folder.

        A thin entry to `detector.tracking.stream.track_source`; `tracker_options`
        go to `ByteTracker` (e.g. `track_buffer=3.0`, `high_threshold=0.6`).
        """
        from detector.tracking.stream import track_source

        return track_source(self, source, **tracker_options)

    @torch.inference_mode()
    def predict_frames(self, images: Sequence[np.ndarray], color: str = "bgr") -> list[Detections]:
        """Detect on a list of uint8 [H, W, 3] arrays (one batch on the device; sliced
        into tiles when `slicing` is set).

        Args:
            images: B arrays in `color` order; sizes may differ.
            color: "bgr" or "rgb".

        Returns:
            B Detections with boxes in each image's own pixel coordinates.
        """
        if self.slicing is None:
            rows = self.letterboxed_rows(images, color)
        else:
            if color not in ("bgr", "rgb"):
                raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
            checked = [_as_image(image, i) for i, image in enumerate(images)]
            rows = predict_sliced_rows(self, checked, color)
        sizes = [(image.shape[1], image.shape[0]) for image in images]
        return self._to_detections(rows, sizes)

    @torch.inference_mode()
    def predict_letterboxed(
        self, batch: torch.Tensor, letterboxes: Sequence[Letterbox]
    ) -> list[Detections]:
        """Detect on an already letterboxed batch (`preprocess_batch`, or a dataset loader's).

        Args:
            batch: uint8 or float [B, 3, S, S] RGB 0..255, S = `image_size`.
            letterboxes: B geometries that map boxes back to the original images.

        Returns:
            B Detections (their `path` is None).
        """
        rows = self._rows_to_original(self.select_rows(batch), letterboxes)
        return self._to_detections(rows, [(lb.orig_width, lb.orig_height) for lb in letterboxes])

    def letterboxed_rows(
        self, images: Sequence[np.ndarray], color: str, *, on_host: bool = False
    ) -> list[torch.Tensor]:
        """One letterboxed pass: rows [K, 6] (x1, y1, x2, y2, score, label) per image, on the
        device, boxes in original-image pixels. `on_host`: resize on the CPU and upload the
        small batch only (sliced inference's full pass: a huge image never goes to the GPU)."""
        where = torch.device("cpu") if on_host else self.device
        batch, letterboxes = preprocess_batch(images, self.image_size, where, color=color)
        return self._rows_to_original(self.select_rows(batch), letterboxes)

    def select_rows(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Forward + selection of a network-input batch: rows [K, 6] (x1, y1, x2, y2, score,
        label) per image, on the device, boxes in network-input pixels."""
        # The class filter goes into the selection, before NMS and max_det, so other
        # classes never take the places of the ones asked for; an --nms graph gets the
        # selection as inputs (old --nms files: after their NMS, see NMSOutput.select).
        selection = Selection(
            self.score_threshold, self.iou_threshold, self.max_det, self.class_ids
        )
        output = self.backend.forward(batch.to(self.device), selection)
        per_image = output.select(
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_det=self.max_det,
            classes=self.class_ids,
        )
        return [
            torch.cat(
                [
                    dets["boxes"].float(),
                    dets["scores"].float()[:, None],
                    dets["labels"].float()[:, None],
                ],
                dim=1,
            )
            for dets in per_image
        ]

    @staticmethod
    def _rows_to_original(
        rows: list[torch.Tensor], letterboxes: Sequence[Letterbox]
    ) -> list[torch.Tensor]:
        return [
            torch.cat([boxes_to_original(row[:, :4], lb), row[:, 4:]], dim=1)
            for row, lb in zip(rows, letterboxes, strict=True)
        ]

    def _to_detections(
        self, rows: list[torch.Tensor], sizes: Sequence[tuple[int, int]]
    ) -> list[Detections]:
        """Rows [K, 6] per image -> Detections, with one device->host copy for the whole batch."""
        # One device->host copy for the whole batch: the sync that hands results out.
        host = torch.cat(rows).cpu().numpy() if rows else np.zeros((0, 6), np.float32)
        slicing = self.slicing.to_dict() if self.slicing is not None else None
        results, start = [], 0
        for row, (width, height) in zip(rows, sizes, strict=True):
            part = host[start : start + len(row)]
            start += len(row)
            labels_np = part[:, 5].astype(np.int64)
            results.append(
                Detections(
                    boxes=np.ascontiguousarray(part[:, :4], dtype=np.float32),
                    scores=np.ascontiguousarray(part[:, 4], dtype=np.float32),
                    labels=labels_np,
                    label_names=[self.class_names[i] for i in labels_np],
                    width=width,
                    height=height,
                    slicing=slicing,
                )
            )
        return results
