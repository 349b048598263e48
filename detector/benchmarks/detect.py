"""Detection benchmark: model-forward-only vs end-to-end frames/s on a video file.

    python tools/benchmark.py detect                          # random-weight resnet18, CPU or GPU
    python tools/benchmark.py detect --checkpoint best.pt --sizes 320,448 --repeats 5

End to end is the whole `detector detect VIDEO --out DIR` path: decode (reader
thread) + device preprocessing + forward + decode/NMS + draw + mp4 encode
(writer thread). Forward-only runs the model alone on an already-preprocessed
batch of the same frame. Both are measured alternately in one run; the table
prints medians and their ratio. On CUDA it adds batch-1 latency p50/p95 and
batched fp16 throughput for resnet18 and resnet50 at 448.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _detector(checkpoint: Path, image_size: int, device: str, half: bool | str = False):
    """A Detector from `checkpoint` run at `image_size` (the model is size-agnostic)."""
    from detector.inference.predictor import Detector

    base = Detector.from_checkpoint(checkpoint, device=device, half=half)
    return Detector(base.model, names=base.names, image_size=image_size, device=base.device, half=half)


def forward_fps(detector, frame: np.ndarray, frames: int, batch_size: int = 1) -> float:
    """Frames/s of the model forward alone on a preprocessed batch."""
    from detector.inference.preprocess import preprocess_batch

    batch, _ = preprocess_batch([frame] * batch_size, detector.image_size, detector.device)
    dtype = detector.autocast_dtype
    with torch.inference_mode(), torch.autocast(detector.device.type, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        detector.model(batch)  # warm-up (cudnn autotuning, allocator)
        _sync(detector.device)
        start = time.perf_counter()
        for _ in range(max(1, frames // batch_size)):
            detector.model(batch)
        _sync(detector.device)
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
    click.echo(f"{'backbone':<10} {'b1 p50 ms':>10} {'b1 p95 ms':>10} {'b1 fp16 p50':>12} "
               f"{'b16 fp32 fr/s':>14} {'b16 fp16 fr/s':>14}")
    for backbone in ("resnet18", "resnet50"):
        checkpoint = random_checkpoint(workdir / f"{backbone}.pt", backbone=backbone, image_size=448)
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
                row += [f"{np.percentile(latencies, 50):.2f}", f"{np.percentile(latencies, 95):.2f}"]
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


@click.command()
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Checkpoint to time (default: a random-weight resnet18).")
@click.option("--sizes", default="320,448", show_default=True, help="Network input sizes.")
@click.option("--frames", type=int, default=40, show_default=True, help="Frames in the test video.")
@click.option("--video-size", default="640x360", show_default=True, help="WIDTHxHEIGHT of the video.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Alternating repeats (median).")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch", "batch_size", type=int, default=1, show_default=True, help="Frames per forward.")
@click.option("--threads", type=int, default=None,
              help="torch intra-op threads (default: torch's choice). On a shared, loaded CPU, 1 avoids "
                   "OpenMP threads spinning against other processes.")
def detect(checkpoint: str | None, sizes: str, frames: int, video_size: str, repeats: int, device: str,
           batch_size: int, threads: int | None) -> None:
    """Forward-only vs end-to-end video frames/s at each input size."""
    if threads is not None:
        torch.set_num_threads(threads)
    from detector.inference.predictor import resolve_device
    from detector.inference.synthetic import (
        random_checkpoint,
        synthetic_frame,
        write_synthetic_video,
    )

    width, height = (int(v) for v in video_size.lower().split("x"))
    resolved = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        video = write_synthetic_video(workdir / "bench.mp4", frames=frames, size=(width, height), fps=30)
        ckpt = Path(checkpoint) if checkpoint else random_checkpoint(workdir / "resnet18.pt", image_size=448)
        frame = synthetic_frame(frames // 2, (width, height))
        click.echo(f"device {resolved}, torch threads {torch.get_num_threads()}, video {width}x{height} "
                   f"x {frames} frames, batch {batch_size}, {repeats} repeats (medians)")
        click.echo(f"{'size':>5} {'forward fr/s':>13} {'end-to-end fr/s':>16} {'ratio':>6}")
        for size in (int(s) for s in sizes.split(",")):
            detector = _detector(ckpt, size, str(resolved))
            end_to_end_fps(detector, video, workdir / "warmup", batch_size)  # warm-up
            forward, full = [], []
            for _ in range(repeats):
                forward.append(forward_fps(detector, frame, frames, batch_size))
                full.append(end_to_end_fps(detector, video, workdir / "out", batch_size))
            f_med, e_med = statistics.median(forward), statistics.median(full)
            click.echo(f"{size:>5} {f_med:>13.1f} {e_med:>16.1f} {e_med / f_med:>6.2f}")
        if resolved.type == "cuda":
            _cuda_report(synthetic_frame(frames // 2, (1280, 720)), workdir, max(frames, 100))
