"""One dataset in three formats gives the same records:
VOC -> COCO JSON -> records, YOLO -> records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from detector.config import DataConfig
from detector.data.catalog import load_split
from detector.data.formats.voc import write_voc_xml
from detector.evaluation.coco_format import records_to_coco

NAMES = ["aeroplane", "bicycle", "bird"]


def make_voc(root: Path) -> list[str]:
    """Four images of different sizes (one EXIF-rotated, one empty) with fractional boxes."""
    rng = np.random.default_rng(3)
    samples = {
        "000001": ((64, 48), 1, [[0, 0, 64, 48], [10.5, 3.25, 20, 30]], [0, 2], [False, True]),
        "000002": (
            (100, 70),
            6,
            [[5, 6, 55.75, 40.5]],
            [1],
            [False],
        ),  # (width, height) as displayed
        "000003": ((33, 90), 1, [], [], []),
        "000004": (
            (80, 80),
            1,
            [[1.125, 2.5, 79, 80], [40, 40, 41, 41.5], [0, 10, 30, 20]],
            [2, 1, 0],
            [False, False, True],
        ),
    }
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, ((width, height), orientation, boxes, labels, difficult) in samples.items():
        stored_shape = (width, height) if orientation == 6 else (height, width)
        exif = Image.Exif()
        exif[0x0112] = orientation
        pixels = rng.integers(0, 255, (*stored_shape, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", exif=exif)
        write_voc_xml(
            root / "Annotations" / f"{image_id}.xml",
            filename=f"{image_id}.jpg",
            width=width,
            height=height,
            boxes=np.array(boxes).reshape(-1, 4),
            labels=np.array(labels, int),
            names=NAMES,
            difficult=np.array(difficult, bool),
        )
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(samples) + "\n")
    return list(samples)


def test_voc_to_coco_json_to_records_keeps_every_box(tmp_path: Path) -> None:
    voc_root = tmp_path / "VOC2007"
    make_voc(voc_root)
    voc = load_split(
        DataConfig(
            format="voc", root=str(voc_root), names=NAMES, train=["ImageSets/Main/trainval.txt"]
        ),
        "train",
    )
    assert len(voc.records) == 4 and voc.skipped == []
    assert (voc.records[1].width, voc.records[1].height) == (100, 70)  # EXIF 6 applied

    category_ids = [5, 11, 40]  # non-contiguous on purpose
    coco = records_to_coco(voc.records, voc.names, category_ids)
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    entry = {"images": str(voc_root / "JPEGImages"), "annotations": "instances.json"}
    back = load_split(DataConfig(format="coco", root=str(tmp_path), val=[entry]), "val")

    assert back.names == NAMES and len(back.records) == len(voc.records)
    for original, loaded in zip(voc.records, back.records, strict=True):
        assert loaded.image_id == original.image_id
        assert (loaded.width, loaded.height) == (original.width, original.height)
        np.testing.assert_allclose(loaded.boxes, original.boxes, atol=1e-4)
        np.testing.assert_array_equal(loaded.labels, original.labels)
        np.testing.assert_array_equal(loaded.ignore, original.ignore)
    # hand check of one converted box: VOC <xmin>11.5</xmin> etc. -> 0-based xyxy
    np.testing.assert_array_equal(voc.records[0].boxes[1], [10.5, 3.25, 20, 30])


def test_yolo_labels_give_the_same_boxes(tmp_path: Path) -> None:
    voc_root = tmp_path / "VOC2007"
    ids = make_voc(voc_root)
    voc = load_split(
        DataConfig(
            format="voc", root=str(voc_root), names=NAMES, train=["ImageSets/Main/trainval.txt"]
        ),
        "train",
    )
    yolo_root = tmp_path / "yolo"
    (yolo_root / "images" / "train").mkdir(parents=True)
    (yolo_root / "labels" / "train").mkdir(parents=True)
    for image_id, record in zip(ids, voc.records, strict=True):
        shutil.copy(record.image_path, yolo_root / "images" / "train" / f"{image_id}.jpg")
        scale = np.array([record.width, record.height] * 2, np.float64)
        boxes = record.boxes.astype(np.float64) / scale
        lines = [
            f"{label} {(x1 + x2) / 2:.10f} {(y1 + y2) / 2:.10f} {x2 - x1:.10f} {y2 - y1:.10f}"
            for label, (x1, y1, x2, y2) in zip(record.labels.tolist(), boxes.tolist(), strict=True)
        ]
        (yolo_root / "labels" / "train" / f"{image_id}.txt").write_text("\n".join(lines))
    yolo = load_split(
        DataConfig(format="yolo", root=str(yolo_root), names=NAMES, train=["images/train"]), "train"
    )

    assert [r.source_id for r in yolo.records] == ids
    for original, loaded in zip(voc.records, yolo.records, strict=True):
        assert (loaded.width, loaded.height) == (original.width, original.height)
        np.testing.assert_allclose(loaded.boxes, original.boxes, atol=1e-4)
        np.testing.assert_array_equal(loaded.labels, original.labels)
    assert yolo.records[2].boxes.shape == (0, 4)  # the empty label file: a negative
