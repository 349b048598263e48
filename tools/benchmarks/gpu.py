"""Benchmark: every GPU figure in one command (issue 14's GPU bar), sized to finish in < 8 min.

    python tools/benchmark.py gpu                       # on a CUDA machine
    python tools/benchmark.py gpu --onnx model.onnx     # + ONNX Runtime on CUDA (an exported file)

Prints, on one GPU:
  1. training images/s and data-wait fraction, resnet18 and resnet50 at 448 px,
     bf16 AMP, channels_last: synthetic batches already on the GPU (compute
     only) and the real DataLoader with 16 workers (compute + input);
  2. forward frames/s in fp16 at batch 1 and 8 (`Detector` preprocessing + model);
  3. batched NMS on CUDA vs the CPU path (and vs torchvision's CUDA kernel where
     torchvision imports);
  4. ONNX Runtime on CUDA when onnxruntime with CUDAExecutionProvider is
     installed and `--onnx FILE` names an exported model; otherwise says why not.
Without CUDA it says so and exits 0. The functions below take a device and
sizes, so tests/benchmarks/test_gpu.py runs each path at tiny sizes on the CPU
(and the script itself with `--device cpu --image-size 64 ...`).

Imports stay clear of albumentations and pycocotools (absent on the device
machine) except for the real-DataLoader rows, which need albumentations and are
skipped with a message when it does not import.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import click
import torch

from benchmarks.nms import clustered_boxes, median_seconds, sync


def _imports(name: str) -> bool:
    """Whether `name` imports here (the device machine lacks albumentations)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _parts(
    backbone: str, image_size: int, batch_size: int, device: torch.device, num_classes: int = 5
):
    """Model, loss, optimizer, schedule and train config
    (bf16 AMP on CUDA, channels_last from build_model)."""
    from detector.config import Config
    from detector.model.build import build_loss, build_model
    from detector.training.engine import build_train_parts

    cfg = Config()
    cfg.model.backbone, cfg.model.image_size = backbone, image_size
    cfg.train.batch_size, cfg.train.amp, cfg.train.amp_dtype = batch_size, True, "bf16"
    model = build_model(cfg.model, num_classes).to(device)
    loss_fn = build_loss(cfg.model, num_classes).to(device)
    return cfg, build_train_parts(model, loss_fn, cfg.train, device=device, steps_per_epoch=1000)


def synthetic_batches(
    count: int, batch_size: int, image_size: int, device: torch.device, num_classes: int = 5
) -> list[dict]:
    """`count` collated batches (uint8 images, 3 boxes each) already on `device`: no input cost."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        images = torch.randint(
            0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, generator=gen
        )
        targets = []
        for _ in range(batch_size):
            xy = torch.rand(3, 2, generator=gen) * image_size * 0.6
            wh = 16 + torch.rand(3, 2, generator=gen) * image_size * 0.3
            targets.append(
                {
                    "boxes": torch.cat((xy, xy + wh), 1).to(device),
                    "labels": torch.randint(0, num_classes, (3,), generator=gen).to(device),
                    "ignore": torch.zeros(3, dtype=torch.bool, device=device),
                }
            )
        batches.append({"images": images.to(device), "targets": targets})
    return batches


def train_rates(parts, loader, train_cfg, repeats: int) -> tuple[float, float]:
    """Median images/s and data-wait fraction of `repeats` passes of `train_one_epoch`
    (after one warm-up)."""
    from detector.training.engine import NanGuard, TrainState, train_one_epoch

    rates, waits = [], []
    for repeat in range(repeats + 1):
        stats = train_one_epoch(
            parts,
            loader,
            TrainState(planned_epochs=1),
            train_cfg,
            epoch=0,
            planned_epochs=1,
            nan_guard=NanGuard("skip", 10**9),
            show_progress=False,
        )
        sync(parts.device)
        if repeat:
            rates.append(stats["images_per_s"])
            waits.append(stats["data_wait_fraction"])
    return statistics.median(rates), statistics.median(waits)


def real_loader(root: Path, image_size: int, batch_size: int, workers: int):
    """The training DataLoader (default augmentation) over the generated dataset at `root`."""
    from detector.config import Config
    from detector.data.loading.dataset import build_dataloader  # needs albumentations
    from detector.data.synthetic.shapes import SHAPE_CLASSES

    cfg = Config()
    cfg.data.format, cfg.data.root, cfg.data.names = "voc", str(root), list(SHAPE_CLASSES)
    cfg.data.train = ["ImageSets/Main/train.txt"]
    cfg.model.image_size = image_size
    cfg.train.batch_size, cfg.train.workers = batch_size, workers
    loader, _ = build_dataloader(cfg, "train", train=True)
    return loader


def detect_fps(
    backbone: str, image_size: int, batch_size: int, frames: int, device: torch.device
) -> float:
    """Frames/s of `Detector` preprocessing + fp16 forward on one 640x480 frame repeated."""
    import numpy as np

    from benchmarks.detect import forward_fps
    from detector.config import ModelConfig
    from detector.inference.predictor import Detector
    from detector.model.build import build_model

    model = build_model(ModelConfig(backbone=backbone, image_size=image_size), 5)
    detector = Detector(
        model, names=[str(i) for i in range(5)], image_size=image_size, device=device, half=True
    )
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return forward_fps(detector, frame, frames, batch_size=batch_size)


def nms_seconds(num_boxes: int, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds of batched NMS: ours on `device`, ours on CPU,
    torchvision's on `device` if it imports."""
    from detector.postprocess import batched_nms

    boxes, scores, labels = clustered_boxes(num_boxes, generator=torch.Generator().manual_seed(0))
    on_device = [t.to(device) for t in (boxes, scores, labels)]
    names = [f"ours {device.type}", "ours cpu"]
    functions = [
        lambda: batched_nms(*on_device, 0.5),
        lambda: batched_nms(boxes, scores, labels, 0.5),
    ]
    if importlib.util.find_spec("torchvision") is not None:
        from torchvision.ops import batched_nms as tv_batched_nms

        names.append(f"torchvision {device.type}")
        functions.append(lambda: tv_batched_nms(*on_device, 0.5))
    return dict(zip(names, median_seconds(functions, repeats, device), strict=True))


def onnx_cuda_fps(
    onnx_path: Path | None, image_size: int, batch_size: int, frames: int
) -> float | str:
    """Frames/s of ONNX Runtime's CUDA provider on `onnx_path`, or the reason it was skipped."""
    if onnx_path is None:
        return "skipped: no --onnx FILE given (export a model first)"
    if importlib.util.find_spec("onnxruntime") is None:
        return "skipped: onnxruntime is not installed"
    import numpy as np
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "skipped: onnxruntime has no CUDAExecutionProvider"
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    feed = {
        session.get_inputs()[0].name: np.random.default_rng(0).random(
            (batch_size, 3, image_size, image_size), dtype=np.float32
        )
    }
    session.run(None, feed)  # warm-up
    runs = max(1, frames // batch_size)
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    return runs * batch_size / (time.perf_counter() - start)


def run_all(
    device: torch.device,
    *,
    image_size: int,
    batch_size: int,
    steps: int,
    repeats: int,
    workers: int,
    frames: int,
    nms_boxes: int,
    onnx_path: Path | None,
    echo=click.echo,
) -> None:
    """Measure and print every figure on `device`
    (the CLI uses the GPU sizes; tests tiny CPU ones)."""
    torch.backends.cudnn.benchmark = True  # fixed input sizes
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    echo(
        f"device {device} ({device_name}), "
        f"torch {torch.__version__}, {image_size} px, batch {batch_size}, "
        f"{steps} steps x {repeats} repeats"
    )
    have_albumentations = _imports("albumentations")
    with tempfile.TemporaryDirectory(prefix="detector-gpu-bench-") as tmp:
        root = None
        if have_albumentations:
            from detector.data.synthetic.embedded import generate_shapes_dataset
            from detector.data.synthetic.shapes import SHAPE_CLASSES

            root = generate_shapes_dataset(
                Path(tmp) / "data",
                num_train=steps * batch_size,
                num_val=0,
                image_size=(500, 375),
                seed=0,
                names=list(SHAPE_CLASSES),
            )
        echo(f"{'training (bf16 AMP, channels_last)':<40}{'img/s':>10}{'data wait':>11}")
        for backbone in ("resnet18", "resnet50"):
            cfg, parts = _parts(backbone, image_size, batch_size, device)
            ips, wait = train_rates(
                parts, synthetic_batches(steps, batch_size, image_size, device), cfg.train, repeats
            )
            echo(f"{backbone + ' synthetic on-device batches':<40}{ips:>10.1f}{wait:>10.1%}")
            if root is None:
                echo(
                    f"{backbone + f' DataLoader x{workers}':<40}  "
                    "skipped: albumentations does not import "
                    "(carry its wheels, docs/benchmarks.md 'GPU')"
                )
                continue
            ips, wait = train_rates(
                parts, real_loader(root, image_size, batch_size, workers), cfg.train, repeats
            )
            echo(f"{backbone + f' DataLoader x{workers} workers':<40}{ips:>10.1f}{wait:>10.1%}")
            del parts
    echo(f"{'detect, fp16 forward':<40}{'frames/s':>10}")
    for backbone in ("resnet18", "resnet50"):
        for batch in (1, 8):
            fps = detect_fps(backbone, image_size, batch, frames, device)
            echo(f"{f'{backbone} batch {batch}':<40}{fps:>10.1f}")
    echo(f"batched NMS, {nms_boxes} clustered boxes (median ms)")
    seconds = nms_seconds(nms_boxes, device, max(repeats * 10, 3))
    reference = seconds[f"ours {device.type}"]
    for name, value in seconds.items():
        echo(f"  {name:<38}{value * 1e3:>10.3f}{value / reference:>9.2f}x")
    result = onnx_cuda_fps(onnx_path, image_size, 8, frames)
    echo(
        f"ONNX Runtime CUDA, batch 8: {result:.1f} frames/s"
        if isinstance(result, float)
        else f"ONNX Runtime CUDA: {result}"
    )


@click.command()
@click.option(
    "--steps", type=int, default=20, show_default=True, help="optimizer steps per timed pass"
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option(
    "--workers",
    type=int,
    default=16,
    show_default=True,
    help="DataLoader workers (real-loader rows)",
)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="an exported model for the ONNX Runtime CUDA row",
)
@click.option(
    "--device",
    default="cuda",
    show_default=True,
    help="cuda | cuda:N; cpu runs every row at whatever sizes are given (a smoke test)",
)
@click.option("--image-size", type=int, default=448, show_default=True)
@click.option("--frames", type=int, default=200, show_default=True, help="frames per detect row")
@click.option("--nms-boxes", type=int, default=10_000, show_default=True)
def gpu(
    steps: int,
    batch_size: int,
    workers: int,
    repeats: int,
    onnx_path: Path | None,
    device: str,
    image_size: int,
    frames: int,
    nms_boxes: int,
) -> None:
    """Every GPU figure: training (synthetic vs DataLoader), detect fp16, NMS, ONNX Runtime."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        click.echo("gpu: no CUDA device here; nothing measured (run this on a machine with a GPU)")
        return
    run_all(
        resolved,
        image_size=image_size,
        batch_size=batch_size,
        steps=steps,
        repeats=repeats,
        workers=workers,
        frames=frames,
        nms_boxes=nms_boxes,
        onnx_path=onnx_path,
    )
