"""YOLO txt reader (reliability.md, "Annotations"): normalised boxes, empty files, bad lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.config import DataConfig
from detector.data.catalog import load_split
from detector.data.formats.annotations import ReadStats
from detector.data.formats.yolo import read_yolo_source, yolo_label_path

NAMES = ["cat", "dog", "bird"]


def add_image(
    root: Path, relative: str, label_text: str | None, width: int = 64, height: int = 32
) -> Path:
    """Write root/images/<relative> and, unless None, root/labels/<relative stem>.txt."""
    image_path = root / "images" / relative
    image_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(image_path)
    if label_text is not None:
        label_path = (root / "labels" / relative).with_suffix(".txt")
        label_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.write_text(label_text)
    return image_path


def test_label_path_rule_uses_the_last_images_folder() -> None:
    assert yolo_label_path(Path("/d/images/train/a.b.jpg")) == Path("/d/labels/train/a.b.txt")
    assert yolo_label_path(Path("/images/x/images/t/a.png")) == Path("/images/x/labels/t/a.txt")
    with pytest.raises(ValueError, match="'images' folder"):
        yolo_label_path(Path("/d/pictures/images.jpg"))


def test_normalised_cxcywh_become_pixel_xyxy(tmp_path: Path) -> None:
    add_image(tmp_path, "train/a.jpg", "1 0.5 0.5 0.5 0.25\n\n2 0.125 0.75 0.25 0.5\n")
    (record,), skipped = read_yolo_source(tmp_path / "images" / "train", NAMES, min_box_size=1.0)
    assert skipped == [] and (record.width, record.height) == (64, 32)
    # 64 x 32 image: (0.5, 0.5, 0.5, 0.25) -> x 16..48, y 12..20
    np.testing.assert_allclose(record.boxes, [[16, 12, 48, 20], [0, 16, 16, 32]], atol=1e-6)
    np.testing.assert_array_equal(record.labels, [1, 2])
    assert not record.ignore.any() and record.source_id == "a"


def test_empty_and_missing_label_files_are_negatives(tmp_path: Path) -> None:
    add_image(tmp_path, "v/empty.png", "")
    add_image(tmp_path, "v/blank.png", "\n  \n")
    add_image(tmp_path, "v/missing.png", None)
    stats = ReadStats()
    records, skipped = read_yolo_source(
        tmp_path / "images" / "v", NAMES, min_box_size=1.0, stats=stats
    )
    assert sorted(r.source_id for r in records) == ["blank", "empty", "missing"] and skipped == []
    assert all(r.boxes.shape == (0, 4) for r in records)
    assert stats.missing_label_files == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n", "line 2: class index 3 out of range 0..2"),
        ("-1 0.5 0.5 0.1 0.1\n", "line 1: class index -1 out of range"),
        ("1.5 0.5 0.5 0.1 0.1\n", "line 1: class index 1.5"),
        ("0 0.5 0.5 0.1\n", "line 1: expected 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.1 0.1 0.2 0.3\n", "got 7 values"),
        ("0 0.5 nan 0.1 0.1\n", "line 1: bad box"),
        ("0 0.5 0.5 -0.1 0.1\n", "negative size"),
        ("cat 0.5 0.5 0.1 0.1\n", "not a number"),
    ],
)
def test_bad_lines_raise_naming_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    add_image(tmp_path, "t/bad.jpg", text)
    with pytest.raises(ValueError, match=rf"bad\.txt: .*{message}"):
        read_yolo_source(tmp_path / "images" / "t", NAMES, min_box_size=1.0)


def test_list_file_clipping_and_catalog(tmp_path: Path) -> None:
    add_image(tmp_path, "a.jpg", "0 0.9 0.5 0.4 0.5\n")  # x 44.8..70.4 on 64 px: clipped to 64
    add_image(tmp_path, "sub/b.jpg", "1 0.5 0.5 0.01 0.5\n")  # 0.64 px wide: dropped
    (tmp_path / "val.txt").write_text("images/a.jpg\n./images/sub/b.jpg\nimages/gone.jpg\n")
    cfg = DataConfig(format="yolo", root=str(tmp_path), names=NAMES, val=["val.txt"])
    split = load_split(cfg, "val")
    a, b = split.records
    np.testing.assert_allclose(a.boxes, [[44.8, 8, 64, 24]], atol=1e-4)
    assert b.boxes.shape == (0, 4) and [r.image_id for r in split.records] == [0, 1]
    assert [(Path(s.path).name, s.reason) for s in split.skipped] == [
        ("gone.jpg", "file not found")
    ]
    with pytest.raises(ValueError, match="data.names is required for format yolo"):
        load_split(DataConfig(format="yolo", root=str(tmp_path), val=["val.txt"]), "val")
    with pytest.raises(FileNotFoundError, match="nothing"):
        load_split(
            DataConfig(format="yolo", root=str(tmp_path), names=NAMES, val=["nothing"]), "val"
        )
