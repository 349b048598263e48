"""Benchmark: does the memfd batch hand-over pay for itself? Training images/s with and without it.

    python tools/benchmark.py handover   # resnet18, 448 px, 2 workers, batch 4, 24 steps
    python tools/benchmark.py handover --steps 40 --repeats 5

Two training DataLoaders over the same generated 500x375 JPEGs (VOC-sized, the
default augmentation), identical but for how a worker hands its batch to the main
process: `memfd` (reused shared-memory segments, detector/data/loading/shared_batch.py)
or `plain` (a fresh torch shared-memory tensor per batch, what DataLoader does
by default). Each repeat times `train_one_epoch` once per mode, in alternating
order (memfd first in even repeats, plain first in odd ones), so machine load hits
both alike; it also times the loaders alone (no model), the ceiling a fast
accelerator would see. Printed: medians over repeats and the median of the
per-repeat ratios memfd / plain. A warm-up pass per mode (not timed) starts the
persistent workers. Synthetic data: the numbers measure speed, not accuracy.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path

import click

MODES = ("memfd", "plain")


def _loader_images_per_s(loader: object) -> float:
    """Images/s of iterating `loader` alone (decode, augment, collate, hand-over)."""
    images, start = 0, time.perf_counter()
    for batch in loader:
        images += batch["images"].shape[0]
    return images / max(time.perf_counter() - start, 1e-9)


@click.command()
@click.option(
    "--steps", type=int, default=24, show_default=True, help="optimizer steps per timed epoch"
)
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader workers")
@click.option("--image-size", type=int, default=448, show_default=True)
@click.option("--backbone", default="resnet18", show_default=True)
@click.option("--repeats", type=int, default=4, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="auto | cpu | cuda | cuda:N")
def handover(
    steps: int,
    batch_size: int,
    workers: int,
    image_size: int,
    backbone: str,
    repeats: int,
    device: str,
) -> None:
    """Training (and loader-only) images/s with the memfd hand-over vs torch's own, side by side."""
    import torch

    from detector.config import Config
    from detector.data.loading.collate import collate_batch
    from detector.data.loading.dataset import build_dataloader
    from detector.data.synthetic.embedded import generate_shapes_dataset
    from detector.data.synthetic.shapes import SHAPE_CLASSES
    from detector.model.build import build_loss, build_model
    from detector.training.distributed import local_device
    from detector.training.engine import NanGuard, TrainState, build_train_parts, train_one_epoch

    torch_device = local_device(device)
    names = list(SHAPE_CLASSES)
    with tempfile.TemporaryDirectory(prefix="detector-handover-bench-") as tmp:
        root = generate_shapes_dataset(
            Path(tmp) / "data",
            num_train=steps * batch_size,
            num_val=0,
            image_size=(500, 375),
            seed=0,
            names=names,
        )
        cfg = Config()
        cfg.data.format, cfg.data.root, cfg.data.names = "voc", str(root), names
        cfg.data.train = ["ImageSets/Main/train.txt"]
        cfg.model.backbone, cfg.model.image_size = backbone, image_size
        cfg.train.batch_size, cfg.train.workers, cfg.train.device = batch_size, workers, device
        loaders = {mode: build_dataloader(cfg, "train", train=True)[0] for mode in MODES}
        loaders["plain"].collate_fn = functools.partial(collate_batch, reuse_segments=False)
        model = build_model(cfg.model, len(names)).to(torch_device)
        loss_fn = build_loss(cfg.model, len(names)).to(torch_device)
        parts = build_train_parts(
            model, loss_fn, cfg.train, device=torch_device, steps_per_epoch=steps
        )
        click.echo(
            f"{backbone} {image_size}px on {torch_device}, batch {batch_size}, "
            f"{steps} steps x {repeats} repeats per mode, {workers} workers, "
            f"torch threads {torch.get_num_threads()}"
        )

        train_ips: dict[str, list[float]] = {mode: [] for mode in MODES}
        loader_ips: dict[str, list[float]] = {mode: [] for mode in MODES}
        for repeat in range(repeats + 1):  # repeat 0 is the warm-up
            order = MODES if repeat % 2 == 0 else MODES[::-1]
            for mode in order:
                loader = loaders[mode]
                loader.sampler.set_epoch(repeat)
                stats = train_one_epoch(
                    parts,
                    loader,
                    TrainState(planned_epochs=1),
                    cfg.train,
                    epoch=0,
                    planned_epochs=1,
                    nan_guard=NanGuard("skip", 10**9),
                    show_progress=False,
                )
                if torch_device.type == "cuda":
                    torch.cuda.synchronize()
                alone = _loader_images_per_s(loader)
                if repeat:
                    train_ips[mode].append(stats["images_per_s"])
                    loader_ips[mode].append(alone)
            if repeat:  # as it goes: a run cut short still says what it measured
                click.echo(
                    f"repeat {repeat}: training "
                    + ", ".join(f"{m} {train_ips[m][-1]:.2f}" for m in MODES)
                    + "; loader alone "
                    + ", ".join(f"{m} {loader_ips[m][-1]:.1f}" for m in MODES)
                    + " img/s"
                )

    click.echo(f"{'what':<16}{'mode':<7}{'median img/s':>14}{'min':>9}{'max':>9}")
    for label, figures in (("training", train_ips), ("loader alone", loader_ips)):
        for mode in MODES:
            values = figures[mode]
            click.echo(
                f"{label:<16}{mode:<7}{statistics.median(values):>14.2f}{min(values):>9.2f}{max(values):>9.2f}"
            )
        ratios = [
            memfd / plain for memfd, plain in zip(figures["memfd"], figures["plain"], strict=True)
        ]
        click.echo(
            f"{label:<16}memfd / plain: median {statistics.median(ratios):.3f} "
            f"(per repeat {', '.join(f'{r:.3f}' for r in ratios)})"
        )
