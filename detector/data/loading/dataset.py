"""Dataset, collate function and DataLoader for training and evaluation.

    from detector.config import load_config
    from detector.data.loading.dataset import build_dataloader
    loader, split = build_dataloader(load_config("configs/shapes.yaml"), "train", train=True)
    batch = next(iter(loader))

Batch format (what `collate_batch` returns, one dict per batch):

    images:  uint8 Tensor[B, 3, S, S], RGB, letterboxed/augmented (S = model.image_size,
             or the batch's side under train.multi_scale)
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

Seeding: a training loader's sampler is a `sampling.SeededSampler`, which yields
(index, sample_seed, plan) triples, sample_seed a pure function of (train.seed,
rank, epoch, position) and plan the mosaic switch and the batch's input side.
`DetectionDataset[(index, sample_seed, plan)]` builds the sample from them alone
(`detector.data.augment.multi_image.augment_sample`: mosaic and mixup partners
come from sample_seed's streams, then the transform is re-seeded with it; a
replacement for an undecodable image is augmented with the same seed), so batches
are identical for any number of workers and `--resume` replays them exactly; call
`loader.sampler.set_epoch(epoch)` every epoch. A plain integer index (evaluation)
leaves the transform's stream as it is.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
)

from detector.config import Config
from detector.data.augment.multi_image import augment_sample
from detector.data.augment.transforms import (
    EvalTransform,
    TrainTransform,
    build_eval_transform,
    build_train_transform,
)
from detector.data.loading import UndecodableImagesError  # noqa: F401 (raised here)
from detector.data.loading.collate import collate_batch
from detector.data.loading.grouping import (
    DecodedImages,
    DistributedGroupedSampler,
    GroupedSampler,
    image_groups,
)
from detector.data.loading.memory import keep_freed_memory
from detector.data.loading.sampling import SeededSampler
from detector.data.loading.worker_signals import worker_signal_setup
from detector.data.record import SampleRecord, SplitRecords
from detector.data.tiles import TilingSummary, training_samples

Transform = TrainTransform | EvalTransform


def _default_reader() -> Callable[[str], np.ndarray]:
    from detector.data.images import read_image_rgb

    return read_image_rgb


def _crop(image: np.ndarray, record: SampleRecord) -> np.ndarray:
    """The part of a decoded image that `record` describes: all of it, or a copy of its tile
    (a copy even where the tile is a contiguous view, so the full image is freed or stays
    unchanged in the decoded-image cache).

    Raises:
        ValueError: the image is smaller than the tile (the file changed after it was read).
    """
    if record.window is None:
        return image
    x1, y1, x2, y2 = record.window
    if image.shape[0] < y2 or image.shape[1] < x2:
        raise ValueError(
            f"decoded {image.shape[1]}x{image.shape[0]}, smaller than its tile "
            f"{record.window} (the file changed since it was read?)"
        )
    return image[y1:y2, x1:x2].copy()


class DetectionDataset(Dataset):
    """Records -> transformed samples (decoded with `images.read_image_rgb`; a tile record,
    `window` set, is cut from its decoded image before any augmentation).

    Args:
        records: the samples of one split.
        transform: a TrainTransform or EvalTransform (`detector.data.augment.transforms`).
        read_image: path -> uint8 [H, W, 3] RGB; raises ImageReadError (a ValueError)
            on a bad file. Defaults to `detector.data.images.read_image_rgb`.
        max_replacements: give up (UndecodableImagesError) after this many consecutive bad files.
        cache_images: keep this many decoded images (least recently used out; at most
            `grouping.CACHE_MAX_BYTES`), so the tiles of one image decode it once
            (data.slice.group_images; 0: every sample decodes its image). Each DataLoader
            worker holds its own copy. Mosaic and mixup partners use it but do not fill it.
    """

    def __init__(
        self,
        records: list[SampleRecord],
        transform: Transform,
        *,
        read_image: Callable[[str], np.ndarray] | None = None,
        max_replacements: int = 50,
        cache_images: int = 0,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.read_image = read_image or _default_reader()
        self.max_replacements = max_replacements
        self.cache = DecodedImages(cache_images) if cache_images > 0 else None
        self.failed: dict[int, str] = {}  # index -> reason, per process

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, path: str, *, keep: bool) -> np.ndarray:
        """The decoded image at `path`: from the cache, or read (and cached when `keep`)."""
        if self.cache is None:
            return self.read_image(path)
        image = self.cache.get(path)
        if image is None:
            image = self.read_image(path)
            if keep:
                self.cache.put(path, image)
        return image

    def _decode(
        self, index: int, replaced: list[str], *, keep: bool = True
    ) -> tuple[int, np.ndarray]:
        """Decode `index`, or the next decodable record; bad paths go into `replaced`.

        `keep`: a newly decoded image enters the cache (a random partner's does not:
        it would push out an image the window's next tiles need).
        """
        for step in range(min(self.max_replacements, len(self.records))):
            candidate = (index + step) % len(self.records)
            if candidate in self.failed:
                replaced.append(self.records[candidate].image_path)
                continue
            path = self.records[candidate].image_path
            try:
                full = self._read(path, keep=keep)
                image = _crop(full, self.records[candidate])
                # A whole-image sample hands the transform its own copy, never the cached one.
                return (
                    candidate,
                    image.copy() if image is full and self.cache is not None else image,
                )
            except (ValueError, OSError) as exc:  # ImageReadError is a ValueError
                reason = getattr(exc, "reason", str(exc))
                self.failed[candidate] = reason
                replaced.append(path)
                warnings.warn(
                    f"{path}: cannot decode ({reason}); skipping it", RuntimeWarning, stacklevel=2
                )
        last = replaced[-1] if replaced else "?"
        raise UndecodableImagesError(
            f"{len(replaced)} images in a row failed to decode (last: {last}); "
            "run `detector data check --decode` on the dataset"
        )

    def _load(
        self, index: int, replaced: list[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image, boxes, labels, ignore) of `index`, or of the next decodable record."""
        index, image = self._decode(index, replaced, keep=False)
        record = self.records[index]
        return image, record.boxes, record.labels, record.ignore

    def __getitem__(self, item: int | tuple) -> dict[str, Any]:
        """One sample: image uint8 [S, S, 3] RGB (numpy), boxes/labels/ignore, meta.

        Args:
            item: an index, or (index, sample_seed) or (index, sample_seed, plan) from
                `SeededSampler`: the sample is a function of these alone (the transform
                is re-seeded with sample_seed; plan says mosaic on/off and the input side).
        """
        index, sample_seed = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        plan = item[2] if isinstance(item, tuple) and len(item) > 2 else None
        replaced: list[str] = []
        index, image = self._decode(index, replaced)
        record = self.records[index]
        if sample_seed is not None and isinstance(self.transform, TrainTransform):
            sample = augment_sample(
                self.transform,
                (image, record.boxes, record.labels, record.ignore),
                lambda partner: self._load(partner, replaced),
                num_records=len(self.records),
                sample_seed=sample_seed,
                mosaic=plan.mosaic if plan is not None else True,
                image_size=(
                    plan.image_size
                    if plan is not None and plan.image_size
                    else self.transform.image_size
                ),
            )
        else:
            if sample_seed is not None:
                self.transform.set_seed(sample_seed)
            sample = self.transform(image, record.boxes, record.labels, record.ignore)
        return {
            "image": sample.image,
            "boxes": sample.boxes,
            "labels": sample.labels,
            "ignore": sample.ignore,
            "meta": {
                "image_id": record.image_id,
                "path": record.image_path,
                "letterbox": sample.letterbox,
                "replaced": replaced,
            },
        }


def init_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: single-threaded OpenCV, glibc keeps freed buffers,
    signals left to the main process (`worker_signals.worker_signal_setup`).

    Nothing is seeded here: augmentation seeds come with each index (`SeededSampler`).
    """
    worker_signal_setup()
    # One worker = one core: OpenCV's own thread pool would oversubscribe the CPU.
    cv2.setNumThreads(0)
    keep_freed_memory()


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and SLURM narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def capped_workers(requested: int, *, processes_per_machine: int = 1, announce: bool = True) -> int:
    """`train.workers`, capped at this process's share of the CPUs (one line says so).

    More workers than cores only adds memory and context switches (and torch warns).
    """
    share = max(available_cpus() // max(processes_per_machine, 1), 1)
    if requested <= share:
        return requested
    if announce:
        print(
            f"train.workers: {requested} is more than the CPUs available to this process "
            f"({share}); using {share}",
            file=sys.stderr,
        )
    return share


def slice_training_records(
    cfg: Config,
    records: list[SampleRecord],
) -> tuple[list[SampleRecord], TilingSummary]:
    """The training samples under `cfg.data.slice` (set): `tiles.training_samples` of `records`."""
    spec = cfg.data.slice
    return training_samples(
        records,
        size=spec.size,
        overlap=spec.overlap,
        min_area_ratio=spec.min_area_ratio,
        empty_rate=spec.empty_rate,
        full_images=spec.full_images,
        network_size=cfg.model.image_size,
        min_box_size=cfg.data.min_box_size,
        seed=cfg.train.seed,
    )


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
            train.batch_size and drop the last incomplete batch; with `data.slice`
            the samples are tiles (`slice_training_records`, summary printed),
            ordered by `grouping.GroupedSampler` (DDP: `DistributedGroupedSampler`)
            when data.slice.group_images > 0, with a decoded-image cache per worker;
            otherwise a plain letterbox of whole images with eval.batch_size,
            keeping every image.
        distributed: shard with a DistributedSampler (torch.distributed initialised).
            Training loaders: call `loader.sampler.set_epoch(epoch)` every epoch.
        shuffle: default `train`.

    Returns:
        (loader, split_records); batches as in the module docstring; split_records
        holds the split's images (the dataset holds their tiles under data.slice).

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
    records = split_records.records
    # Under data.slice with group_images: the samples of an image are ordered close
    # together and each dataset copy caches that many decoded images (grouping.py).
    group_images = 0
    if train and cfg.data.slice is not None:
        records, summary = slice_training_records(cfg, records)
        group_images = cfg.data.slice.group_images
        if rank == 0:
            print(f"data.slice: {summary}", file=sys.stderr)
    if train:
        transform: Transform = build_train_transform(
            cfg.augment, cfg.model.image_size, seed=seed + rank
        )
    else:
        transform = build_eval_transform(cfg.model.image_size)
    from detector.data.images import read_image_rgb

    read_image = functools.partial(read_image_rgb, max_pixels=cfg.data.max_image_pixels)
    dataset = DetectionDataset(records, transform, read_image=read_image, cache_images=group_images)
    shuffle = train if shuffle is None else shuffle
    batch_size = cfg.train.batch_size if train else cfg.eval.batch_size
    # Dropping the last partial batch keeps BatchNorm away from tiny batches, unless
    # the dataset is smaller than one batch (then there would be nothing at all).
    drop_last = train and len(dataset) >= batch_size * world_size
    if distributed and shuffle and group_images:
        sampler = DistributedGroupedSampler(
            image_groups(records),
            images_per_window=group_images,
            num_replicas=world_size,
            rank=rank,
            seed=seed,
            drop_last=drop_last,
        )
    elif distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle and group_images:
        # SeededSampler seeds its generator per epoch, as a RandomSampler's.
        sampler = GroupedSampler(
            image_groups(records), images_per_window=group_images, generator=torch.Generator()
        )
    elif shuffle:
        sampler = RandomSampler(
            dataset, generator=torch.Generator()
        )  # SeededSampler seeds it per epoch
    else:
        sampler = SequentialSampler(dataset)
    if train:
        sampler = SeededSampler(
            sampler,
            seed,
            rank,
            batch_size=batch_size,
            image_size=cfg.model.image_size,
            multi_scale=cfg.train.multi_scale,
        )
    workers = capped_workers(
        cfg.train.workers,
        announce=rank == 0 and train,
        processes_per_machine=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
    )
    timeout = cfg.train.worker_timeout if workers > 0 and cfg.train.worker_timeout else 0
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_batch,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        worker_init_fn=init_worker,
        # Only draws the workers' (unused) base seed; a private generator keeps that
        # draw off the global torch stream, which model code may use.
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=train and workers > 0,
        timeout=timeout,  # a hung worker ends the run with a reason instead of blocking forever
    )
    return loader, split_records
