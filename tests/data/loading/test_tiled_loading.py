"""Training on tiles (data.slice): tiles cut before augmentation,
ignored cut boxes reach the loss."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.config import config_from_dict
from detector.data.augment.transforms import build_eval_transform
from detector.data.loading.dataset import DetectionDataset, build_dataloader, collate_batch
from detector.data.record import SampleRecord
from detector.data.tiles import tile_grid, tile_record
from detector.model.head import make_grid
from detector.model.loss import YOLOLoss

NAMES = ["circle", "square", "triangle", "star", "ring"]


def _aerial_config(root: Path, **slice_keys: object) -> object:
    return config_from_dict(
        {
            "data": {
                "format": "voc",
                "root": str(root),
                "train": ["ImageSets/Main/train.txt"],
                "val": ["ImageSets/Main/val.txt"],
                "names": NAMES,
                "synthetic": {
                    "kind": "aerial",
                    "num_train": 2,
                    "num_val": 1,
                    "image_size": 512,
                    "seed": 0,
                },
                "slice": {"size": 256, "overlap": 0.0, "empty_rate": 1.0, **slice_keys},
            },
            "model": {"image_size": 256},
            "train": {"batch_size": 2, "workers": 0, "seed": 0},
            "eval": {"batch_size": 2},
            "augment": [],  # a plain letterbox: a 256 px tile at a 256 px input is the tile itself
        }
    )


def test_train_loader_serves_tiles_cut_before_the_letterbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _aerial_config(tmp_path / "aerial", full_images=False)
    loader, split = build_dataloader(cfg, "train", train=True)
    err = capsys.readouterr().err
    assert "data.slice: 2 images -> 8 tiles" in err and "= 8 samples per epoch" in err
    assert len(split.records) == 2  # the split still lists images
    dataset = loader.dataset
    assert len(dataset) == 8 and all(record.window is not None for record in dataset.records)
    full = {record.image_path: cv2.imread(record.image_path)[..., ::-1] for record in split.records}
    for index, record in enumerate(dataset.records):
        sample = dataset[index]
        x1, y1, x2, y2 = record.window
        assert sample["image"].shape == (256, 256, 3)
        np.testing.assert_array_equal(sample["image"], full[record.image_path][y1:y2, x1:x2])
        np.testing.assert_allclose(sample["boxes"], record.boxes)
        np.testing.assert_array_equal(sample["ignore"], record.ignore)
    # Every box of an image lies in some tile, as a target or as ignore.
    for image in split.records:
        tiles = [r for r in dataset.records if r.image_path == image.image_path]
        assert sum(len(t.boxes) for t in tiles) >= len(image.boxes)
    # Validation images stay whole.
    val_loader, val_split = build_dataloader(cfg, "val", train=False)
    assert [r.window for r in val_loader.dataset.records] == [None] * len(val_split.records)


def test_whole_images_join_the_tiles_and_batches_hold_network_size_inputs(tmp_path: Path) -> None:
    cfg = _aerial_config(tmp_path / "aerial", full_images=True)
    loader, _ = build_dataloader(cfg, "train", train=True)
    assert len(loader.dataset) == 8 + 2
    batches = list(loader)
    assert len(batches) == 5 and all(b["images"].shape == (2, 3, 256, 256) for b in batches)


def test_an_image_smaller_than_its_tile_is_replaced_and_named(tmp_path: Path) -> None:
    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), np.zeros((100, 100, 3), np.uint8))
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.full((300, 300, 3), 50, np.uint8))
    records = [
        SampleRecord(str(small), 256, 256, window=(0, 0, 256, 256)),
        SampleRecord(str(good), 256, 256, window=(44, 44, 300, 300)),
    ]
    dataset = DetectionDataset(records, build_eval_transform(256))
    with pytest.warns(
        RuntimeWarning, match=r"small.jpg: cannot decode \(decoded 100x100, smaller than its tile"
    ):
        sample = dataset[0]
    assert sample["meta"]["path"] == str(good) and sample["meta"]["replaced"] == [str(small)]


def test_a_box_cut_by_the_tile_edge_adds_no_objectness_negative_in_its_region(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wide.jpg"
    cv2.imwrite(str(path), np.full((128, 256, 3), 90, np.uint8))
    # 128 x 128 tiles; the box spans x 96..160: exactly half in each tile.
    record = SampleRecord(str(path), 256, 128, [[96, 32, 160, 96]], [0], [False])
    assert tile_grid(256, 128, 128, 0.0) == [(0, 0, 128, 128), (128, 0, 256, 128)]
    tile = tile_record(record, (0, 0, 128, 128), min_area_ratio=0.6, min_box_size=1.0)
    assert tile.ignore.tolist() == [True]  # 50% inside < 60%: ignore, not dropped
    sample = DetectionDataset([tile], build_eval_transform(128))[0]
    batch = collate_batch([sample])
    np.testing.assert_allclose(batch["targets"][0]["boxes"].numpy(), [[96, 32, 128, 96]])

    loss_fn = YOLOLoss(num_classes=len(NAMES), strides=(8, 16, 32))
    raw = torch.zeros(1, 16 * 16 + 8 * 8 + 4 * 4, 5 + len(NAMES), requires_grad=True)
    loss_fn(raw, batch["targets"])["loss_obj"].backward()
    centers, _ = make_grid(128, 128, (8, 16, 32))
    x, y = centers[:, 0], centers[:, 1]
    in_region = (x > 96) & (x < 128) & (y > 32) & (y < 96)
    obj_grad = raw.grad[0, :, 4]
    assert in_region.sum() > 0
    assert torch.all(obj_grad[in_region] == 0)  # neither positive nor negative
    assert torch.all(obj_grad[~in_region] > 0)  # everywhere else: background (no positives here)
    # The bad case: the same cut box as a target that is not ignored is learned there.
    kept = tile_record(record, (0, 0, 128, 128), min_area_ratio=0.5, min_box_size=1.0)
    assert kept.ignore.tolist() == [False]
    raw.grad = None
    batch = collate_batch([DetectionDataset([kept], build_eval_transform(128))[0]])
    terms = loss_fn(raw, batch["targets"])
    terms["loss_obj"].backward()
    assert terms["num_fg"] > 0 and torch.any(raw.grad[0, in_region, 4] != 0)


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make `read_image_rgb` log every path it decodes (in this process) into the list returned."""
    import detector.data.images as images

    decoded: list[str] = []
    real = images.read_image_rgb

    def counting(path: str, **kwargs: object) -> np.ndarray:
        decoded.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(images, "read_image_rgb", counting)
    return decoded


@pytest.mark.parametrize("group_images", [2, 0])
def test_the_training_loader_decodes_each_image_once_an_epoch_when_grouped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_images: int
) -> None:
    cfg = _aerial_config(tmp_path / "aerial", full_images=True, group_images=group_images)
    decoded = _count_decodes(monkeypatch)
    loader, split = build_dataloader(cfg, "train", train=True)
    decoded.clear()  # start-up decodes nothing in full; generating the set might
    loader.sampler.set_epoch(0)
    order = [index for index, _, _ in loader.sampler]
    assert sorted(order) == list(range(10))  # 8 tiles + 2 whole images, each once
    assert sum(len(batch["metas"]) for batch in loader) == 10
    if group_images:
        assert len(decoded) == len(split.records) == 2  # one decode per image
        assert loader.dataset.cache is not None
    else:
        # The ungrouped order is the one of a RandomSampler (a stored expectation):
        # every sample decodes its image.
        assert len(decoded) == 10 and loader.dataset.cache is None
        assert order == [4, 1, 7, 3, 8, 6, 0, 9, 5, 2]


def test_a_distributed_sliced_loader_takes_a_slice_of_the_grouped_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detector.data.loading.grouping import DistributedGroupedSampler

    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    cfg = _aerial_config(tmp_path / "aerial", full_images=True)
    loader, _ = build_dataloader(cfg, "train", train=True, distributed=True)
    shard = loader.sampler.sampler
    assert isinstance(shard, DistributedGroupedSampler)
    assert (shard.rank, shard.num_replicas, len(shard)) == (1, 2, 5)
    loader.sampler.set_epoch(4)
    assert shard.epoch == 4 and len(list(loader)) == 2  # 5 samples, batch 2, last dropped
