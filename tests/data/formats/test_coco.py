"""COCO reader (reliability.md, "Annotations"): crowd, id gaps, zero-size boxes, empty images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detector.config import DataConfig
from detector.data.catalog import category_ids, load_split
from detector.data.formats.annotations import ReadStats
from detector.data.formats.coco import coco_category_ids, read_coco

# Ids with gaps, listed out of order: labels must follow id order, not file order.
CATEGORIES = [{"id": 7, "name": "zebra"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def make_coco(
    tmp_path: Path, annotations: list[dict[str, Any]], images: list[dict[str, Any]] | None = None
) -> Path:
    """Write images/ (64x48 PNGs) and ann.json; returns the JSON path."""
    images = (
        images
        if images is not None
        else [
            {"id": 42, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 1000, "file_name": "b.png", "width": 64, "height": 48},
        ]
    )
    (tmp_path / "images").mkdir(exist_ok=True)
    for image in images:
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(
            tmp_path / "images" / image["file_name"]
        )
    path = tmp_path / "ann.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
    )
    return path


def ann(
    ann_id: int, image_id: int, category_id: int, bbox: list[Any], iscrowd: int = 0
) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "iscrowd": iscrowd,
        "area": 1.0,
    }


def read(tmp_path: Path, names: list[str] | None = None, stats: ReadStats | None = None):
    return read_coco(
        tmp_path / "images", tmp_path / "ann.json", names=names, min_box_size=1.0, stats=stats
    )


def test_category_id_gaps_map_to_contiguous_labels_and_back() -> None:
    assert coco_category_ids(CATEGORIES) == (["person", "car", "zebra"], [1, 3, 7])
    assert coco_category_ids(CATEGORIES, ["zebra", "person"]) == (["zebra", "person"], [7, 1])
    with pytest.raises(ValueError, match="'horse' is not a category"):
        coco_category_ids(CATEGORIES, ["person", "horse"])


def test_labels_crowd_zero_size_and_empty_images(tmp_path: Path) -> None:
    make_coco(
        tmp_path,
        [
            ann(1, 42, 7, [10, 5, 20, 10]),
            ann(2, 42, 1, [0.5, 1.5, 30, 40], iscrowd=1),
            ann(3, 42, 3, [30, 30, 0, 10]),  # zero width: dropped
            ann(4, 42, 3, [50, 40, 30, 30]),  # reaches outside: clipped to 64 x 48
        ],
    )
    stats = ReadStats()
    records, skipped, names = read(tmp_path, stats=stats)
    assert names == ["person", "car", "zebra"] and skipped == []
    first, second = records
    assert (first.image_id, first.source_id, second.image_id) == (42, 42, 1000)
    np.testing.assert_array_equal(
        first.boxes, [[10, 5, 30, 15], [0.5, 1.5, 30.5, 41.5], [50, 40, 64, 48]]
    )
    np.testing.assert_array_equal(first.labels, [2, 0, 1])
    np.testing.assert_array_equal(first.ignore, [False, True, False])  # crowd kept as ignore
    assert second.boxes.shape == (0, 4)  # no annotations: a negative, kept
    assert (stats.boxes_dropped, stats.boxes_clipped) == (1, 1)


def test_names_select_and_order_classes(tmp_path: Path) -> None:
    make_coco(
        tmp_path,
        [
            ann(1, 42, 7, [10, 5, 20, 10]),
            ann(2, 42, 1, [1, 1, 5, 5]),
            ann(3, 1000, 3, [1, 1, 5, 5]),
        ],
    )
    records, _, names = read(tmp_path, names=["zebra", "person"])
    assert names == ["zebra", "person"]
    np.testing.assert_array_equal(records[0].labels, [0, 1])
    assert len(records[1].boxes) == 0  # its only box is a car, not selected
    cfg = DataConfig(
        format="coco",
        root=str(tmp_path),
        names=["zebra", "person"],
        val=[{"images": "images", "annotations": "ann.json"}],
    )
    assert category_ids(cfg) == [7, 1]
    assert load_split(cfg, "val").names == ["zebra", "person"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (ann(9, 42, 1, [10, 10, -3, 5]), "annotation 9.*x2 < x1"),
        (ann(9, 42, 1, [10, float("nan"), 3, 5]), "annotation 9.*non-finite"),
        (ann(9, 42, 1, [10, 10, 3]), "annotation 9: bbox must be 4 numbers"),
        (ann(9, 42, 2, [10, 10, 3, 5]), "annotation 9 has category_id 2"),
        (ann(9, 77, 1, [10, 10, 3, 5]), "annotation 9 refers to image_id 77"),
    ],
    ids=["negative-width", "nan", "short-bbox", "unknown-category", "unknown-image"],
)
def test_bad_annotations_raise_naming_file_and_annotation(
    tmp_path: Path, bad: dict, message: str
) -> None:
    make_coco(tmp_path, [ann(1, 42, 1, [1, 1, 5, 5]), bad])
    with pytest.raises(ValueError, match=rf"ann\.json: {message}"):
        read(tmp_path)


def test_malformed_or_incomplete_json(tmp_path: Path) -> None:
    (tmp_path / "ann.json").write_text('{"images": [')
    with pytest.raises(ValueError, match=r"ann\.json: malformed JSON"):
        read(tmp_path)
    (tmp_path / "ann.json").write_text('{"images": [], "categories": []}')
    with pytest.raises(ValueError, match="'annotations'"):
        read(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_coco(tmp_path, tmp_path / "missing.json", names=None, min_box_size=1.0)


def test_broken_image_is_skipped_with_its_path(tmp_path: Path) -> None:
    make_coco(tmp_path, [ann(1, 42, 1, [1, 1, 5, 5])])
    (tmp_path / "images" / "b.png").write_text("not a png")
    records, skipped, _ = read(tmp_path)
    assert [r.image_id for r in records] == [42]
    assert len(skipped) == 1 and skipped[0].path.endswith("b.png") and "not" in skipped[0].reason


def test_entries_with_shared_image_ids_are_refused(tmp_path: Path) -> None:
    make_coco(tmp_path, [])
    entry = {"images": "images", "annotations": "ann.json"}
    cfg = DataConfig(format="coco", root=str(tmp_path), train=[entry, entry])
    with pytest.raises(ValueError, match="share image ids"):
        load_split(cfg, "train")
    with pytest.raises(ValueError, match=r"data.train\[0\]"):
        load_split(DataConfig(format="coco", root=str(tmp_path), train=["ann.json"]), "train")
