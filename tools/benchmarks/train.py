"""Benchmark: training images/s and the share of step time spent waiting for data.

    python tools/benchmark.py train                       # CPU: batch 4, 3 timed steps per repeat
    python tools/benchmark.py train --steps 20 --batch-size 64 --workers 8   # on a GPU (bf16 AMP)

Times `train_one_epoch` itself (forward, loss, backward, clipping, optimizer and
EMA step, real DataLoader with the default augmentation on generated 500x375
JPEGs) for resnet18 and resnet50 at 256 and 448 px. Each repeat runs every
configuration once, one after the other, so machine load hits all alike; the
printed figures are medians over repeats, plus each configuration's cost relative
to resnet18 at 256. A warm-up pass per configuration (not timed) starts workers and
fills allocator caches. Synthetic data: the numbers measure speed, not accuracy.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import click

CASES = [("resnet18", 256), ("resnet18", 448), ("resnet50", 256), ("resnet50", 448)]


@click.command()
@click.option(
    "--steps", type=int, default=3, show_default=True, help="timed optimizer steps per repeat"
)
@click.option("--batch-size", type=int, default=None, help="default: 4 on CPU, 32 on CUDA")
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader workers")
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
def train(steps: int, batch_size: int | None, workers: int, repeats: int, device: str) -> None:
    """Training images/s and data-wait fraction: resnet18/50 at 256/448 px."""
    import torch

    from detector.config import Config
    from detector.data.loading.dataset import build_dataloader
    from detector.data.synthetic.embedded import generate_shapes_dataset
    from detector.data.synthetic.shapes import SHAPE_CLASSES
    from detector.model.build import build_loss, build_model
    from detector.training.distributed import local_device
    from detector.training.engine import NanGuard, TrainState, build_train_parts, train_one_epoch

    torch_device = local_device(device)
    batch_size = batch_size or (32 if torch_device.type == "cuda" else 4)
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    names = list(SHAPE_CLASSES)
    with tempfile.TemporaryDirectory(prefix="detector-train-bench-") as tmp:
        root = generate_shapes_dataset(
            Path(tmp) / "data",
            num_train=steps * batch_size,
            num_val=0,
            image_size=(500, 375),
            seed=0,
            names=names,
        )
        runs = {}
        for backbone, size in CASES:
            cfg = Config()
            cfg.data.format, cfg.data.root, cfg.data.names = "voc", str(root), names
            cfg.data.train = ["ImageSets/Main/train.txt"]
            cfg.model.backbone, cfg.model.image_size = backbone, size
            cfg.train.batch_size, cfg.train.workers, cfg.train.device = batch_size, workers, device
            loader, _ = build_dataloader(cfg, "train", train=True)
            model = build_model(cfg.model, len(names)).to(torch_device)
            loss_fn = build_loss(cfg.model, len(names)).to(torch_device)
            parts = build_train_parts(
                model, loss_fn, cfg.train, device=torch_device, steps_per_epoch=len(loader)
            )
            runs[(backbone, size)] = (cfg, loader, parts)
        amp = runs[CASES[0]][2].amp_dtype
        click.echo(
            f"device {torch_device}, AMP {amp or 'off'}, batch {batch_size}, "
            f"{steps} steps x {repeats} repeats, {workers} workers, "
            f"torch threads {torch.get_num_threads()}"
        )

        results: dict[tuple[str, int], dict[str, list[float]]] = {
            case: {"ips": [], "wait": []} for case in CASES
        }
        for repeat in range(repeats + 1):  # repeat 0 is the warm-up
            for case, (cfg, loader, parts) in runs.items():
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
                if repeat:
                    results[case]["ips"].append(stats["images_per_s"])
                    results[case]["wait"].append(stats["data_wait_fraction"])

    reference = statistics.median(results[CASES[0]]["ips"])
    click.echo(
        f"{'backbone':<10}{'size':>6}{'median img/s':>14}{'min':>8}{'max':>8}"
        f"{'data wait':>11}{'cost vs r18@256':>17}"
    )
    for (backbone, size), values in results.items():
        median = statistics.median(values["ips"])
        click.echo(
            f"{backbone:<10}{size:>6}{median:>14.2f}{min(values['ips']):>8.2f}{max(values['ips']):>8.2f}"
            f"{statistics.median(values['wait']):>10.1%}{reference / median:>16.2f}x"
        )
