"""The forward pass of a `Detector`, one backend per kind of model file.

    backend = TorchBackend(model, device=torch.device("cpu"))
    output = backend.forward(batch)      # DenseOutput(boxes [B, A, 4], scores [B, A, C])
    per_image = output.select(score_threshold=0.25, iou_threshold=0.45, max_det=300)

Every backend takes the letterboxed batch `preprocess_batch` builds (float or
uint8 [B, 3, S, S], RGB 0..255) and returns either a `DenseOutput` (the box and
class scores of every grid cell; `select_detections` does top-k, class filter
and NMS) or an `NMSOutput` (suppression already done inside an exported graph).
Preprocessing, this selection and the mapping back to the original image are
shared by all backends (detector/inference/predictor.py): only the forward
differs. The ONNX Runtime and TorchScript backends live in
detector/inference/exported.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from detector.model.decode import decode_boxes_scores, select_detections
from detector.model.fuse import count_batchnorms, fold_batchnorm
from detector.model.precision import autocast


@dataclass
class DenseOutput:
    """Decoded boxes and scores of every cell, before any selection.

    Attributes:
        boxes: float32 [B, A, 4] xyxy network-input pixels.
        scores: float32 [B, A, C] sigmoid(objectness) * sigmoid(class logit).
    """

    boxes: torch.Tensor
    scores: torch.Tensor

    def select(
        self,
        *,
        score_threshold: float,
        iou_threshold: float,
        max_det: int,
        classes: torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Top-k, class filter, class-aware NMS and `max_det`: B dicts {boxes, scores, labels}."""
        class_filter = {} if classes is None else {"classes": classes}
        return select_detections(
            self.boxes,
            self.scores,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_det=max_det,
            **class_filter,
        )


@dataclass
class NMSOutput:
    """Detections suppressed inside an exported graph (`detector export --nms`).

    Attributes:
        detections: float32 [B, D, 6] rows (x1, y1, x2, y2, score, label), by
            decreasing score; rows past `num_detections` are padding.
        num_detections: int64 [B] valid rows per image.
    """

    detections: torch.Tensor
    num_detections: torch.Tensor

    def select(
        self,
        *,
        score_threshold: float,
        iou_threshold: float,
        max_det: int,
        classes: torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """The graph's rows per image, with the caller's score, class and `max_det` filters.

        A graph with selection inputs already applied them (the backend fed the
        `Selection`), and this changes nothing; an old --nms file without those
        inputs used its exported settings, and here only stricter ones can apply.
        """
        per_image = []
        for rows, count in zip(self.detections.float(), self.num_detections.tolist(), strict=True):
            rows = rows[: int(count)]
            keep = rows[:, 4] >= score_threshold
            if classes is not None:
                keep &= torch.isin(rows[:, 5].long(), classes.to(rows.device))
            rows = rows[keep][:max_det]
            per_image.append(
                {"boxes": rows[:, :4], "scores": rows[:, 4], "labels": rows[:, 5].long()}
            )
        return per_image


BackendOutput = DenseOutput | NMSOutput


@dataclass(frozen=True)
class Selection:
    """What a `Detector` keeps, for a backend whose graph selects (an --nms export).

    Dense backends ignore it: `DenseOutput.select` applies the same settings.

    Attributes:
        score_threshold: kept when >=.
        iou_threshold: NMS IoU threshold.
        max_det: detections per image.
        classes: int64 class indices to keep, or None for all.
    """

    score_threshold: float
    iou_threshold: float
    max_det: int
    classes: torch.Tensor | None = None


class InferenceBackend(Protocol):
    """What a `Detector` needs from a backend.

    Attributes:
        device: where `preprocess_batch` should build the batch.
        fixed_size: the only input side the backend accepts (static export), or None.
    """

    device: torch.device
    fixed_size: int | None

    def forward(self, batch: torch.Tensor, selection: Selection | None = None) -> BackendOutput: ...


def autotune_convolutions(device: torch.device) -> None:
    """Let cuDNN time and pick its fastest kernels on CUDA (a process-wide, lasting setting).

    The input shape is fixed (S x S), so the tuned kernels are reused every call. Called
    where inference commands start (`Detector.from_checkpoint`, `detector evaluate`),
    never by the backend itself: validation builds a backend inside training, where
    `train.deterministic` has turned autotuning off for the rest of the run. Left off
    when cuDNN is set deterministic.
    """
    if device.type == "cuda" and not torch.backends.cudnn.deterministic:
        torch.backends.cudnn.benchmark = True


class TorchBackend:
    """A PyTorch model (from a checkpoint): forward in eager mode, optionally compiled.

    Args:
        model: a `YOLODetector` (has `strides`); moved to `device` in eval mode.
        device: where it runs.
        autocast_dtype: fp16/bf16 autocast on CUDA, or None for fp32.
        compile: wrap the forward in `torch.compile`.
        fold_bn: run a copy with BatchNorm folded into the convolutions
            (`detector.model.fuse`): the same function, one op fewer per conv.
            `model` itself stays as it is (training keeps updating its statistics).
    """

    fixed_size = None  # the model takes any multiple of 32

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        compile: bool = False,
        fold_bn: bool = True,
    ) -> None:
        self.device = device
        self.model = model.to(device).eval()
        self.autocast_dtype = autocast_dtype
        self.strides: Sequence[int] = model.strides
        # Every path (Detector, detect, validation, evaluate) runs the same folded
        # network, so the AP training reports is the AP the API reproduces.
        network = (
            fold_batchnorm(self.model) if fold_bn and count_batchnorms(self.model) else self.model
        )
        self._forward = torch.compile(network) if compile else network

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor, selection: Selection | None = None) -> DenseOutput:
        """Network forward (autocast when asked) + the dense grid decode in fp32 (`selection`:
        unused, the dense output is selected afterwards)."""
        with autocast(self.device, self.autocast_dtype):
            raw = self._forward(batch)
        # Decode in fp32: scores and box corners of large images need the precision.
        boxes, scores = decode_boxes_scores(
            raw.float(), strides=self.strides, input_size=tuple(batch.shape[-2:])
        )
        return DenseOutput(boxes, scores)


def resolve_device(device: str | torch.device) -> torch.device:
    """Resolve "auto" to cuda when available, else cpu; "cuda" without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return resolved
