"""`detector benchmark`: one checkpoint in every format and precision this machine runs.

    result = run_benchmark("best.pt", BenchmarkOptions(data_config="configs/shapes.yaml"))
    print(format_table(result))          # a row per format: size, AP, AP50, ms/image, images/s

Each row is a `Detector` over one backend: the checkpoint in PyTorch (fp32, and
bf16/fp16 autocast where the package uses it: CUDA), the TorchScript file, the
ONNX files (fp32, fp16, INT8) on ONNX Runtime's CPU provider, and on CUDA the
fp32 file on ONNX Runtime's CUDA and TensorRT providers where installed. AP and
AP50 come from `detector evaluate`'s path (`predict_split` at the config's eval
thresholds, `evaluate_detections`) on the whole val split. Speed is
`Detector.predict_letterboxed` (forward + decode + selection + boxes back to
the image, at the deployment defaults of `detect`: score >= 0.25; AP uses the
config's eval thresholds, whose selection of thousands of low-score candidates
would otherwise weigh the same in every row) on val images letterboxed once:
median ms per image at batch 1 and images/s at batch 8 (median batch time),
every row measured in turn within each repetition so that load on the machine
hits all rows alike. ONNX and
TorchScript files are exported with dynamic shapes (one file serves both
batches) into a temp folder, or `keep_dir`. A row that cannot run says why.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMATS = (
    "torch-fp32",
    "torch-bf16",
    "torch-fp16",
    "torchscript",
    "onnx-fp32",
    "onnx-fp16",
    "onnx-int8",
    "onnx-cuda",
    "onnx-tensorrt",
)
GPU_PROVIDERS = {"onnx-cuda": "CUDAExecutionProvider", "onnx-tensorrt": "TensorrtExecutionProvider"}


@dataclass
class BenchmarkOptions:
    """What to measure (see `detector benchmark --help`)."""

    data_config: str | Path
    device: str = "cpu"
    formats: Sequence[str] = FORMATS
    keep_dir: str | Path | None = None  # None: exported files go to a temp folder
    reps: int = 20
    threads: int | None = None  # default: torch.get_num_threads()
    calibration_images: int = 128
    exporter: str = "dynamo"
    measure_ap: bool = True  # False: speed and size only (random-weight models in tools/benchmarks)


@dataclass
class BenchmarkRow:
    """One format and precision; `skipped` says why it did not run (then the figures are None)."""

    format: str
    precision: str
    runtime: str
    file: str = ""
    size_mb: float | None = None
    ap: float | None = None
    ap50: float | None = None
    ms_per_image_batch1: float | None = None
    images_per_s_batch8: float | None = None
    skipped: str = ""


@dataclass
class BenchmarkResult:
    """The machine and the rows."""

    machine: dict[str, Any]
    rows: list[BenchmarkRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "rows": [asdict(row) for row in self.rows]}


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    """CPU model, intra-op threads, GPU name (or None), torch and onnxruntime versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in (
            Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        ):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "threads": threads,
        "gpu": gpu,
        "torch": torch.__version__,
        "onnxruntime": ort_version,
    }


class NotRunnable(RuntimeError):
    """A row this machine cannot run; its message is the reason the row prints."""


def gpu_row_reason(name: str, device: torch.device, available: Sequence[str]) -> str:
    """Why ONNX Runtime GPU row `name` cannot run ("" when it can)."""
    if device.type != "cuda":
        return f"needs --device cuda (this run: {device.type})"
    if GPU_PROVIDERS[name] not in available:
        return f"onnxruntime has no {GPU_PROVIDERS[name]} (pip install onnxruntime-gpu)"
    return ""


def torch_half_reason(dtype: torch.dtype, device: torch.device) -> str:
    """Why torch autocast at `dtype` is not measured on `device` ("" when it is)."""
    if device.type != "cuda":
        return "autocast is CUDA only here: on a CPU it is slower than fp32 (model/precision.py)"
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} has no bf16"
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, NotRunnable):
        return text
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _export(
    checkpoint: Path, folder: Path, name: str, options: BenchmarkOptions, **kwargs: Any
) -> Path:
    from detector.export.exporter import ExportOptions, export_checkpoint

    suffix = ".torchscript" if kwargs.get("format") == "torchscript" else ".onnx"
    export = ExportOptions(
        out=folder / f"{checkpoint.stem}-{name}{suffix}",
        dynamic=True,
        exporter=options.exporter,
        data_config=options.data_config,
        calibration_images=options.calibration_images,
        **kwargs,
    )
    return export_checkpoint(checkpoint, export).path


def _builders(
    checkpoint: Path,
    folder: Path,
    options: BenchmarkOptions,
    device: torch.device,
    available: Sequence[str],
) -> dict[str, tuple[str, str, Callable[[], tuple[Any, Path]]]]:
    """format -> (precision, runtime, build() -> (backend, file)); builders raise to skip."""
    from detector.checkpoint import load_checkpoint
    from detector.inference.backends import TorchBackend
    from detector.inference.exported import OnnxRuntimeBackend, TorchScriptBackend
    from detector.model.build import model_from_checkpoint

    def torch_backend(dtype: torch.dtype | None) -> Callable[[], tuple[Any, Path]]:
        def build() -> tuple[Any, Path]:
            if dtype is not None and (reason := torch_half_reason(dtype, device)):
                raise NotRunnable(reason)
            model, _ = model_from_checkpoint(load_checkpoint(checkpoint), device)
            return TorchBackend(model, device=device, autocast_dtype=dtype), checkpoint

        return build

    files: dict[str, Path] = {}

    def onnx_file(name: str, **kwargs: Any) -> Path:
        if name not in files:
            files[name] = _export(checkpoint, folder, name, options, **kwargs)
        return files[name]

    def ort(
        name: str, providers: list | None = None, **kwargs: Any
    ) -> Callable[[], tuple[Any, Path]]:
        def build() -> tuple[Any, Path]:
            path = onnx_file(name, **kwargs)
            return OnnxRuntimeBackend(
                path,
                device="cpu" if providers is None else device,
                threads=options.threads,
                providers=providers,
            ), path

        return build

    def gpu(name: str) -> Callable[[], tuple[Any, Path]]:
        def build() -> tuple[Any, Path]:
            if reason := gpu_row_reason(name, device, available):
                raise NotRunnable(reason)
            index = str(device.index or 0)
            chain = [
                p
                for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
                if name == "onnx-tensorrt" or p == GPU_PROVIDERS[name]
            ]
            backend, path = ort(
                "fp32", [(p, {"device_id": index}) for p in chain] + ["CPUExecutionProvider"]
            )()
            if backend.providers[0] != GPU_PROVIDERS[name]:
                raise NotRunnable(
                    f"{GPU_PROVIDERS[name]} did not load (ran on {backend.providers[0]})"
                )
            return backend, path

        return build

    def torchscript() -> tuple[Any, Path]:
        path = _export(checkpoint, folder, "ts", options, format="torchscript")
        return TorchScriptBackend(path, device=device), path

    where = "CUDA" if device.type == "cuda" else "CPU"
    return {
        "torch-fp32": ("fp32", f"PyTorch {where}", torch_backend(None)),
        "torch-bf16": ("bf16 autocast", f"PyTorch {where}", torch_backend(torch.bfloat16)),
        "torch-fp16": ("fp16 autocast", f"PyTorch {where}", torch_backend(torch.float16)),
        "torchscript": ("fp32", f"TorchScript {where}", torchscript),
        "onnx-fp32": ("fp32", "ORT CPU", ort("fp32")),
        "onnx-fp16": ("fp16", "ORT CPU", ort("fp16", half=True)),
        "onnx-int8": ("int8", "ORT CPU", ort("int8", int8=True)),
        "onnx-cuda": ("fp32", "ORT CUDA", gpu("onnx-cuda")),
        "onnx-tensorrt": ("fp32", "ORT TensorRT", gpu("onnx-tensorrt")),
    }


def _split_ap(detector: Any, cfg: Any) -> tuple[float, float]:
    """(AP, AP50) on the val split: `detector evaluate`'s prediction and scoring functions."""
    from detector.data.catalog import category_ids
    from detector.evaluation.dataset_predict import predict_split
    from detector.evaluation.evaluator import evaluate_detections

    records, predictions = predict_split(detector, cfg, "val")
    result = evaluate_detections(
        records.records,
        predictions,
        list(records.names),
        category_ids=category_ids(cfg.data),
        voc_metric="none",
        dataset_format=cfg.data.format,
    )
    return float(result.stats["AP"]), float(result.stats["AP50"])


def _timing_batch(cfg: Any, image_size: int, count: int = 8) -> tuple[torch.Tensor, list]:
    """`count` val images (repeated if fewer) letterboxed as `Detector` does: [count, 3, S, S]."""
    from detector.data.catalog import load_split
    from detector.data.images import read_image_rgb
    from detector.inference.preprocess import preprocess_batch

    records = load_split(cfg.data, "val").records
    if not records:
        raise ValueError(f"{cfg.data.root}: the val split has no images")
    frames = [read_image_rgb(records[i % len(records)].image_path) for i in range(count)]
    return preprocess_batch(frames, image_size, "cpu", color="rgb")


def _time_rows(
    detectors: dict[str, Any], batch: torch.Tensor, letterboxes: list, reps: int
) -> dict[str, tuple[float, float]]:
    """name -> (median ms per image at batch 1, images/s at batch 8 from the median batch time)."""
    one, eight = {name: [] for name in detectors}, {name: [] for name in detectors}
    for detector in detectors.values():  # warm-up: first-run allocations and kernel choices
        detector.predict_letterboxed(batch[:1], letterboxes[:1])
        detector.predict_letterboxed(batch, letterboxes)
    for _ in range(reps):
        for name, detector in detectors.items():
            start = time.perf_counter()
            detector.predict_letterboxed(batch[:1], letterboxes[:1])
            one[name].append(time.perf_counter() - start)
        for name, detector in detectors.items():
            start = time.perf_counter()
            detector.predict_letterboxed(batch, letterboxes)
            eight[name].append(time.perf_counter() - start)
    return {
        name: (1000 * statistics.median(one[name]), len(batch) / statistics.median(eight[name]))
        for name in detectors
    }


def run_benchmark(
    checkpoint: str | Path,
    options: BenchmarkOptions,
    progress: Callable[[str], None] = lambda message: None,
) -> BenchmarkResult:
    """Measure `checkpoint` in each of `options.formats` (see the module docstring).

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
        ValueError: an unknown format, reps < 1, or a config whose classes differ.
    """
    from detector.checkpoint import load_checkpoint
    from detector.config import load_config
    from detector.inference.backends import resolve_device
    from detector.inference.predictor import Detector

    unknown = [name for name in options.formats if name not in FORMATS]
    if unknown:
        raise ValueError(f"--formats {','.join(unknown)}: choose among {','.join(FORMATS)}")
    if options.reps < 1:
        raise ValueError(f"--reps {options.reps}: must be >= 1")
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    cfg = load_config(options.data_config)
    device = resolve_device(options.device)
    threads = int(options.threads or torch.get_num_threads())
    try:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    except ImportError:
        available = []
    result = BenchmarkResult(machine_info(device, threads))
    with tempfile.TemporaryDirectory(prefix="detector-benchmark-") as tmp:
        folder = Path(options.keep_dir) if options.keep_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        builders = _builders(checkpoint, folder, options, device, available)
        detectors: dict[str, Any] = {}
        for name in options.formats:
            precision, runtime, build = builders[name]
            row = BenchmarkRow(name, precision, runtime)
            result.rows.append(row)
            progress(f"{name}: building")
            try:
                backend, path = build()
                detector = Detector(
                    backend,
                    names=list(ckpt["names"]),
                    image_size=int(ckpt["image_size"]),
                    score_threshold=cfg.eval.score_threshold,
                    iou_threshold=cfg.eval.iou_threshold,
                    max_det=cfg.eval.max_det,
                )
                if options.measure_ap:
                    progress(f"{name}: AP on the val split")
                    row.ap, row.ap50 = _split_ap(detector, cfg)
            except Exception as exc:  # noqa: BLE001 - each row reports its own failure
                row.skipped = _first_line(exc)
                continue
            row.file, row.size_mb = str(path), path.stat().st_size / 1e6
            detectors[name] = Detector(
                backend, names=list(ckpt["names"]), image_size=int(ckpt["image_size"])
            )
        if detectors:
            progress(f"timing {len(detectors)} rows side by side, {options.reps} reps")
            batch, letterboxes = _timing_batch(cfg, int(ckpt["image_size"]))
            for name, (ms, rate) in _time_rows(detectors, batch, letterboxes, options.reps).items():
                row = next(r for r in result.rows if r.format == name)
                row.ms_per_image_batch1, row.images_per_s_batch8 = ms, rate
        if options.keep_dir is None:  # the files are gone with the temp folder
            for row in result.rows:
                row.file = "" if row.file.startswith(tmp) else row.file
    return result


def format_table(result: BenchmarkResult) -> str:
    """The table `detector benchmark` prints: the machine, then the rows (x ORT fp32 at batch 1)."""
    machine = result.machine
    lines = [
        f"machine: {machine['cpu']} ({machine['cpu_cores']} cores), {machine['threads']} threads"
        + (f", GPU {machine['gpu']}" if machine["gpu"] else ", no GPU")
        + f"; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}",
        f"{'format':<14} {'precision':<14} {'runtime':<16} {'MB':>6} {'AP':>7} {'AP50':>7} "
        f"{'ms/img b1':>10} {'img/s b8':>9} {'x ORT fp32':>10}",
    ]
    base = next(
        (
            r.ms_per_image_batch1
            for r in result.rows
            if r.format == "onnx-fp32" and r.ms_per_image_batch1
        ),
        None,
    )
    for row in result.rows:
        head = f"{row.format:<14} {row.precision:<14} {row.runtime:<16}"
        if row.skipped:
            lines.append(f"{head} not run: {row.skipped}")
            continue
        ratio = (
            f"{base / row.ms_per_image_batch1:>9.2f}x"
            if base and row.ms_per_image_batch1
            else f"{'':>10}"
        )
        ap = f"{row.ap:>7.4f} {row.ap50:>7.4f}" if row.ap is not None else f"{'-':>7} {'-':>7}"
        lines.append(
            f"{head} {row.size_mb:>6.2f} {ap} "
            f"{row.ms_per_image_batch1:>10.2f} {row.images_per_s_batch8:>9.1f} {ratio}"
        )
    return "\n".join(lines)
