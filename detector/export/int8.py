"""Static INT8 quantization of an exported graph: ONNX Runtime QDQ, decode tail left in float.

    reader = LetterboxCalibrationReader(images, image_size=160, batch=1)
    model = quantize_int8(onnx.load("dense.onnx"), reader)   # an onnx.ModelProto, QDQ int8

Steps: `quant_pre_process` (symbolic shape inference and ORT's basic graph
optimisations, the preparation ORT asks for), then `quantize_static` in QDQ
format with per-channel int8 weights and MinMax activation ranges from the
calibration reader. Activation and weight types and `reduce_range` follow ORT's
advice for the CPU this runs on (`quantization_settings`).

What stays in float (`float_nodes`), and why:
- the decode tail, every node that is neither a Conv nor feeds one: the head's
  per-level Reshape/Transpose/Concat, the box decode (grid Add, Exp of the
  log-size, stride Mul, the corner Sub/Add/Concat), the score Sigmoid * Sigmoid,
  and in a dynamic graph the grid's Shape/Range arithmetic. Their outputs are
  input pixels and probabilities: one 8-bit scale over boxes of 0..S px is a
  step of S/255 px, and over scores of 0..1 a step of 0.004, so low scores
  collapse onto a few values (ties, the ranking COCO AP needs is lost) and
  every box moves by up to half a step. They cost a few elementwise ops per cell.
- the prediction convolutions (the last Conv of each branch: box, objectness and
  class logits): their outputs go through Exp and Sigmoid, where an 8-bit step in
  a log-size is a multiplicative box error; they are 1x1 convs with a handful of
  output channels, well under 1% of the network's multiply-adds.
The NMS tail of an --nms export is appended after quantization (`write_onnx`),
so the quantizer never sees it: its outputs are indices and counts.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.export.metadata import INPUT_NAME

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class QuantizationSettings:
    """ORT's recommended types for a CPU.

    Attributes:
        activation_type: "uint8" (x86: the u8 x s8 kernels) or "int8" (ARM).
        weight_type: always "int8" (symmetric, per channel).
        reduce_range: 7-bit weights, for x86 CPUs without VNNI whose u8 x s8
            multiply-add (vpmaddubsw) can saturate its 16-bit sums.
        reason: why, for the metadata and the command's output.
    """

    activation_type: str
    weight_type: str
    reduce_range: bool
    reason: str


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU feature flags from /proc/cpuinfo text (read when None); None where unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def quantization_settings(
    machine: str | None = None, flags: set[str] | None = None, *, read_flags: bool = True
) -> QuantizationSettings:
    """Activation type and `reduce_range` for this CPU (or the given `machine` and `flags`).

    x86 with VNNI (avx512_vnni, avx_vnni or amx_int8): uint8 activations, full range.
    x86 without, or whose flags cannot be read: uint8 activations, `reduce_range`
    (the safe choice: saturation costs accuracy, the range costs a little less).
    ARM and others: int8 activations, full range.
    """
    machine = (machine or platform.machine()).lower()
    if flags is None and read_flags:
        flags = cpu_flags()
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        found = sorted(set(VNNI_FLAGS) & (flags or set()))
        if found:
            return QuantizationSettings("uint8", "int8", False, f"x86 with {found[0]}: full range")
        why = "flags unreadable" if flags is None else "no VNNI"
        return QuantizationSettings("uint8", "int8", True, f"x86, {why}: reduce_range")
    return QuantizationSettings("int8", "int8", False, f"{machine}: full range")


def _producers(model: Any) -> dict[str, Any]:
    return {output: node for node in model.graph.node for output in node.output}


def float_nodes(model: Any, *, keep_predictions: bool = True) -> list[str]:
    """Names of the nodes `quantize_int8` leaves in float (see the module docstring).

    Args:
        model: an onnx.ModelProto of a `DecodedDetector` graph (named nodes).
        keep_predictions: also the Convs that feed no other Conv (the prediction layers).

    Raises:
        ValueError: a node without a name (the quantizer excludes by name), or no Conv.
    """
    nodes = list(model.graph.node)
    unnamed = [node.op_type for node in nodes if not node.name]
    if unnamed:
        raise ValueError(
            f"{len(unnamed)} unnamed nodes ({unnamed[0]}, ...): cannot exclude by name"
        )
    producers = _producers(model)
    convs = [node for node in nodes if node.op_type == "Conv"]
    if not convs:
        raise ValueError("the graph has no Conv: nothing to quantize")

    def ancestors(starts: Sequence[Any]) -> set[str]:
        seen: set[str] = set()
        stack = [name for node in starts for name in node.input]
        while stack:
            producer = producers.get(stack.pop())
            if producer is not None and producer.name not in seen:
                seen.add(producer.name)
                stack.extend(producer.input)
        return seen

    trunk = ancestors(convs)  # every node some Conv reads from (the Convs among them too)
    conv_names = {node.name for node in convs}
    keep = [node.name for node in nodes if node.name not in trunk and node.name not in conv_names]
    if keep_predictions:
        keep += [node.name for node in convs if node.name not in trunk]
    return keep


class LetterboxCalibrationReader:
    """ORT's `CalibrationDataReader` over RGB images: letterboxed as inference does.

    Each batch is `preprocess_batch` on the CPU, the pixels `Detector` feeds the
    graph (detector/inference/preprocess.py). Images are letterboxed when read,
    one batch at a time.

    Args:
        images: uint8 RGB arrays [H, W, 3], or paths read with `read_image_rgb`.
        image_size: the input side S.
        batch: images per feed (a static graph's batch; 1 for a dynamic one). The
            last partial batch repeats its last image.
    """

    def __init__(
        self, images: Sequence[np.ndarray | str | Path], *, image_size: int, batch: int = 1
    ):
        if not images:
            raise ValueError("calibration needs at least one image")
        self.images = list(images)
        self.image_size = image_size
        self.batch = batch
        self._batches: Iterator[dict[str, np.ndarray]] | None = None

    def _load(self, item: np.ndarray | str | Path) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return item
        from detector.data.images import read_image_rgb

        return read_image_rgb(item)

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        from detector.inference.preprocess import preprocess_batch

        for begin in range(0, len(self.images), self.batch):
            chunk = [self._load(item) for item in self.images[begin : begin + self.batch]]
            chunk += [chunk[-1]] * (self.batch - len(chunk))
            pixels, _ = preprocess_batch(chunk, self.image_size, "cpu", color="rgb")
            yield {INPUT_NAME: pixels.numpy()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed {"images": float32 [batch, 3, S, S]}, or None when done."""
        if self._batches is None:
            self._batches = self._iterate()
        return next(self._batches, None)

    def rewind(self) -> None:
        """Start again from the first image."""
        self._batches = None

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)


def calibration_image_paths(data_cfg: Any, count: int, seed: int) -> list[str]:
    """`count` training images of `data_cfg` drawn without replacement by `seed` (all if fewer).

    Raises:
        ValueError: the training split has no images, or `count` < 1.
    """
    from detector.data.catalog import load_split

    if count < 1:
        raise ValueError(f"--calibration-images {count}: must be >= 1")
    records = load_split(data_cfg, "train").records
    if not records:
        raise ValueError("the training split has no images to calibrate on")
    picked = np.random.default_rng(seed).choice(
        len(records), size=min(count, len(records)), replace=False
    )
    return [records[index].image_path for index in sorted(picked.tolist())]


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Run the block in `path`: ORT's symbolic shape inference, when it gives up, saves
    sym_shape_infer_temp.onnx and a <uuid>.data file into the current directory."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _has_symbolic_input(model: Any) -> bool:
    """True when an input dimension is named rather than fixed (a --dynamic export)."""
    return any(
        dim.dim_param or not dim.HasField("dim_value")
        for value in model.graph.input
        for dim in value.type.tensor_type.shape.dim
    )


def _reader_class() -> type:
    """`LetterboxCalibrationReader` with ORT's `CalibrationDataReader` base (imported lazily)."""
    from onnxruntime.quantization import CalibrationDataReader

    return type(
        "OrtLetterboxCalibrationReader", (LetterboxCalibrationReader, CalibrationDataReader), {}
    )


def quantize_int8(
    model: Any,
    reader: LetterboxCalibrationReader,
    *,
    settings: QuantizationSettings | None = None,
    keep_float: bool = True,
) -> Any:
    """QDQ-quantize a dense exported graph with activation ranges from `reader`.

    Args:
        model: onnx.ModelProto with outputs boxes and scores (no NMS tail yet).
        reader: the calibration images.
        settings: types and range (default: `quantization_settings()` for this CPU).
        keep_float: leave the decode tail and prediction convs in float (`float_nodes`);
            False quantizes every node ORT can (for comparison: it costs AP).

    Returns:
        The quantized onnx.ModelProto (metadata_props not yet set).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = settings or quantization_settings()
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    ort_reader = _reader_class()(reader.images, image_size=reader.image_size, batch=reader.batch)
    with tempfile.TemporaryDirectory(prefix="detector-int8-") as tmp:
        source, prepared, quantized = (
            Path(tmp) / name for name in ("float.onnx", "pre.onnx", "q.onnx")
        )
        onnx.save(model, str(source))
        # Symbolic inference cannot follow a dynamic graph's grid arithmetic (it gives up
        # with "Incomplete symbolic shape inference"); ONNX's own shape inference still runs
        # without it, the fallback ORT documents.
        skip_symbolic = _has_symbolic_input(model)
        with _working_directory(Path(tmp)):
            try:
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=skip_symbolic)
            except Exception:  # noqa: BLE001 - any other graph it cannot follow: same fallback
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        prepared_model = onnx.load(str(prepared))
        excluded = float_nodes(prepared_model) if keep_float else []
        quantize_static(
            str(prepared),
            str(quantized),
            ort_reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=settings.reduce_range,
            activation_type=types[settings.activation_type],
            weight_type=types[settings.weight_type],
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(str(quantized))
