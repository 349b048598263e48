"""Sample plans (mosaic switch, per-batch input side):
worker-count independence, persistent workers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from detector.data.augment.transforms import build_train_transform
from detector.data.loading.dataset import DetectionDataset, collate_batch, init_worker
from detector.data.loading.sampling import SamplePlan, SeededSampler, multi_scale_sizes
from detector.data.record import SampleRecord


def _records(tmp_path: Path, count: int = 6) -> list[SampleRecord]:
    records = []
    for index in range(count):
        height, width = 40 + 9 * index, 70 - 4 * index
        image = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = tmp_path / f"{index}.png"
        cv2.imwrite(str(path), image)
        boxes = [[2, 3, 20, 30], [15, 10, width - 1, height - 2]]
        records.append(
            SampleRecord(
                str(path),
                width,
                height,
                boxes,
                [index, index + 10],
                [False, True],
                image_id=index,
                source_id=str(index),
            )
        )
    return records


def test_multi_scale_sizes_are_multiples_of_32_in_range() -> None:
    assert multi_scale_sizes(320, 448) == [320, 352, 384, 416, 448]
    assert multi_scale_sizes(300, 330) == [320]
    with pytest.raises(ValueError, match=r"no multiple of 32 in \[330, 340\]"):
        multi_scale_sizes(330, 340)


def test_one_size_per_batch_a_function_of_seed_and_epoch() -> None:
    def plans(epoch: int, start: int = 0, seed: int = 3, rank: int = 0) -> list[SamplePlan]:
        sampler = SeededSampler(
            RandomSampler(range(40), generator=torch.Generator()),
            seed,
            rank,
            batch_size=4,
            image_size=64,
            multi_scale=(32, 128),
        )
        sampler.set_epoch(epoch, start=start)
        return [plan for _, _, plan in sampler]

    first = plans(1)
    sizes = [first[k].image_size for k in range(0, 40, 4)]
    assert all(first[k].image_size == sizes[k // 4] for k in range(40))  # the same within a batch
    assert set(sizes) <= {32, 64, 96, 128} and len(set(sizes)) > 1
    assert plans(1) == first and plans(1, rank=1) == first  # every rank: the same side for batch k
    assert plans(1, start=8) == first[8:]  # a mid-epoch resume keeps the batches' sides
    assert plans(2) != first and plans(1, seed=4) != first
    assert all(plan.mosaic for plan in first)


def test_without_multi_scale_the_plan_carries_the_model_size() -> None:
    sampler = SeededSampler(
        RandomSampler(range(5), generator=torch.Generator()), 0, batch_size=2, image_size=96
    )
    sampler.set_mosaic(False)
    assert {plan for _, _, plan in sampler} == {SamplePlan(False, 96)}


_AUGMENT = [
    {"name": "mosaic", "p": 0.7},
    {"name": "scale_jitter", "min_scale": 0.6, "max_scale": 1.4},
    {"name": "hflip"},
    {"name": "affine", "p": 0.5, "degrees": 15},
    {"name": "mixup", "p": 0.5},
]


def _loader(
    dataset: DetectionDataset, workers: int, **sampler_args
) -> tuple[DataLoader, SeededSampler]:
    sampler = SeededSampler(
        RandomSampler(dataset, generator=torch.Generator()), seed=5, batch_size=3, **sampler_args
    )
    loader = DataLoader(
        dataset,
        batch_size=3,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_batch,
        worker_init_fn=init_worker,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    return loader, sampler


def _epoch(
    loader: DataLoader, sampler: SeededSampler, epoch: int, mosaic: bool = True
) -> list[dict]:
    sampler.set_epoch(epoch)
    sampler.set_mosaic(mosaic)
    return list(loader)


def _assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a["images"], b["images"])
        for ta, tb in zip(a["targets"], b["targets"], strict=True):
            assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
            assert torch.equal(ta["ignore"], tb["ignore"])


def test_mosaic_mixup_and_multi_scale_batches_do_not_depend_on_workers(tmp_path: Path) -> None:
    dataset = DetectionDataset(_records(tmp_path) * 2, build_train_transform(_AUGMENT, 64, seed=0))
    plain, plain_sampler = _loader(dataset, 0, image_size=64, multi_scale=(32, 96))
    want = _epoch(plain, plain_sampler, 1)
    assert len({batch["images"].shape[-1] for batch in want}) > 1  # several sides were drawn
    for batch in want:
        for target in batch[
            "targets"
        ]:  # labels stay with their ignore flags (label >= 10: ignored)
            assert torch.equal(target["ignore"], target["labels"] >= 10)
            side = batch["images"].shape[-1]
            assert bool(((target["boxes"] >= 0) & (target["boxes"] <= side)).all())
    workers, worker_sampler = _loader(dataset, 2, image_size=64, multi_scale=(32, 96))
    _assert_same(_epoch(workers, worker_sampler, 1), want)


def test_close_mosaic_reaches_persistent_workers(tmp_path: Path) -> None:
    records = _records(tmp_path)
    with_mosaic = DetectionDataset(
        records, build_train_transform([{"name": "mosaic", "p": 1.0}], 64, seed=0)
    )
    without = DetectionDataset(records, build_train_transform([], 64, seed=0))
    loader, sampler = _loader(with_mosaic, 2, image_size=64)
    reference, reference_sampler = _loader(without, 0, image_size=64)
    mosaic_epoch = _epoch(loader, sampler, 0)  # workers start here and persist
    plain_epoch = _epoch(reference, reference_sampler, 0)
    assert not torch.equal(mosaic_epoch[0]["images"], plain_epoch[0]["images"])
    # The same persistent workers, told through the sampler only:
    _assert_same(_epoch(loader, sampler, 1, mosaic=False), _epoch(reference, reference_sampler, 1))
    _assert_same(_epoch(loader, sampler, 0, mosaic=True), mosaic_epoch)


def test_build_dataloader_multi_scale_trains_at_several_sides_and_evaluates_at_one(
    tiny_training, tmp_path: Path
) -> None:
    from detector.config import config_from_dict
    from detector.data.loading.dataset import build_dataloader
    from detector.model.build import build_loss, build_model

    raw = tiny_training(tmp_path / "data", num_train=12, multi_scale=[32, 128])
    cfg = config_from_dict(raw)
    loader, _ = build_dataloader(cfg, "train", train=True)
    sides = set()
    model, loss_fn = build_model(cfg.model, num_classes=2), build_loss(cfg.model, num_classes=2)
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            side = batch["images"].shape[-1]
            assert batch["images"].shape[-2] == side and side % 32 == 0 and 32 <= side <= 128
            sides.add(side)
            for target in batch["targets"]:
                assert bool(((target["boxes"] >= 0) & (target["boxes"] <= side)).all())
            # The grid follows the input: the loss takes its side from the model's output.
            raw_out = model(batch["images"].float() / 255)
            assert raw_out.shape[1] == sum((side // s) ** 2 for s in (8, 16, 32))
            assert torch.isfinite(loss_fn(raw_out, batch["targets"])["loss"])
    assert len(sides) > 1
    val_loader, _ = build_dataloader(cfg, "val", train=False)
    assert {batch["images"].shape[-1] for batch in val_loader} == {64}
