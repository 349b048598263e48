"""Dataset, collate function and DataLoader for training and evaluation.

    from detector.config import load_config
    from detector.data.dataset import build_dataloader
    loader, split = build_dataloader(load_config("configs/shapes.yaml"), "train", train=True)
    batch = next(iter(loader))

Batch format (what `collate_batch` returns, one dict per batch):

    images:  uint8 Tensor[B, 3, S, S], RGB, letterboxed/augmented (S = model.image_size)
    targets: list of B dicts {boxes:  float32 Tensor[N_i, 4] xyxy network-input pixels,
                              labels: int64 Tensor[N_i],
                              ignore: bool Tensor[N_i]}   (N_i may be 0)
    metas:   list of B dicts {image_id: int, path: str, letterbox: Letterbox,
                              replaced: list[str]}

`letterbox` maps network-input boxes back to the original image with
`letterbox.boxes_to_original` (exact for evaluation; for augmented training samples
it is the un-augmented geometry). `replaced` lists images that failed to decode and
were substituted by this sample (normally empty).

Policy for images that fail to decode at load time (e.g. a truncated JPEG that
passed the header check): the sample is replaced by the next decodable one, a
warning names the file, the path goes into `replaced` so the trainer can count it,
and the bad index is not retried by that worker. Workers never crash on one bad file.

Seeding: every worker re-seeds its augmentation stream from torch's per-worker seed
(different per worker and per epoch, reproducible from the DataLoader's generator,
which `build_dataloader` seeds from `train.seed` and the rank).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from detector.config import Config
from detector.data.collate import collate_batch, keep_freed_memory
from detector.data.record import SampleRecord, SplitRecords
from detector.data.transforms import (
    EvalTransform,
    TrainTransform,
    build_eval_transform,
    build_train_transform,
)

Transform = TrainTransform | EvalTransform


def _default_reader() -> Callable[[str], np.ndarray]:
    from detector.data.images import read_image_rgb

    return read_image_rgb


class DetectionDataset(Dataset):
    """Records -> transformed samples (decoded with `images.read_image_rgb`).

    Args:
        records: the samples of one split.
        transform: a TrainTransform or EvalTransform (`detector.data.transforms`).
        read_image: path -> uint8 [H, W, 3] RGB; raises ImageReadError (a ValueError)
            on a bad file. Defaults to `detector.data.images.read_image_rgb`.
        max_replacements: give up (RuntimeError) after this many consecutive bad files.
    """

    def __init__(
        self,
        records: list[SampleRecord],
        transform: Transform,
        *,
        read_image: Callable[[str], np.ndarray] | None = None,
        max_replacements: int = 50,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.read_image = read_image or _default_reader()
        self.max_replacements = max_replacements
        self.failed: dict[int, str] = {}  # index -> reason, per process

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, index: int, replaced: list[str]) -> tuple[int, np.ndarray]:
        """Decode `index`, or the next decodable record; bad paths go into `replaced`."""
        for step in range(min(self.max_replacements, len(self.records))):
            candidate = (index + step) % len(self.records)
            if candidate in self.failed:
                replaced.append(self.records[candidate].image_path)
                continue
            path = self.records[candidate].image_path
            try:
                return candidate, self.read_image(path)
            except (ValueError, OSError) as exc:  # ImageReadError is a ValueError
                reason = getattr(exc, "reason", str(exc))
                self.failed[candidate] = reason
                replaced.append(path)
                warnings.warn(f"{path}: cannot decode ({reason}); skipping it", RuntimeWarning, stacklevel=2)
        raise RuntimeError(
            f"{len(replaced)} images in a row failed to decode (last: {replaced[-1] if replaced else '?'}); "
            "run `detector data check --decode` on the dataset"
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample: image uint8 [S, S, 3] RGB (numpy), boxes/labels/ignore, meta."""
        replaced: list[str] = []
        index, image = self._decode(index, replaced)
        record = self.records[index]
        sample = self.transform(image, record.boxes, record.labels, record.ignore)
        return {
            "image": sample.image,
            "boxes": sample.boxes,
            "labels": sample.labels,
            "ignore": sample.ignore,
            "meta": {"image_id": record.image_id, "path": record.image_path,
                     "letterbox": sample.letterbox, "replaced": replaced},
        }


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: per-worker augmentation stream, single-threaded OpenCV.

    torch gives each worker `base_seed + worker_id`, with a fresh `base_seed` per
    epoch drawn from the loader's generator; seeding from it makes streams differ
    between workers and epochs yet repeat for the same generator seed.
    """
    # One worker = one core: OpenCV's own thread pool would oversubscribe the CPU.
    cv2.setNumThreads(0)
    keep_freed_memory()
    info = get_worker_info()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    if info is not None:
        info.dataset.transform.set_seed(seed)


def build_dataloader(
    cfg: Config,
    split: str,
    *,
    train: bool,
    distributed: bool = False,
    shuffle: bool | None = None,
) -> tuple[DataLoader, SplitRecords]:
    """Load a split and wrap it in a DataLoader (prints skipped files at start-up).

    Args:
        cfg: the whole config (data, model.image_size, augment, train.workers/seed,
            train.batch_size or eval.batch_size).
        split: "train" or "val".
        train: augment (`cfg.augment`, DEFAULT_AUGMENT when null), use
            train.batch_size and drop the last incomplete batch; otherwise a plain
            letterbox with eval.batch_size, keeping every image.
        distributed: shard with a DistributedSampler (torch.distributed initialised);
            call `loader.sampler.set_epoch(epoch)` every epoch.
        shuffle: default `train`.

    Returns:
        (loader, split_records); batches as in the module docstring.

    Raises:
        ValueError: the split has no usable images.
    """
    from detector.data.catalog import format_skipped, load_split

    split_records = load_split(cfg.data, split)
    rank, world_size = 0, 1
    if distributed:
        rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if rank == 0:
        print(format_skipped(split_records.skipped, split), file=sys.stderr)
    if not split_records.records:
        raise ValueError(f"data.{split}: no usable images under {cfg.data.root}")

    seed = cfg.train.seed
    if train:
        transform: Transform = build_train_transform(cfg.augment, cfg.model.image_size, seed=seed + rank)
    else:
        transform = build_eval_transform(cfg.model.image_size)
    dataset = DetectionDataset(split_records.records, transform)
    shuffle = train if shuffle is None else shuffle
    batch_size = cfg.train.batch_size if train else cfg.eval.batch_size
    # Dropping the last partial batch keeps BatchNorm away from tiny batches, unless
    # the dataset is smaller than one batch (then there would be nothing at all).
    drop_last = train and len(dataset) >= batch_size * world_size
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed * 1000 + rank)
    workers = cfg.train.workers
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_batch,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=train and workers > 0,
    )
    return loader, split_records
