"""Detection benchmark: model-forward-only vs end-to-end frames/s on a video file.

    python tools/benchmark.py detect                          # random-weight resnet18, CPU or GPU
    python tools/benchmark.py detect --checkpoint best.pt --sizes 320,448 --repeats 5
    python tools/benchmark.py detect --backend torch,onnxruntime --threads 1,2

End to end is the whole `detector detect VIDEO --out DIR` path: decode (reader
thread) + device preprocessing + forward + decode/NMS + draw + mp4 encode
(writer thread). Forward-only runs the backend's forward alone on an
already-preprocessed batch of the same frame: the network plus the dense grid
decode (boxes and scores), which an exported graph contains too. Everything is
measured alternately in one run; the table prints medians and their ratio.

Backends: `torch` (eager), `onnxruntime` (the checkpoint exported with
`detector export` at each size, static batch, ORT_ENABLE_ALL), and
`onnxruntime:LEVEL` for another ONNX Runtime graph optimisation level (basic,
extended, disable). ONNX Runtime's intra-op threads follow `--threads`. With
two or more backends a last row per (size, threads) gives each backend's
frames/s over the first's. On CUDA it adds batch-1 latency p50/p95 and batched
fp16 throughput for resnet18 and resnet50 at 448.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.nms import sync


def _detector(checkpoint: Path, image_size: int, device: str, half: bool | str = False):
    """A Detector from `checkpoint` run at `image_size` (the model is size-agnostic)."""
    from detector.inference.predictor import Detector

    base = Detector.from_checkpoint(checkpoint, device=device, half=half)
    return Detector(
        base.model, names=base.names, image_size=image_size, device=base.device, half=half
    )


def forward_fps(detector, frame: np.ndarray, frames: int, batch_size: int = 1) -> float:
    """Frames/s of the backend forward alone (network + dense decode) on a preprocessed batch."""
    from detector.inference.preprocess import preprocess_batch

    batch, _ = preprocess_batch([frame] * batch_size, detector.image_size, detector.device)
    detector.backend.forward(batch)  # warm-up (cudnn autotuning, allocator, ORT arenas)
    sync(detector.device)
    start = time.perf_counter()
    for _ in range(max(1, frames // batch_size)):
        detector.backend.forward(batch)
    sync(detector.device)
    return max(1, frames // batch_size) * batch_size / (time.perf_counter() - start)


def end_to_end_fps(detector, video: Path, out_dir: Path, batch_size: int = 1) -> float:
    """Frames/s of the full detect path on `video`, opening included."""
    from detector.inference.runner import run_detection
    from detector.inference.sources import open_source

    start = time.perf_counter()
    with open_source(str(video)) as source:
        summary = run_detection(detector, source, out_dir=out_dir, batch_size=batch_size)
    return summary.frames / (time.perf_counter() - start)


def _cuda_report(frame: np.ndarray, workdir: Path, frames: int) -> None:
    """Batch-1 latency percentiles and batched fp16 throughput at 448 on the GPU."""
    from detector.inference.synthetic import random_checkpoint

    click.echo("\nCUDA, 448 px (random weights):")
    click.echo(
        f"{'backbone':<10} {'b1 p50 ms':>10} {'b1 p95 ms':>10} {'b1 fp16 p50':>12} "
        f"{'b16 fp32 fr/s':>14} {'b16 fp16 fr/s':>14}"
    )
    for backbone in ("resnet18", "resnet50"):
        checkpoint = random_checkpoint(
            workdir / f"{backbone}.pt", backbone=backbone, image_size=448
        )
        row = [backbone]
        for half in (False, True):
            detector = _detector(checkpoint, 448, "cuda", half=half)
            for _ in range(10):
                detector.predict_frames([frame])
            latencies = []
            for _ in range(frames):
                start = time.perf_counter()
                detector.predict_frames([frame])  # ends with the device->host copy (a sync)
                latencies.append((time.perf_counter() - start) * 1000)
            if not half:
                row += [
                    f"{np.percentile(latencies, 50):.2f}",
                    f"{np.percentile(latencies, 95):.2f}",
                ]
            else:
                row.append(f"{np.percentile(latencies, 50):.2f}")
        for half in (False, True):
            detector = _detector(checkpoint, 448, "cuda", half=half)
            batch = [frame] * 16
            detector.predict_frames(batch)
            start = time.perf_counter()
            for _ in range(max(1, frames // 16)):
                detector.predict_frames(batch)
            row.append(f"{max(1, frames // 16) * 16 / (time.perf_counter() - start):.0f}")
        click.echo(f"{row[0]:<10} {row[1]:>10} {row[2]:>10} {row[3]:>12} {row[4]:>14} {row[5]:>14}")


def _backend_detector(
    backend: str, ckpt: Path, size: int, device: str, batch_size: int, workdir: Path
):
    """A Detector on `backend` ("torch", "onnxruntime[:level]") at `size`; exports once per size."""
    if backend == "torch":
        return _detector(ckpt, size, device)
    from detector.export import ExportOptions, export_checkpoint
    from detector.inference.exported import OnnxRuntimeBackend
    from detector.inference.predictor import Detector

    _, _, level = backend.partition(":")
    path = workdir / f"model-{size}-b{batch_size}.onnx"
    if not path.exists():
        export_checkpoint(ckpt, ExportOptions(out=path, image_size=size, batch=batch_size))
    session = OnnxRuntimeBackend(
        path, device=device, optimization=level or "all"
    )  # threads: torch's
    return Detector(session, names=session.metadata.names, image_size=size)


def _csv(text: str, name: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise click.BadParameter(f"{name}: give at least one value")
    return items


@click.command()
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Checkpoint to time (default: a random-weight resnet18).",
)
@click.option("--sizes", default="320,448", show_default=True, help="Network input sizes.")
@click.option("--frames", type=int, default=40, show_default=True, help="Frames in the test video.")
@click.option(
    "--video-size", default="640x360", show_default=True, help="WIDTHxHEIGHT of the video."
)
@click.option(
    "--repeats", type=int, default=3, show_default=True, help="Alternating repeats (median)."
)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--batch", "batch_size", type=int, default=1, show_default=True, help="Frames per forward."
)
@click.option(
    "--threads",
    default=None,
    help="Intra-op threads, comma-separated (e.g. 1,2; default: torch's choice). Sets torch and "
    "ONNX Runtime alike. On a shared, loaded CPU, 1 avoids OpenMP threads spinning "
    "against other processes.",
)
@click.option(
    "--backend",
    "backends",
    default="torch",
    show_default=True,
    help="Comma-separated: torch, onnxruntime, onnxruntime:basic|extended|disable.",
)
def detect(
    checkpoint: str | None,
    sizes: str,
    frames: int,
    video_size: str,
    repeats: int,
    device: str,
    batch_size: int,
    threads: str | None,
    backends: str,
) -> None:
    """Forward-only vs end-to-end video frames/s at each input size, backend and thread count."""
    from detector.inference.backends import resolve_device
    from detector.inference.synthetic import (
        random_checkpoint,
        synthetic_frame,
        write_synthetic_video,
    )

    backend_list = _csv(backends, "--backend")
    for name in backend_list:
        if name != "torch" and name.partition(":")[0] != "onnxruntime":
            raise click.BadParameter(f"--backend {name!r}: use torch or onnxruntime[:level]")
    thread_list = (
        [int(t) for t in _csv(threads, "--threads")] if threads else [torch.get_num_threads()]
    )
    width, height = (int(v) for v in video_size.lower().split("x"))
    resolved = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = write_synthetic_video(
            workdir / "bench.mp4", frames=frames, size=(width, height), fps=30
        )
        ckpt = (
            Path(checkpoint)
            if checkpoint
            else random_checkpoint(workdir / "resnet18.pt", image_size=448)
        )
        frame = synthetic_frame(frames // 2, (width, height))
        click.echo(
            f"device {resolved}, video {width}x{height} x {frames} frames, batch {batch_size}, "
            f"{repeats} repeats (medians), torch {torch.__version__}" + _ort_version(backend_list)
        )
        click.echo(
            f"{'size':>5} {'threads':>7} {'backend':>20} {'forward fr/s':>13} "
            f"{'end-to-end fr/s':>16} {'ratio':>6}"
        )
        for size in (int(s) for s in sizes.split(",")):
            for count in thread_list:
                torch.set_num_threads(count)
                detectors = {
                    name: _backend_detector(name, ckpt, size, str(resolved), batch_size, workdir)
                    for name in backend_list
                }
                for det in detectors.values():
                    end_to_end_fps(det, video, workdir / "warmup", batch_size)  # warm-up
                forward = {name: [] for name in detectors}
                full = {name: [] for name in detectors}
                for _ in range(repeats):
                    for name, det in detectors.items():
                        forward[name].append(forward_fps(det, frame, frames, batch_size))
                        full[name].append(end_to_end_fps(det, video, workdir / "out", batch_size))
                medians = {
                    name: (statistics.median(forward[name]), statistics.median(full[name]))
                    for name in detectors
                }
                for name, (f_med, e_med) in medians.items():
                    click.echo(
                        f"{size:>5} {count:>7} {name:>20} {f_med:>13.1f} {e_med:>16.1f} "
                        f"{e_med / f_med:>6.2f}"
                    )
                first = backend_list[0]
                for name in backend_list[1:]:
                    label = f"{name}/{first}"
                    click.echo(
                        f"{size:>5} {count:>7} {label:>20} "
                        f"{medians[name][0] / medians[first][0]:>12.2f}x "
                        f"{medians[name][1] / medians[first][1]:>15.2f}x"
                    )
        if resolved.type == "cuda" and backend_list == ["torch"]:
            _cuda_report(synthetic_frame(frames // 2, (1280, 720)), workdir, max(frames, 100))


def _ort_version(backends: list[str]) -> str:
    if all(name == "torch" for name in backends):
        return ""
    import onnxruntime

    return f", onnxruntime {onnxruntime.__version__}"
