"""Benchmark: INT8 against fp32 on ONNX Runtime's CPU provider, side by side, on both tuning sets.

    python tools/benchmark.py int8 --model shapes=best_shapes.pt --model dense=best_dense.pt
    python tools/benchmark.py int8 --model shapes=a.pt --widths 0.25,1.0 --reps 50 --threads 1

For each `--model SET=CHECKPOINT` (SET: shapes or dense, the configs of the same
name with the data under `--data-root`) it runs `detector benchmark`'s code
(detector/export/benchmark.py) over torch fp32, ONNX fp32 and ONNX INT8: AP,
AP50 on the val split, median ms per image at batch 1 and images/s at batch 8,
every row timed in turn within each repetition. Then, for each `--widths` entry,
a random-weight checkpoint of that width at the set's input size gives speed
alone (its AP means nothing): what the ratio is for a wider model. Printed: the
machine, each table, and INT8 / fp32 ORT speed ratios (also of the ONNX Runtime
session alone at batch 1, without the selection every row shares) and the AP drop.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import click
import torch
import yaml

from detector.export.benchmark import BenchmarkOptions, format_table, run_benchmark

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _config(set_name: str, data_root: Path, folder: Path) -> Path:
    """The set's config with its data under `data_root`/<set>."""
    raw = yaml.safe_load((CONFIGS / f"{set_name}.yaml").read_text(encoding="utf-8"))
    raw["data"]["root"] = str(data_root / set_name)
    path = folder / f"{set_name}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _graph_only_ratio(result, reps: int, threads: int) -> float | None:
    """fp32 / INT8 median time of the ONNX Runtime session alone (`backend.forward`, batch 1, a
    letterboxed grey-and-noise image): what the graphs cost without the shared selection."""
    from detector.inference.exported import OnnxRuntimeBackend

    files = {row.format: row.file for row in result.rows if row.file and not row.skipped}
    if "onnx-fp32" not in files or "onnx-int8" not in files:
        return None
    backends = [
        OnnxRuntimeBackend(files[name], device="cpu", threads=threads)
        for name in ("onnx-fp32", "onnx-int8")
    ]
    size = backends[0].metadata.image_size
    batch = torch.full((1, 3, size, size), 114.0)
    batch[:, :, size // 4 : 3 * size // 4] = torch.rand(1, 3, size // 2, size) * 255
    times: list[list[float]] = [[], []]
    for backend in backends:
        backend.forward(batch)
    for _ in range(reps):
        for index, backend in enumerate(backends):
            start = time.perf_counter()
            backend.forward(batch)
            times[index].append(time.perf_counter() - start)
    return statistics.median(times[0]) / statistics.median(times[1])


def _ratios(result) -> dict[str, float | None]:
    rows = {row.format: row for row in result.rows if not row.skipped}
    fp32, int8 = rows.get("onnx-fp32"), rows.get("onnx-int8")
    if fp32 is None or int8 is None:
        return {}
    drop = fp32.ap - int8.ap if fp32.ap is not None and int8.ap is not None else None
    return {
        "speed_b1": fp32.ms_per_image_batch1 / int8.ms_per_image_batch1,
        "speed_b8": int8.images_per_s_batch8 / fp32.images_per_s_batch8,
        "size": fp32.size_mb / int8.size_mb,
        "ap_drop": drop,
    }


@click.command("int8")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="SET=CHECKPOINT, SET shapes or dense (repeatable).",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    default="datasets",
    show_default=True,
    help="Where the sets' data lives (<root>/shapes, <root>/dense; written on first use).",
)
@click.option(
    "--widths",
    default="1.0",
    show_default=True,
    help="Comma-separated widths of random-weight models for speed alone ('' for none).",
)
@click.option("--reps", type=int, default=30, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--calibration-images", type=int, default=128, show_default=True)
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None)
def int8(
    models: tuple[str, ...],
    data_root: str,
    widths: str,
    reps: int,
    threads: int,
    calibration_images: int,
    json_file: str | None,
) -> None:
    """INT8 / fp32 ONNX Runtime speed and AP drop, measured side by side."""
    from detector.checkpoint import load_checkpoint
    from detector.inference.synthetic import random_checkpoint

    torch.set_num_threads(threads)
    results = {}
    with tempfile.TemporaryDirectory(prefix="int8-bench-") as tmp:
        for entry in models:
            set_name, _, checkpoint = entry.partition("=")
            if set_name not in ("shapes", "dense") or not checkpoint:
                raise click.BadParameter(
                    f"{entry!r}: expected shapes=PATH or dense=PATH", param_hint="--model"
                )
            config = _config(set_name, Path(data_root).resolve(), Path(tmp))
            ckpt = load_checkpoint(checkpoint)
            runs = [
                (
                    f"{set_name} trained (width {ckpt['config']['model']['width']})",
                    checkpoint,
                    ["torch-fp32", "onnx-fp32", "onnx-int8"],
                    True,
                )
            ]
            for width in [w for w in widths.split(",") if w.strip()]:
                random = random_checkpoint(
                    Path(tmp) / f"{set_name}-w{width}.pt",
                    image_size=int(ckpt["image_size"]),
                    names=list(ckpt["names"]),
                    model={"width": float(width)},
                )
                runs.append(
                    (
                        f"{set_name} random weights, width {width} (speed only)",
                        random,
                        ["onnx-fp32", "onnx-int8"],
                        False,
                    )
                )
            for title, path, formats, measure_ap in runs:
                options = BenchmarkOptions(
                    data_config=config,
                    formats=formats,
                    reps=reps,
                    threads=threads,
                    calibration_images=calibration_images,
                    measure_ap=measure_ap,
                    keep_dir=Path(tmp) / f"files-{len(results)}",
                )
                result = run_benchmark(
                    path, options, progress=lambda m: click.echo(f"  {m}", err=True)
                )
                ratios = _ratios(result)
                ratios["graph_b1"] = _graph_only_ratio(result, reps, threads)
                click.echo(f"\n== {title}, {ckpt['image_size']} px\n{format_table(result)}")
                if ratios:
                    drop = f"{ratios['ap_drop']:+.4f}" if ratios["ap_drop"] is not None else "-"
                    click.echo(
                        f"INT8 / fp32 ORT: {ratios['speed_b1']:.2f}x at batch 1, "
                        f"{ratios['speed_b8']:.2f}x at batch 8, "
                        f"file {ratios['size']:.2f}x smaller, "
                        f"AP drop {drop}; the ORT session alone (batch 1): "
                        f"{ratios['graph_b1']:.2f}x"
                    )
                results[title] = {**result.to_json(), "ratios": ratios}
    if json_file:
        Path(json_file).write_text(json.dumps(results, indent=2), encoding="utf-8")
