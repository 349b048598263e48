"""Backends for files `detector export` wrote: ONNX Runtime (.onnx) and TorchScript (.torchscript).

    backend = load_exported_backend("model.onnx", device="auto")
    backend.metadata.names, backend.metadata.image_size
    output = backend.forward(batch)        # DenseOutput, or NMSOutput for an --nms export

`Detector.from_checkpoint("model.onnx")` uses these; the letterbox, selection
and output types are the PyTorch path's own (detector/inference/backends.py).
ONNX Runtime gets the CUDA (and TensorRT) execution providers where installed
and a GPU is asked for or found, the CPU provider otherwise. Its intra-op
threads follow `torch.get_num_threads()`, so one knob (`torch.set_num_threads`,
`tools/benchmark.py --threads`) sets both backends.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.defaults import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DET, DEFAULT_SCORE_THRESHOLD
from detector.export.metadata import (
    INPUT_NAME,
    TORCHSCRIPT_EXTRA_FILE,
    ExportedModelError,
    ExportMetadata,
)
from detector.inference.backends import BackendOutput, DenseOutput, NMSOutput

log = logging.getLogger(__name__)

ONNX_SUFFIX = ".onnx"
TORCHSCRIPT_SUFFIXES = (".torchscript", ".ts")


def is_exported_path(path: str | Path) -> bool:
    """True for a path `from_checkpoint` should load as an exported model (by its suffix)."""
    return Path(path).suffix.lower() in (ONNX_SUFFIX, *TORCHSCRIPT_SUFFIXES)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def onnx_providers(device: str | torch.device, available: list[str]) -> list[str]:
    """Execution providers for `device` among `available`, best first.

    "auto": TensorRT, CUDA (where installed) then CPU; "cpu": CPU only;
    "cuda[:N]": TensorRT/CUDA, an error if neither is installed.
    """
    kind = str(device).split(":")[0]
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and not gpu:
        raise ExportedModelError(
            f"device {device!r}: this onnxruntime has no CUDA execution provider "
            f"(it has {', '.join(available)}); pip install onnxruntime-gpu")
    if kind not in ("auto", "cuda"):
        raise ExportedModelError(f"device {device!r}: ONNX Runtime runs on auto, cpu or cuda[:N]")
    return gpu + ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """An ONNX Runtime session over an exported .onnx file.

    Args:
        path: the .onnx file.
        device: "auto", "cpu" or "cuda[:N]".
        threads: intra-op threads (default: `torch.get_num_threads()`).
        optimization: ORT graph optimisation level name ("all", "extended", "basic", "disable").
    """

    def __init__(self, path: str | Path, *, device: str | torch.device = "auto", threads: int | None = None,
                 optimization: str = "all") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportedModelError(
                f"{path}: running an .onnx model needs onnxruntime: pip install 'detector[export]' "
                "(or onnxruntime-gpu for CUDA)") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedModelError(f"{path}: exported model not found")
        providers = onnx_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        options.graph_optimization_level = levels[optimization]
        options.log_severity_level = 3  # errors only: provider fallbacks are reported by us
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # InvalidProtobuf, Fail, NotImplemented...: all one line
            raise ExportedModelError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from None
        self.metadata = ExportMetadata.from_props(dict(self.session.get_modelmeta().custom_metadata_map),
                                                  source=str(path))
        self._check_signature()
        self.providers = self.session.get_providers()
        on_gpu = self.providers[0] != "CPUExecutionProvider" and torch.cuda.is_available()
        # Preprocessing runs where the session runs when torch can reach that GPU.
        self.device = torch.device("cuda") if on_gpu else torch.device("cpu")
        self.fixed_size = None if self.metadata.dynamic else self.metadata.image_size
        self.fixed_batch = None if self.metadata.dynamic else self.metadata.batch

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4:
            got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ExportedModelError(f"{self.path}: expected one input '{INPUT_NAME}' [B, 3, H, W], got {got}")
        expected = list(self.metadata.output_names)
        if outputs != expected:
            raise ExportedModelError(f"{self.path}: expected outputs {expected}, got {outputs}")

    def _run(self, pixels: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {INPUT_NAME: pixels})

    def forward(self, batch: torch.Tensor) -> BackendOutput:
        """Run the session on a float32 [B, 3, S, S] batch (split/padded to a static batch)."""
        pixels = batch.detach().float().cpu().numpy()
        count = len(pixels)
        if self.fixed_batch is None:
            parts = [self._run(pixels)]
        else:
            step, parts = self.fixed_batch, []
            for begin in range(0, count, step):
                chunk = pixels[begin:begin + step]
                if len(chunk) < step:  # repeat the last image; its extra outputs are dropped
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), axis=0)])
                parts.append(self._run(chunk))
        first, second = (torch.from_numpy(np.concatenate([p[i] for p in parts])[:count]).to(self.device)
                         for i in range(2))
        return NMSOutput(first, second) if self.metadata.nms else DenseOutput(first, second)


class TorchScriptBackend:
    """A traced .torchscript file from `detector export --format torchscript`."""

    def __init__(self, path: str | Path, *, device: str | torch.device = "auto") -> None:
        from detector.inference.predictor import resolve_device

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedModelError(f"{path}: exported model not found")
        self.device = resolve_device(device)
        extra = {TORCHSCRIPT_EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():  # torch 2.13 marks torch.jit deprecated (docs/export.md)
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra)
        except Exception as exc:
            raise ExportedModelError(f"{path}: not a loadable TorchScript file ({_first_line(exc)})") from None
        try:
            props: Any = json.loads(extra[TORCHSCRIPT_EXTRA_FILE] or "{}")
        except ValueError:
            props = {}
        self.metadata = ExportMetadata.from_props(props if isinstance(props, dict) else {}, source=str(path))
        self.module.eval()
        self.fixed_size = None if self.metadata.dynamic else self.metadata.image_size

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> DenseOutput:
        boxes, scores = self.module(batch.float())
        return DenseOutput(boxes.float(), scores.float())


def load_exported_backend(path: str | Path, *, device: str | torch.device = "auto",
                          threads: int | None = None) -> OnnxRuntimeBackend | TorchScriptBackend:
    """The backend for an exported file, chosen by its suffix (.onnx or .torchscript)."""
    suffix = Path(path).suffix.lower()
    if suffix == ONNX_SUFFIX:
        return OnnxRuntimeBackend(path, device=device, threads=threads)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return TorchScriptBackend(path, device=device)
    raise ExportedModelError(f"{path}: not an exported model (expected .onnx or .torchscript)")


def open_exported(path: str | Path, *, device: str | torch.device, half: bool | str = False,
                  compile: bool = False, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                  iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                  max_det: int = DEFAULT_MAX_DET) -> OnnxRuntimeBackend | TorchScriptBackend:
    """`load_exported_backend` for `Detector.from_checkpoint`, with its options checked.

    `compile` is refused (checkpoints only); `half` is ignored with a warning (the
    precision is the file's); settings looser than an --nms graph's own are
    warned about (the graph already dropped those detections).
    """
    if compile:
        raise ValueError(f"{path}: compile applies to checkpoints, not to exported models")
    backend = load_exported_backend(path, device=device)
    meta = backend.metadata
    if half not in (False, None, "fp32"):
        log.warning("%s: precision is fixed at export (%s); half=%r ignored", path, meta.precision, half)
    if meta.nms and (score_threshold < meta.score_threshold or max_det > meta.max_det
                     or iou_threshold != meta.iou_threshold):
        log.warning("%s: NMS is in the graph (score >= %g, IoU %g, max_det %d); looser settings "
                    "cannot bring back what it dropped", path, meta.score_threshold, meta.iou_threshold,
                    meta.max_det)
    return backend


__all__ = ["OnnxRuntimeBackend", "TorchScriptBackend",
           "is_exported_path", "load_exported_backend", "onnx_providers",
           "open_exported"]
