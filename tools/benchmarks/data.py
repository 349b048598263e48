"""Benchmark: training input pipeline (decode + augment + collate) vs plain decoding.

    python tools/benchmark.py data configs/shapes.yaml
    python tools/benchmark.py data configs/voc.yaml --image-size 448 --synthetic-size 500x375
    python tools/benchmark.py data configs/voc.yaml --synthetic-size 500x375 --per-transform
    python tools/benchmark.py data configs/aerial.yaml --sliced --image-size 256 --num-images 16

For the same files, prints images/s of `images.read_image_rgb` alone and of the
training DataLoader (`DetectionDataset` + the config's augmentation + `collate_batch`)
with 0, 1 and 2 workers. Each repeat measures every mode once, one after the other,
so machine load hits all of them alike; medians over repeats are printed, and the
ratio pipeline(1 worker) / decode, plus CPU ms per image of the main process and of
the workers (from /proc), which stay meaningful on a loaded machine where wall
clock numbers swing: with a free core each, one worker delivers 1 / max(main,
worker) images per ms. Workers are persistent and warmed up (one epoch)
before timing, so process start-up is not counted. OpenCV runs single-threaded
everywhere (as in the loader's workers), so each mode uses one core for the work.
`--synthetic-size WxH` times a temporary generated set of JPEGs of that size
(VOC photos are ~500x375) instead of the config's data. Decoding cost grows with
the compressed size, so these are written with film-grain noise at quality 95 to
weigh ~80 KB at 500x375, a little under VOC's photos (~90 KB; a lighter file makes
decoding cheaper and the ratio harder), not the ~35 KB of the clean shapes images;
the mean file size is printed. `--per-transform` first prints the CPU ms per image
of each augment entry alone, in this process, against a plain letterbox
(tools/benchmarks/data_transforms.py). `--sliced` times the data.slice training
loader instead: one decode per tile vs the grouped order with the decoded-image cache,
0 and 2 workers (tools/benchmarks/data_sliced.py).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import click

_PHOTO_NOISE, _PHOTO_QUALITY = 10, 95  # ~80 KB JPEGs at 500x375 (VOC photos: ~90 KB)


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected WIDTHxHEIGHT, e.g. 500x375") from None
    return width, height


def _children_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's live children (Linux /proc).

    DataLoader workers are live child processes; returns 0.0 where /proc lacks the
    `children` files, so the workers column then reads 0.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for children_file in Path("/proc/self/task").glob("*/children"):
        for pid in children_file.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            except (OSError, IndexError, ValueError):
                continue  # the child exited meanwhile
    return total


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--image-size", type=int, default=448, show_default=True, help="network input side S")
@click.option(
    "--num-images", type=int, default=256, show_default=True, help="images per timed pass"
)
@click.option(
    "--synthetic-size", default=None, help="WxH: time generated JPEGs of this size instead"
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="config override")
@click.option(
    "--per-transform",
    is_flag=True,
    help="also: CPU ms per image of each augment entry alone (tools/benchmarks/data_transforms.py)",
)
@click.option(
    "--sliced",
    is_flag=True,
    help="instead: data.slice tiles, one decode per tile vs grouped and cached "
    "(tools/benchmarks/data_sliced.py)",
)
def data(
    config: str,
    image_size: int,
    num_images: int,
    synthetic_size: str | None,
    batch_size: int,
    repeats: int,
    overrides: tuple[str, ...],
    per_transform: bool,
    sliced: bool,
) -> None:
    """Images/s of the training pipeline (0, 1, 2 workers) vs plain decoding."""
    import cv2
    from torch.utils.data import DataLoader, SequentialSampler

    from detector.config import load_config
    from detector.data.augment.transforms import build_train_transform
    from detector.data.catalog import load_split
    from detector.data.images import read_image_rgb
    from detector.data.loading.dataset import DetectionDataset, collate_batch, init_worker
    from detector.data.loading.sampling import SeededSampler
    from detector.data.synthetic.embedded import generate_shapes_dataset
    from detector.data.synthetic.shapes import SHAPE_CLASSES

    cv2.setNumThreads(0)
    cfg = load_config(config, list(overrides) + [f"model.image_size={image_size}"])
    size = _parse_size(synthetic_size)
    with tempfile.TemporaryDirectory(prefix="detector-bench-") as tmp:
        if size is not None:
            root = generate_shapes_dataset(
                Path(tmp) / "data",
                num_train=num_images,
                num_val=0,
                image_size=size,
                seed=0,
                names=list(SHAPE_CLASSES),
                noise=_PHOTO_NOISE,
                jpeg_quality=_PHOTO_QUALITY,
            )
            cfg.data.format, cfg.data.root, cfg.data.synthetic = "voc", str(root), None
            cfg.data.train, cfg.data.names = ["ImageSets/Main/train.txt"], list(SHAPE_CLASSES)
        records = load_split(cfg.data, "train").records[:num_images]
        if not records:
            raise click.ClickException(f"{config}: no training images found")
        paths = [record.image_path for record in records]
        sizes = [f"{r.width}x{r.height}" for r in records]
        kilobytes = statistics.mean(Path(path).stat().st_size for path in paths) / 1024
        click.echo(
            f"{len(records)} images (most common size {max(set(sizes), key=sizes.count)}, "
            f"mean {kilobytes:.0f} KB), "
            f"input {image_size}, batch {batch_size}, augment "
            f"{'default' if cfg.augment is None else cfg.augment}"
        )

        if sliced:
            from benchmarks.data_sliced import sliced_table

            sliced_table(cfg, records, batch_size, repeats)
            return

        loaders = {}
        for workers in (0, 1, 2):
            transform = build_train_transform(cfg.augment, image_size, seed=0)
            loaders[workers] = DataLoader(
                DetectionDataset(records, transform),
                batch_size=batch_size,
                # Per-sample seeds as in training (their set_seed cost is part of the pipeline).
                sampler=SeededSampler(
                    SequentialSampler(records),
                    seed=0,
                    batch_size=batch_size,
                    image_size=image_size,
                    multi_scale=cfg.train.multi_scale,
                ),
                num_workers=workers,
                collate_fn=collate_batch,
                worker_init_fn=init_worker,
                persistent_workers=workers > 0,
            )
            for _ in loaders[workers]:  # warm-up: start workers, fill caches
                pass

        modes = ["decode"] + [f"pipeline {w} workers" for w in loaders]
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu_main: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu_workers: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(repeats):
            for mode in modes:
                main_start, workers_start = time.process_time(), _children_cpu_seconds()
                start = time.perf_counter()
                if mode == "decode":
                    for path in paths:
                        read_image_rgb(path)
                    count = len(paths)
                else:
                    count = sum(len(batch["metas"]) for batch in loaders[int(mode.split()[1])])
                rates[mode].append(count / (time.perf_counter() - start))
                cpu_main[mode].append((time.process_time() - main_start) / count * 1000)
                cpu_workers[mode].append((_children_cpu_seconds() - workers_start) / count * 1000)
        if per_transform:
            from benchmarks.data_transforms import per_transform_table

            per_transform_table(records, image_size, repeats, cfg.augment, cfg.train.multi_scale)

    click.echo(
        f"{'mode':<22}{'median img/s':>14}{'min':>9}{'max':>9}{'cpu ms/img main':>17}{'workers':>9}"
    )
    for mode in modes:
        values = rates[mode]
        click.echo(
            f"{mode:<22}{statistics.median(values):>14.1f}{min(values):>9.1f}{max(values):>9.1f}"
            f"{statistics.median(cpu_main[mode]):>17.2f}{statistics.median(cpu_workers[mode]):>9.2f}"
        )
    decode = statistics.median(rates["decode"])
    decode_cpu = statistics.median(cpu_main["decode"])
    for workers in (0, 1, 2):
        mode = f"pipeline {workers} workers"
        ratio = statistics.median(rates[mode]) / decode
        line = f"ratio {mode} / decode: {ratio:.2f} (wall)"
        if workers == 1:
            # With a core each, one worker's throughput is bounded by its busier process.
            busiest = max(statistics.median(cpu_main[mode]), statistics.median(cpu_workers[mode]))
            line += f", {decode_cpu / busiest:.2f} (cpu: decode ms / busiest process ms)"
        click.echo(line)
