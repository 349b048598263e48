"""`detector benchmark`: size, AP and speed of a checkpoint in every format this machine runs.

    detector benchmark runs/train/exp/weights/best.pt --data configs/shapes.yaml
    detector benchmark best.pt --data configs/shapes.yaml --formats onnx-fp32,onnx-int8 --reps 50
    detector benchmark best.pt --data configs/voc.yaml --device cuda --json bench.json --keep

One row per format and precision (detector/export/benchmark.py): AP and AP50 on
the val split through `detector evaluate`'s path, median ms per image at batch 1,
images/s at batch 8, file size, and the machine. Rows that cannot run here say why.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from detector.export.benchmark import FORMATS


def _formats(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        given = ",".join(unknown) or repr(value)
        raise click.BadParameter(
            f"{given}: choose among {','.join(FORMATS)}", param_hint="--formats"
        )
    return names


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--data",
    "data_config",
    required=True,
    type=click.Path(dir_okay=False),
    help="Config whose val split gives AP and the timing images (and train split the "
    "INT8 calibration).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N | auto.")
@click.option(
    "--formats",
    default=",".join(FORMATS),
    show_default=True,
    help="Comma-separated rows to measure.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the exported files in CHECKPOINT's folder, under <stem>-benchmark/ "
    "(default: a temp folder, removed).",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write machine and rows as JSON to this file ('-': stdout, no table).",
)
@click.option(
    "--reps",
    type=int,
    default=20,
    show_default=True,
    help="Timed runs per row at batch 1 and at batch 8 (median).",
)
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: torch's).")
@click.option(
    "--calibration-images",
    type=int,
    default=128,
    show_default=True,
    help="onnx-int8: calibration images (detector export --int8).",
)
@click.option(
    "--exporter",
    type=click.Choice(["dynamo", "torchscript"]),
    default="dynamo",
    show_default=True,
    help="torch.onnx exporter for the ONNX rows.",
)
def benchmark(
    checkpoint: str,
    data_config: str,
    device: str,
    formats: str,
    keep: bool,
    json_file: str | None,
    reps: int,
    threads: int | None,
    calibration_images: int,
    exporter: str,
) -> None:
    """Measure CHECKPOINT as PyTorch, TorchScript and ONNX (fp32, fp16, INT8): size, AP, speed."""
    import torch

    from detector.checkpoint import CheckpointError
    from detector.config import ConfigError
    from detector.export.benchmark import BenchmarkOptions, format_table, run_benchmark

    if threads is not None:
        if threads < 1:
            raise click.BadParameter(f"{threads}: must be >= 1", param_hint="--threads")
        torch.set_num_threads(threads)
    keep_dir = Path(checkpoint).parent / f"{Path(checkpoint).stem}-benchmark" if keep else None
    options = BenchmarkOptions(
        data_config=data_config,
        device=device,
        formats=_formats(formats),
        keep_dir=keep_dir,
        reps=reps,
        threads=threads,
        calibration_images=calibration_images,
        exporter=exporter,
    )
    to_stdout = json_file == "-"

    def say(message: str) -> None:
        click.echo(message, err=True)

    try:
        result = run_benchmark(checkpoint, options, progress=say)
    except (CheckpointError, ConfigError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(result.to_json(), indent=2)
    if to_stdout:
        click.echo(text)
        return
    click.echo(format_table(result))
    if json_file:
        Path(json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(json_file).write_text(text, encoding="utf-8")
        click.echo(f"written to {json_file}")
