"""Dataset, collate and DataLoader: batch format, bad files at load time,
per-sample seeds in any worker."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from detector.config import config_from_dict
from detector.data.augment.transforms import build_eval_transform, build_train_transform
from detector.data.letterbox import Letterbox
from detector.data.loading.dataset import (
    DetectionDataset,
    build_dataloader,
    collate_batch,
    init_worker,
)
from detector.data.loading.sampling import SeededSampler
from detector.data.record import SampleRecord


def _write_jpeg(path: Path, height: int, width: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.write_bytes(cv2.imencode(".jpg", cv2.GaussianBlur(image, (0, 0), 2))[1].tobytes())


def _records(tmp_path: Path, count: int = 4) -> list[SampleRecord]:
    records = []
    for index in range(count):
        height, width = 40 + 7 * index, 60 - 5 * index
        path = tmp_path / f"image {index}.jpg"
        _write_jpeg(path, height, width, seed=index)
        boxes = [[2, 3, 20, 30], [10, 5, width - 1, height - 2]][: index % 3]
        records.append(
            SampleRecord(
                str(path),
                width,
                height,
                boxes,
                list(range(len(boxes))),
                [False] * len(boxes),
                image_id=index,
                source_id=str(index),
            )
        )
    return records


def test_collate_shapes_dtypes_and_pixels(tmp_path: Path) -> None:
    records = _records(tmp_path)
    dataset = DetectionDataset(records, build_eval_transform(64))
    samples = [dataset[i] for i in range(len(records))]
    batch = collate_batch(samples)
    assert batch["images"].shape == (4, 3, 64, 64) and batch["images"].dtype == torch.uint8
    for sample, image in zip(samples, batch["images"], strict=True):
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), sample["image"])
    assert [len(t["boxes"]) for t in batch["targets"]] == [0, 1, 2, 0]
    for target in batch["targets"]:
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1:] == (4,)
        assert target["labels"].dtype == torch.int64 and target["ignore"].dtype == torch.bool
    assert batch["targets"][0]["boxes"].shape == (0, 4)
    meta = batch["metas"][2]
    assert (
        meta["image_id"] == 2 and meta["path"] == records[2].image_path and meta["replaced"] == []
    )
    assert (
        isinstance(meta["letterbox"], Letterbox)
        and meta["letterbox"].orig_width == records[2].width
    )


def test_collate_rejects_mismatched_images() -> None:
    sample = {
        "image": np.zeros((8, 8, 3), np.uint8),
        "boxes": np.zeros((0, 4)),
        "labels": np.zeros(0),
        "ignore": np.zeros(0, bool),
        "meta": {},
    }
    odd = dict(sample, image=np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="image 1"):
        collate_batch([sample, odd])
    misaligned = dict(sample, labels=np.zeros(1))
    with pytest.raises(ValueError, match="sample 1 has 0 boxes, 1 labels"):
        collate_batch([sample, misaligned])


def test_worker_batches_equal_in_process_batches(tmp_path: Path) -> None:
    """Shared-memory images and batch-wide target views survive the trip from a worker."""
    records = _records(tmp_path, count=6)
    dataset = DetectionDataset(records, build_eval_transform(48))
    loader = DataLoader(
        dataset, batch_size=3, num_workers=1, collate_fn=collate_batch, worker_init_fn=init_worker
    )
    for start, batch in zip((0, 3), loader, strict=True):
        expected = collate_batch([dataset[i] for i in range(start, start + 3)])
        assert torch.equal(batch["images"], expected["images"])
        for got, want in zip(batch["targets"], expected["targets"], strict=True):
            for key in ("boxes", "labels", "ignore"):
                assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key])
        assert [m["image_id"] for m in batch["metas"]] == [start, start + 1, start + 2]


def test_corrupt_file_at_load_time_is_replaced_and_reported(tmp_path: Path) -> None:
    records = _records(tmp_path)
    bad = Path(records[1].image_path)
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # header intact, data cut
    dataset = DetectionDataset(records, build_train_transform(None, 64, seed=0))
    with pytest.warns(RuntimeWarning, match="image 1.jpg"):
        sample = dataset[1]
    assert sample["meta"]["path"] == records[2].image_path
    assert sample["meta"]["replaced"] == [str(bad)]
    assert 1 in dataset.failed
    sample = dataset[1]  # known bad: replaced again, reported again, not re-decoded
    assert sample["meta"]["replaced"] == [str(bad)] and sample["meta"]["image_id"] == 2


def test_all_files_bad_raises_a_clear_error(tmp_path: Path) -> None:
    records = _records(tmp_path, count=2)
    for record in records:
        Path(record.image_path).write_bytes(b"not an image")
    dataset = DetectionDataset(records, build_eval_transform(32))
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="failed to decode"):
        dataset[0]


_AUGMENT = [
    {"name": "scale_jitter", "min_scale": 0.5, "max_scale": 1.5},
    {"name": "hflip"},
    {"name": "brightness_contrast", "p": 1.0},
]


def _seeded_batches(dataset: DetectionDataset, workers: int, epoch: int) -> list[dict]:
    sampler = SeededSampler(RandomSampler(dataset, generator=torch.Generator()), seed=5)
    sampler.set_epoch(epoch)
    loader = DataLoader(
        dataset,
        batch_size=2,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_batch,
        worker_init_fn=init_worker,
    )
    return list(loader)


def test_seeded_sampler_is_a_function_of_seed_rank_and_epoch(tmp_path: Path) -> None:
    def pairs(seed: int, rank: int, epoch: int) -> list[tuple]:
        sampler = SeededSampler(RandomSampler(range(50), generator=torch.Generator()), seed, rank)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = pairs(3, 0, 1)
    assert sorted(index for index, _, _ in first) == list(range(50))
    assert len({sample_seed for _, sample_seed, _ in first}) == 50
    assert pairs(3, 0, 1) == first  # no hidden state carried between epochs or calls
    for other in (pairs(4, 0, 1), pairs(3, 1, 1), pairs(3, 0, 2)):
        assert [i for i, _, _ in other] != [i for i, _, _ in first]
        assert not {s for _, s, _ in other} & {s for _, s, _ in first}


def test_sample_augmentation_does_not_depend_on_the_worker(tmp_path: Path) -> None:
    record = _records(tmp_path, count=2)[1]
    dataset = DetectionDataset([record] * 6, build_train_transform(_AUGMENT, 48, seed=0))
    in_process = _seeded_batches(dataset, workers=0, epoch=1)
    for workers in (1, 2):  # one worker runs every sample; two split them alternately
        for got, want in zip(_seeded_batches(dataset, workers, epoch=1), in_process, strict=True):
            assert torch.equal(got["images"], want["images"])
            for got_target, want_target in zip(got["targets"], want["targets"], strict=True):
                assert torch.equal(got_target["boxes"], want_target["boxes"])
    images = [image for batch in in_process for image in batch["images"]]
    assert all(not torch.equal(images[0], image) for image in images[1:])  # one seed per position
    other_epoch = [
        image for batch in _seeded_batches(dataset, 0, epoch=2) for image in batch["images"]
    ]
    assert all(not torch.equal(a, b) for a, b in zip(images, other_epoch, strict=True))
    # The same (index, seed) pair gives the same sample whatever ran before it.
    again = dataset[(3, 12345)]
    dataset[(0, 999)]
    np.testing.assert_array_equal(dataset[(3, 12345)]["image"], again["image"])


def _synthetic_config(root: Path, **train: object):
    return config_from_dict(
        {
            "data": {
                "format": "voc",
                "root": str(root),
                "train": ["ImageSets/Main/train.txt"],
                "val": ["ImageSets/Main/val.txt"],
                "names": ["circle", "square", "triangle", "star", "ring"],
                "synthetic": {"num_train": 6, "num_val": 5, "image_size": 64, "seed": 0},
            },
            "model": {"image_size": 64},
            "train": {"batch_size": 4, "workers": 0, "seed": 0, **train},
            "eval": {"batch_size": 4},
        }
    )


def test_build_dataloader_train_and_val(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _synthetic_config(tmp_path / "shapes")
    loader, split = build_dataloader(cfg, "train", train=True)
    assert "train: no images skipped" in capsys.readouterr().err
    batches = list(loader)
    assert len(split.records) == 6 and len(batches) == 1  # 6 images, batch 4, last partial dropped
    assert batches[0]["images"].shape == (4, 3, 64, 64)
    loader, split = build_dataloader(cfg, "val", train=False)
    batches = list(loader)
    assert [len(b["metas"]) for b in batches] == [4, 1]
    assert sorted(m["image_id"] for b in batches for m in b["metas"]) == [
        r.image_id for r in split.records
    ]


def test_whole_image_training_order_and_batches_are_the_plain_random_samplers(
    tmp_path: Path,
) -> None:
    """Without data.slice the loader is a RandomSampler's order over an uncached dataset:
    a stored order, and batches equal to the ones built by hand from those parts."""
    cfg = _synthetic_config(tmp_path / "shapes")
    loader, split = build_dataloader(cfg, "train", train=True)
    assert loader.dataset.cache is None and type(loader.sampler.sampler) is RandomSampler
    by_hand = DataLoader(
        DetectionDataset(split.records, build_train_transform(None, 64, seed=0)),
        batch_size=4,
        sampler=SeededSampler(
            RandomSampler(split.records, generator=torch.Generator()),
            0,
            batch_size=4,
            image_size=64,
        ),
        collate_fn=collate_batch,
        drop_last=True,
    )
    for epoch, stored in ((0, [4, 1, 3, 0, 2, 5]), (1, [5, 4, 2, 3, 1, 0])):
        loader.sampler.set_epoch(epoch)
        by_hand.sampler.set_epoch(epoch)
        assert [index for index, _, _ in loader.sampler] == stored
        for ours, theirs in zip(loader, by_hand, strict=True):
            assert torch.equal(ours["images"], theirs["images"])
            for a, b in zip(ours["targets"], theirs["targets"], strict=True):
                assert torch.equal(a["boxes"], b["boxes"])


def test_build_dataloader_reports_skipped_and_corrupt_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _synthetic_config(tmp_path / "shapes")
    build_dataloader(cfg, "val", train=False)  # generates the dataset
    images = sorted((tmp_path / "shapes" / "JPEGImages").glob("*.jpg"))
    val_ids = (tmp_path / "shapes" / "ImageSets/Main/val.txt").read_text().split()
    empty, truncated, vanished = (
        tmp_path / "shapes/JPEGImages" / f"{val_ids[i]}.jpg" for i in range(3)
    )
    assert empty in images and truncated in images and vanished in images
    empty.write_bytes(b"")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    capsys.readouterr()
    loader, split = build_dataloader(cfg, "val", train=False)
    err = capsys.readouterr().err
    assert "val: 2 image(s) skipped" in err and str(empty) in err
    assert f"{truncated}: truncated JPEG (no end-of-image marker)" in err
    vanished.unlink()  # gone after the start-up check: replaced when the loader meets it
    with pytest.warns(RuntimeWarning, match=val_ids[2]):
        metas = [m for batch in loader for m in batch["metas"]]
    assert len(metas) == len(split.records) == 3
    assert [str(vanished)] in [m["replaced"] for m in metas]
    assert str(vanished) not in [m["path"] for m in metas]


def test_build_dataloader_distributed_uses_a_distributed_sampler(tmp_path: Path) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1
    )
    try:
        loader, _ = build_dataloader(
            _synthetic_config(tmp_path / "shapes"), "train", train=True, distributed=True
        )
        assert isinstance(loader.sampler.sampler, torch.utils.data.DistributedSampler)
        loader.sampler.set_epoch(3)
        assert loader.sampler.sampler.epoch == 3  # forwarded: DistributedSampler shuffles by it
        assert len(list(loader)) == 1
    finally:
        torch.distributed.destroy_process_group()
