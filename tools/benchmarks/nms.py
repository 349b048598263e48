"""NMS benchmark: medians of nms / batched_nms / multi_image_nms on clustered boxes.

    python tools/benchmark.py nms
    python tools/benchmark.py nms --repeats 50 --sizes 1000,3000,10000

Boxes are clustered like a detector's raw output: many jittered copies around a few
objects plus low-scored background boxes (`clustered_boxes`). On CPU it times the
compiled path (numba, when installed) and the pure-torch fallback side by side and
prints their ratio; on CUDA (when present) the torch path on the GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import click
import torch
from torch import Tensor


def clustered_boxes(
    num_boxes: int,
    *,
    num_objects: int = 20,
    num_classes: int = 20,
    image_size: float = 1024.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Synthetic raw detections: 90% jittered around `num_objects` objects, 10% background.

    Args:
        num_boxes: number of boxes N.
        num_objects: objects the boxes cluster around.
        num_classes: labels are drawn from [0, num_classes); a box mostly takes its object's.
        image_size: side of the square image in pixels; boxes stay inside it.
        generator: torch.Generator for reproducibility.
    Returns:
        boxes float32 [N, 4] xyxy pixels, scores float32 [N] in (0, 1), labels int64 [N].
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    object_size = 24 + torch.rand(num_objects, 2, generator=gen) * (image_size / 4)
    object_centre = object_size / 2 + torch.rand(num_objects, 2, generator=gen) * (
        image_size - object_size
    )
    object_label = torch.randint(num_classes, (num_objects,), generator=gen)
    owner = torch.randint(num_objects, (num_boxes,), generator=gen)
    size = object_size[owner] * torch.exp(0.15 * torch.randn(num_boxes, 2, generator=gen))
    centre = object_centre[owner] + 0.12 * object_size[owner] * torch.randn(
        num_boxes, 2, generator=gen
    )
    scores = 0.3 + 0.7 * torch.rand(num_boxes, generator=gen)
    labels = object_label[owner].clone()
    relabel = torch.rand(num_boxes, generator=gen) < 0.2  # confused classes
    labels[relabel] = torch.randint(num_classes, (int(relabel.sum()),), generator=gen)

    background = torch.rand(num_boxes, generator=gen) < 0.1
    count = int(background.sum())
    size[background] = 8 + torch.rand(count, 2, generator=gen) * (image_size / 8)
    centre[background] = torch.rand(count, 2, generator=gen) * image_size
    scores[background] = 0.3 * torch.rand(count, generator=gen)

    boxes = torch.cat((centre - size / 2, centre + size / 2), dim=1).clamp(0, image_size)
    return boxes, scores, labels


def sync(device: torch.device) -> None:
    """Wait for `device`'s queued work (CUDA runs asynchronously), so timers read real time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    functions: list[Callable[[], object]], repeats: int, device: torch.device
) -> list[float]:
    """Median wall time of each function, runs interleaved so machine noise hits all alike.

    Args:
        functions: zero-argument callables to time; each runs once first as a warm-up.
        repeats: timed runs of each.
        device: where they run (CUDA is synchronised around each run).
    Returns:
        one median in seconds per function.
    """
    times: list[list[float]] = [[] for _ in functions]
    for function in functions:
        function()
    for _ in range(repeats):
        for function, samples in zip(functions, times, strict=True):
            sync(device)
            start = time.perf_counter()
            function()
            sync(device)
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def _with_backend(function: Callable[[], object], backend: str) -> Callable[[], object]:
    """`function` run with the CPU greedy pass forced to `backend` ("numba" or "torch")."""
    from detector._postprocess import greedy

    def run() -> object:
        greedy.CPU_BACKEND = backend
        try:
            return function()
        finally:
            greedy.CPU_BACKEND = "auto"

    return run


def _cases(sizes: list[int], batch: tuple[int, int, int], device: torch.device):
    """(name, callable) pairs timed on `device`; all inputs built once up front."""
    from detector.postprocess import batched_nms, multi_image_nms, nms

    gen = torch.Generator().manual_seed(0)
    for num_boxes in sizes:
        boxes, scores, labels = (t.to(device) for t in clustered_boxes(num_boxes, generator=gen))
        yield f"nms {num_boxes}", lambda b=boxes, s=scores: nms(b, s, 0.5)
        yield (
            f"batched_nms {num_boxes}",
            lambda b=boxes, s=scores, c=labels: batched_nms(b, s, c, 0.5),
        )
    num_images, per_image, num_classes = batch
    parts = [
        clustered_boxes(per_image, num_classes=num_classes, generator=gen)
        for _ in range(num_images)
    ]
    boxes, scores, labels = (torch.cat(p).to(device) for p in zip(*parts, strict=True))
    image_index = torch.arange(num_images).repeat_interleave(per_image).to(device)
    yield (
        f"multi_image_nms {num_images}x{per_image}x{num_classes}",
        lambda: multi_image_nms(
            boxes, scores, labels, image_index, 0.5, num_images=num_images, max_det=100
        ),
    )


@click.command()
@click.option("--repeats", default=20, show_default=True, help="Timed runs per case.")
@click.option(
    "--sizes", default="1000,3000,10000", show_default=True, help="Box counts for nms/batched_nms."
)
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads on CPU.")
def nms(repeats: int, sizes: str, threads: int) -> None:
    """Median times of nms, batched_nms and multi_image_nms on clustered boxes."""
    from detector._postprocess import greedy_numba

    torch.set_num_threads(threads)
    box_counts = [int(part) for part in sizes.split(",") if part]
    batch = (32, 1000, 20)
    cpu = torch.device("cpu")
    backends = ["numba", "torch"] if greedy_numba.AVAILABLE else ["torch"]
    click.echo(f"CPU, {threads} thread(s), IoU 0.5, median of {repeats} runs (ms)")
    click.echo(
        f"{'case':<34}"
        + "".join(f"{name:>10}" for name in backends)
        + (f"{'torch/numba':>13}" if len(backends) == 2 else "")
    )
    for name, function in _cases(box_counts, batch, cpu):
        functions = [_with_backend(function, backend) for backend in backends]
        medians = [seconds * 1e3 for seconds in median_seconds(functions, repeats, cpu)]
        line = f"{name:<34}" + "".join(f"{value:>10.3f}" for value in medians)
        if len(medians) == 2:
            line += f"{medians[1] / medians[0]:>12.1f}x"
        click.echo(line)

    if torch.cuda.is_available():
        device = torch.device("cuda")
        click.echo(f"\nCUDA ({torch.cuda.get_device_name(device)}), median of {repeats} runs (ms)")
        for name, function in _cases(box_counts, batch, device):
            (seconds,) = median_seconds([function], repeats, device)
            click.echo(f"{name:<34}{seconds * 1e3:>10.3f}")
