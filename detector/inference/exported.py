"""Backends for files `detector export` wrote: ONNX Runtime (.onnx) and TorchScript (.torchscript).

    backend = load_exported_backend("model.onnx", device="auto")
    backend.metadata.names, backend.metadata.image_size
    output = backend.forward(batch)        # DenseOutput, or NMSOutput for an --nms export

`Detector.from_checkpoint("model.onnx")` uses these; the letterbox, selection
and output types are the PyTorch path's own (detector/inference/backends.py).
ONNX Runtime gets the CUDA (and TensorRT) execution providers where installed
and a GPU is asked for or found, on the GPU `cuda:N` names, the CPU provider
otherwise. On a GPU the session reads the batch from and writes its outputs to
torch tensors on that GPU (IO binding): no frame goes through the host. Its
intra-op threads follow `torch.get_num_threads()`, so one knob
(`torch.set_num_threads`, `tools/benchmark.py --threads`) sets both backends.
An --nms graph gets the caller's `Selection` as inputs (old files: baked in).
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
    NMS_INPUTS,
    TORCHSCRIPT_EXTRA_FILE,
    ExportedModelError,
    ExportMetadata,
)
from detector.inference.backends import (
    BackendOutput,
    DenseOutput,
    NMSOutput,
    Selection,
    resolve_device,
)

log = logging.getLogger(__name__)

ONNX_SUFFIX = ".onnx"
TORCHSCRIPT_SUFFIXES = (".torchscript", ".ts")


def is_exported_path(path: str | Path) -> bool:
    """True for a path `from_checkpoint` should load as an exported model (by its suffix)."""
    return Path(path).suffix.lower() in (ONNX_SUFFIX, *TORCHSCRIPT_SUFFIXES)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


Provider = str | tuple[str, dict[str, str]]


def onnx_providers(device: str | torch.device, available: list[str]) -> list[Provider]:
    """Execution providers for `device` among `available`, best first (`InferenceSession`'s form).

    "auto": TensorRT, CUDA (where installed) on GPU 0, then CPU; "cpu": CPU only;
    "cuda[:N]": TensorRT/CUDA on GPU N (their `device_id` option), an error if
    neither is installed.
    """
    kind, _, index = str(device).partition(":")
    if index and not index.isdigit():
        raise ExportedModelError(f"device {device!r}: expected cuda:N with N a GPU index")
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda" and not gpu:
        raise ExportedModelError(
            f"device {device!r}: this onnxruntime has no CUDA execution provider "
            f"(it has {', '.join(available)}); pip install onnxruntime-gpu"
        )
    if kind not in ("auto", "cuda"):
        raise ExportedModelError(f"device {device!r}: ONNX Runtime runs on auto, cpu or cuda[:N]")
    options = {"device_id": index or "0"}
    return [(name, dict(options)) for name in gpu] + ["CPUExecutionProvider"]


_NUMPY_DTYPE = {torch.float32: np.float32, torch.int64: np.int64}


class OnnxRuntimeBackend:
    """An ONNX Runtime session over an exported .onnx file.

    Args:
        path: the .onnx file.
        device: "auto", "cpu" or "cuda[:N]".
        threads: intra-op threads (default: `torch.get_num_threads()`).
        optimization: ORT graph optimisation level name ("all", "extended", "basic", "disable").
        io_binding: bind the input and outputs to torch tensors on the session's
            device; default: on a GPU (there it saves two host copies per batch).
        providers: these execution providers instead of `onnx_providers(device, ...)`'s
            (`detector benchmark` measures CUDA and TensorRT one at a time).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        threads: int | None = None,
        optimization: str = "all",
        io_binding: bool | None = None,
        providers: list[Provider] | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportedModelError(
                f"{path}: running an .onnx model needs onnxruntime: pip install 'detector[export]' "
                "(or onnxruntime-gpu for CUDA)"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedModelError(f"{path}: exported model not found")
        providers = providers or onnx_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        options.graph_optimization_level = levels[optimization]
        options.log_severity_level = 3  # errors only: provider fallbacks are reported by us
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # InvalidProtobuf, Fail, NotImplemented...: all one line
            raise ExportedModelError(
                f"{path}: not a loadable ONNX model ({_first_line(exc)})"
            ) from None
        self.metadata = ExportMetadata.from_props(
            dict(self.session.get_modelmeta().custom_metadata_map), source=str(path)
        )
        self._check_signature()
        # An --nms graph's selection inputs (initializers with defaults); none in older files.
        overridable = {i.name for i in self.session.get_overridable_initializers()}
        self.selection_inputs = tuple(name for name in NMS_INPUTS if name in overridable)
        self.providers = self.session.get_providers()
        on_gpu = self.providers[0] != "CPUExecutionProvider" and torch.cuda.is_available()
        gpu_index = int(
            dict(self.session.get_provider_options().get(self.providers[0], {})).get("device_id", 0)
            or 0
        )
        # Preprocessing runs where the session runs when torch can reach that GPU.
        self.device = torch.device("cuda", gpu_index) if on_gpu else torch.device("cpu")
        self.io_binding = on_gpu if io_binding is None else bool(io_binding)
        self.fixed_size = None if self.metadata.dynamic else self.metadata.image_size
        self.fixed_batch = None if self.metadata.dynamic else self.metadata.batch

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4:
            got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ExportedModelError(
                f"{self.path}: expected one input '{INPUT_NAME}' [B, 3, H, W], got {got}"
            )
        expected = list(self.metadata.output_names)
        if outputs != expected:
            raise ExportedModelError(f"{self.path}: expected outputs {expected}, got {outputs}")

    def _selection_feeds(self, selection: Selection | None) -> dict[str, np.ndarray]:
        """The graph's selection inputs for `selection` (none: the exported defaults)."""
        if selection is None or not self.selection_inputs:
            return {}
        num_classes = len(self.metadata.names)
        mask = np.ones(num_classes, bool)
        if selection.classes is not None:
            mask = np.isin(np.arange(num_classes), selection.classes.cpu().numpy())
        feeds = {
            "score_threshold": np.array(selection.score_threshold, np.float32),
            "iou_threshold": np.array(selection.iou_threshold, np.float32),
            # The output holds the exported max_det rows: a larger one cannot fit.
            "max_det": np.array(min(selection.max_det, self.metadata.max_det), np.int64),
            "class_mask": mask,
        }
        return {name: feeds[name] for name in self.selection_inputs}

    def _output_layout(
        self, batch: int, height: int, width: int
    ) -> list[tuple[list[int], torch.dtype]]:
        """Shape and dtype of each output for a [batch, 3, height, width] input."""
        meta = self.metadata
        if meta.nms:
            return [([batch, meta.max_det, 6], torch.float32), ([batch], torch.int64)]
        cells = sum((height // stride) * (width // stride) for stride in meta.strides)
        return [
            ([batch, cells, 4], torch.float32),
            ([batch, cells, len(meta.names)], torch.float32),
        ]

    def _run_bound(self, pixels: torch.Tensor, feeds: dict[str, np.ndarray]) -> list[torch.Tensor]:
        """One run reading `pixels` and writing the outputs in place on `self.device`."""
        kind, index = self.device.type, self.device.index or 0
        pixels = pixels.to(self.device).contiguous()
        binding = self.session.io_binding()
        binding.bind_input(
            INPUT_NAME, kind, index, np.float32, list(pixels.shape), pixels.data_ptr()
        )
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        outputs = []
        batch, _, height, width = pixels.shape
        layout = self._output_layout(batch, height, width)
        for name, (shape, dtype) in zip(self.metadata.output_names, layout, strict=True):
            out = torch.empty(shape, dtype=dtype, device=self.device)
            binding.bind_output(name, kind, index, _NUMPY_DTYPE[dtype], shape, out.data_ptr())
            outputs.append(out)
        if kind == "cuda":  # ORT reads on its own stream: the batch must be written first
            torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return outputs

    def _run(self, pixels: torch.Tensor, feeds: dict[str, np.ndarray]) -> list[torch.Tensor]:
        if self.io_binding:
            return self._run_bound(pixels, feeds)
        outputs = self.session.run(None, {INPUT_NAME: pixels.cpu().numpy(), **feeds})
        return [torch.from_numpy(output) for output in outputs]

    def forward(self, batch: torch.Tensor, selection: Selection | None = None) -> BackendOutput:
        """Run the session on a float32 [B, 3, S, S] batch (split/padded to a static batch).

        `selection` goes into an --nms graph's inputs; a dense graph ignores it.
        """
        pixels = batch.detach().float()
        feeds = self._selection_feeds(selection)
        count = len(pixels)
        if self.fixed_batch is None:
            parts = [self._run(pixels, feeds)]
        else:
            step, parts = self.fixed_batch, []
            for begin in range(0, count, step):
                chunk = pixels[begin : begin + step]
                if len(chunk) < step:  # repeat the last image; its extra outputs are dropped
                    chunk = torch.cat([chunk, chunk[-1:].expand(step - len(chunk), -1, -1, -1)])
                parts.append(self._run(chunk, feeds))
        first, second = (torch.cat([p[i] for p in parts])[:count].to(self.device) for i in range(2))
        return NMSOutput(first, second) if self.metadata.nms else DenseOutput(first, second)


class TorchScriptBackend:
    """A traced .torchscript file from `detector export --format torchscript`."""

    def __init__(self, path: str | Path, *, device: str | torch.device = "auto") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedModelError(f"{path}: exported model not found")
        self.device = resolve_device(device)
        extra = {TORCHSCRIPT_EXTRA_FILE: ""}
        try:
            with (
                warnings.catch_warnings()
            ):  # torch 2.13 marks torch.jit deprecated (docs/export.md)
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(
                    str(self.path), map_location=self.device, _extra_files=extra
                )
        except Exception as exc:
            raise ExportedModelError(
                f"{path}: not a loadable TorchScript file ({_first_line(exc)})"
            ) from None
        try:
            props: Any = json.loads(extra[TORCHSCRIPT_EXTRA_FILE] or "{}")
        except ValueError:
            props = {}
        self.metadata = ExportMetadata.from_props(
            props if isinstance(props, dict) else {}, source=str(path)
        )
        self.module.eval()
        self.fixed_size = None if self.metadata.dynamic else self.metadata.image_size

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor, selection: Selection | None = None) -> DenseOutput:
        """Run the traced module (`selection`: unused, the dense output is selected afterwards)."""
        boxes, scores = self.module(batch.float())
        return DenseOutput(boxes.float(), scores.float())


def load_exported_backend(
    path: str | Path, *, device: str | torch.device = "auto", threads: int | None = None
) -> OnnxRuntimeBackend | TorchScriptBackend:
    """The backend for an exported file, chosen by its suffix (.onnx or .torchscript)."""
    suffix = Path(path).suffix.lower()
    if suffix == ONNX_SUFFIX:
        return OnnxRuntimeBackend(path, device=device, threads=threads)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return TorchScriptBackend(path, device=device)
    raise ExportedModelError(f"{path}: not an exported model (expected .onnx or .torchscript)")


def open_exported(
    path: str | Path,
    *,
    device: str | torch.device,
    half: bool | str = False,
    compile: bool = False,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_det: int = DEFAULT_MAX_DET,
) -> OnnxRuntimeBackend | TorchScriptBackend:
    """`load_exported_backend` for `Detector.from_checkpoint`, with its options checked.

    `compile` is refused (checkpoints only); `half` is ignored with a warning (the
    precision is the file's); an --nms graph takes the thresholds as inputs, but
    an older one has them baked in, and settings looser than those are warned
    about (the graph already dropped those detections), as is a `max_det` above
    the exported one.
    """
    if compile:
        raise ValueError(f"{path}: compile applies to checkpoints, not to exported models")
    backend = load_exported_backend(path, device=device)
    meta = backend.metadata
    if half not in (False, None, "fp32"):
        log.warning(
            "%s: precision is fixed at export (%s); half=%r ignored", path, meta.precision, half
        )
    selects = getattr(backend, "selection_inputs", ())
    looser = (
        score_threshold < meta.score_threshold
        or max_det > meta.max_det
        or iou_threshold != meta.iou_threshold
    )
    if meta.nms and not selects and looser:
        log.warning(
            "%s: NMS is in the graph (score >= %g, IoU %g, max_det %d); looser settings "
            "cannot bring back what it dropped (an older --nms file: export it again to "
            "set them at run time)",
            path,
            meta.score_threshold,
            meta.iou_threshold,
            meta.max_det,
        )
    elif meta.nms and max_det > meta.max_det:
        log.warning(
            "%s: the graph outputs at most %d detections per image; max_det=%d gives %d",
            path,
            meta.max_det,
            max_det,
            meta.max_det,
        )
    return backend


__all__ = [
    "OnnxRuntimeBackend",
    "TorchScriptBackend",
    "is_exported_path",
    "load_exported_backend",
    "onnx_providers",
    "open_exported",
]
