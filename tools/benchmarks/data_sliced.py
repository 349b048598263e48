"""Training loader speed under data.slice: one decode per tile vs the grouped order with the
decoded-image cache, with 0 and 2 workers, side by side.

    python tools/benchmark.py data configs/aerial.yaml --sliced --image-size 256 --num-images 16

Used by `tools/benchmark.py data --sliced` (tools/benchmarks/data.py). The tile samples
of the config's first `--num-images` training images (`data.slice`, as training cuts
them) go through the training loader two ways: "per tile" is a RandomSampler's order
over an uncached dataset (data.slice.group_images: 0; every sample decodes its image)
and "grouped" the `GroupedSampler` order with each dataset copy caching
`data.slice.group_images` decoded images (the training default). Each repeat runs one
epoch of every mode, one after the other (all modes of a repeat share the epoch
number), so machine load hits them alike; workers are persistent and warmed up by one
epoch first. Printed: samples/s (medians over repeats, min, max), CPU ms per sample of
the main process and of the workers (from /proc: steadier than wall clock on a loaded
machine), and grouped / per-tile ratios.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import click


def _loader(cfg: Any, samples: list, group_images: int, workers: int, batch_size: int) -> Any:
    """The training DataLoader of `samples` with or without grouping and cache."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from detector.data.augment.transforms import build_train_transform
    from detector.data.loading.dataset import DetectionDataset, collate_batch, init_worker
    from detector.data.loading.grouping import GroupedSampler, image_groups
    from detector.data.loading.sampling import SeededSampler

    transform = build_train_transform(cfg.augment, cfg.model.image_size, seed=0)
    dataset = DetectionDataset(samples, transform, cache_images=group_images)
    inner = (
        GroupedSampler(
            image_groups(samples), images_per_window=group_images, generator=torch.Generator()
        )
        if group_images
        else RandomSampler(samples, generator=torch.Generator())
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SeededSampler(
            inner, seed=0, batch_size=batch_size, image_size=cfg.model.image_size
        ),
        num_workers=workers,
        collate_fn=collate_batch,
        worker_init_fn=init_worker,
        persistent_workers=workers > 0,
        drop_last=True,
    )


def sliced_table(cfg: Any, records: list, batch_size: int, repeats: int) -> None:
    """Print samples/s of the sliced training loader, per tile vs grouped, 0 and 2 workers.

    Args:
        cfg: the config (data.slice set; model.image_size is the input side).
        records: the training images whose tiles are timed.
        batch_size: samples per batch.
        repeats: timed epochs per mode (medians printed).
    """
    from benchmarks.data import _children_cpu_seconds
    from benchmarks.ladder import cpu_model
    from detector.data.loading.dataset import slice_training_records

    if cfg.data.slice is None:
        raise click.ClickException("--sliced needs data.slice in the config")
    group_images = cfg.data.slice.group_images or 8
    samples, summary = slice_training_records(cfg, records)
    click.echo(f"CPU: {cpu_model()}")
    click.echo(f"data.slice: {summary}; group_images {group_images}, batch {batch_size}")
    loaders = {}
    for workers in (0, 2):
        for grouped in (False, True):
            mode = f"{'grouped' if grouped else 'per tile'}, {workers} workers"
            loader = _loader(cfg, samples, group_images if grouped else 0, workers, batch_size)
            loader.sampler.set_epoch(0)
            for _ in loader:  # warm-up: start workers, fill the page cache
                pass
            loaders[mode] = loader
    rates: dict[str, list[float]] = {mode: [] for mode in loaders}
    cpu_main: dict[str, list[float]] = {mode: [] for mode in loaders}
    cpu_workers: dict[str, list[float]] = {mode: [] for mode in loaders}
    for repeat in range(repeats):
        for mode, loader in loaders.items():
            loader.sampler.set_epoch(repeat + 1)
            main_start, workers_start = time.process_time(), _children_cpu_seconds()
            start = time.perf_counter()
            count = sum(len(batch["metas"]) for batch in loader)
            rates[mode].append(count / (time.perf_counter() - start))
            cpu_main[mode].append((time.process_time() - main_start) / count * 1000)
            cpu_workers[mode].append((_children_cpu_seconds() - workers_start) / count * 1000)
    click.echo(
        f"{'mode':<22}{'median samples/s':>18}{'min':>9}{'max':>9}"
        f"{'cpu ms/sample main':>20}{'workers':>9}"
    )
    for mode in loaders:
        values = rates[mode]
        click.echo(
            f"{mode:<22}{statistics.median(values):>18.1f}{min(values):>9.1f}{max(values):>9.1f}"
            f"{statistics.median(cpu_main[mode]):>20.2f}"
            f"{statistics.median(cpu_workers[mode]):>9.2f}"
        )
    for workers in (0, 2):
        tiles, grouped = f"per tile, {workers} workers", f"grouped, {workers} workers"
        wall = statistics.median(rates[grouped]) / statistics.median(rates[tiles])
        busy = "main" if workers == 0 else "workers"
        table = cpu_main if workers == 0 else cpu_workers
        cpu = statistics.median(table[tiles]) / statistics.median(table[grouped])
        click.echo(
            f"ratio grouped / per tile, {workers} workers: {wall:.2f} (wall), "
            f"{cpu:.2f} (cpu ms/sample of the {busy}, per tile / grouped)"
        )
