"""`load_split`: path resolution, the synthetic-data hook, split names, skip reports."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.config import DataConfig, SynthConfig
from detector.data.catalog import category_ids, format_skipped, load_split, read_split
from detector.data.formats.voc import write_voc_xml
from detector.data.record import SkippedSample

NAMES = ["circle", "square"]


def write_tiny_voc(root: Path, ids: list[str], split: str = "train") -> None:
    """VOC layout directly under `root` (as the synthetic dataset writes it)."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        Image.fromarray(np.full((32, 40, 3), 200, np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.jpg"
        )
        write_voc_xml(
            root / "Annotations" / f"{image_id}.xml",
            filename=f"{image_id}.jpg",
            width=40,
            height=32,
            boxes=np.array([[2, 3, 12, 13]]),
            labels=np.array([1]),
            names=NAMES,
        )
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def test_synthetic_dataset_is_ensured_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[DataConfig] = []

    def ensure_synthetic_dataset(data_cfg: DataConfig) -> None:
        calls.append(data_cfg)
        if not Path(data_cfg.root).exists():
            write_tiny_voc(Path(data_cfg.root), ["s0", "s1"])

    fake = types.ModuleType("detector.data.synthetic.embedded")
    fake.ensure_synthetic_dataset = ensure_synthetic_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "detector.data.synthetic.embedded", fake)
    cfg = DataConfig(
        format="voc",
        root=str(tmp_path / "shapes"),
        names=NAMES,
        train=["ImageSets/Main/train.txt"],
        synthetic=SynthConfig(num_train=2),
    )
    split = load_split(cfg, "train")
    assert calls == [cfg] and [r.source_id for r in split.records] == ["s0", "s1"]
    np.testing.assert_array_equal(split.records[0].boxes, [[2, 3, 12, 13]])

    # without a `synthetic:` section the hook is not called
    cfg.synthetic = None
    load_split(cfg, "train")
    assert len(calls) == 1


def test_relative_root_and_absolute_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_voc(tmp_path / "data" / "set", ["a"])
    monkeypatch.chdir(tmp_path)
    relative = DataConfig(
        format="voc", root="data/set", names=NAMES, train=["ImageSets/Main/train.txt"]
    )
    assert len(load_split(relative, "train").records) == 1
    absolute_entry = str(tmp_path / "data" / "set" / "ImageSets" / "Main" / "train.txt")
    elsewhere = DataConfig(format="voc", root="/nonexistent", names=NAMES, train=[absolute_entry])
    records, stats = read_split(elsewhere, "train")
    assert len(records.records) == 1 and stats.boxes_dropped == 0
    assert load_split(elsewhere, "val").records == []  # no val entries: an empty split
    with pytest.raises(ValueError, match="'test'"):
        load_split(elsewhere, "test")
    with pytest.raises(ValueError, match=r"data.train\[0\]: a voc entry is a path"):
        load_split(
            DataConfig(format="voc", root=".", names=NAMES, train=[{"images": "x"}]), "train"
        )


def test_start_up_check_catches_truncated_files_without_decoding(tmp_path: Path) -> None:
    write_tiny_voc(tmp_path, ["ok", "cut"])
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "JPEGImages" / "cut.jpg", quality=95)
    data = (tmp_path / "JPEGImages" / "cut.jpg").read_bytes()
    (tmp_path / "JPEGImages" / "cut.jpg").write_bytes(data[: len(data) // 2])
    cfg = DataConfig(
        format="voc", root=str(tmp_path), names=NAMES, train=["ImageSets/Main/train.txt"]
    )
    for decode in (False, True):  # the header check looks at the end-of-image marker too
        split = load_split(cfg, "train", decode=decode)
        assert [r.source_id for r in split.records] == ["ok"]
        assert [(Path(s.path).name, s.reason) for s in split.skipped] == [
            ("cut.jpg", "truncated JPEG (no end-of-image marker)")
        ]


def test_format_skipped_and_category_ids() -> None:
    skipped = [
        SkippedSample("a.jpg", "empty file (0 bytes)"),
        SkippedSample("b.jpg", "file not found"),
    ]
    assert format_skipped([], "train") == "train: no images skipped"
    assert format_skipped(skipped, "val") == (
        "val: 2 image(s) skipped:\n  a.jpg: empty file (0 bytes)\n  b.jpg: file not found"
    )
    assert format_skipped(skipped, "val", limit=1).splitlines()[-1] == (
        "  ... and 1 more (detector data check lists them all)"
    )
    assert category_ids(DataConfig(format="voc", names=NAMES)) == [1, 2]
