"""`detector data check CONFIG` through click's CliRunner:
counts, skipped files, box sizes, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner
from PIL import Image

from detector.cli import main
from detector.commands.data_check import check
from detector.config import DataConfig
from detector.data.inspection.check import box_size_stats, check_dataset

NAMES = ["cat", "dog"]


def xml_object(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
        f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def add(base: Path, image_id: str, objects: list[str], size: tuple[int, int] = (64, 48)) -> Path:
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    width, height = size
    image = base / "JPEGImages" / f"{image_id}.jpg"
    Image.fromarray(np.full((height, width, 3), 99, np.uint8)).save(image)
    (base / "Annotations" / f"{image_id}.xml").write_text(
        f"<annotation>{''.join(objects)}</annotation>"
    )
    return image


def make_dataset(tmp_path: Path) -> Path:
    """train: 3 usable images (one empty) + one 0-byte file;
    val: 1 image. Returns the config path."""
    base = tmp_path / "voc data"  # a space in the root, on purpose
    add(
        base,
        "a",
        [xml_object("cat", (1, 1, 10, 10)), xml_object("dog", (1, 1, 40, 40), difficult=1)],
    )
    add(
        base,
        "b",
        [xml_object("dog", (1, 1, 120, 90)), xml_object("cat", (11, 11, 50, 40))],
        size=(128, 96),
    )
    add(base, "c", [])
    add(base, "d", [xml_object("cat", (1, 1, 10, 10))]).write_bytes(b"")
    add(base, "e", [xml_object("cat", (5, 5, 20, 25))])
    (base / "ImageSets/Main/train.txt").write_text("a\nb\nc\nd\n")
    (base / "ImageSets/Main/val.txt").write_text("e\n")
    config = tmp_path / "data.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "format": "voc",
                    "root": str(base),
                    "names": NAMES,
                    "train": ["ImageSets/Main/train.txt"],
                    "val": ["ImageSets/Main/val.txt"],
                }
            }
        )
    )
    return config


def test_check_report_values(tmp_path: Path) -> None:
    config = make_dataset(tmp_path)
    data_cfg = DataConfig(**yaml.safe_load(config.read_text())["data"])
    report = check_dataset(data_cfg)
    train, val = report.splits
    assert (train.num_images, train.num_empty, train.num_boxes, train.num_ignored) == (3, 1, 3, 1)
    assert train.boxes_per_class == {"cat": 2, "dog": 1} and train.ignored_per_class == {
        "cat": 0,
        "dog": 1,
    }
    sizes = train.box_sizes
    # used boxes: 10x10 (small), 120x90 (large), 40x30 (medium); the ignored one is not measured
    assert (sizes.width_min, sizes.width_median, sizes.width_max) == (10, 40, 120)
    assert (sizes.height_min, sizes.height_median, sizes.height_max) == (10, 30, 90)
    assert (sizes.small, sizes.medium, sizes.large) == (1, 1, 1)
    assert [Path(s.path).name for s in train.skipped] == ["d.jpg"]
    assert (val.num_images, val.num_boxes) == (1, 1) and report.problems() == []


def test_box_size_buckets_at_coco_thresholds() -> None:
    sizes = box_size_stats(np.array([31.99, 32, 95.99, 96]), np.array([32, 32, 96, 96]))
    assert (sizes.small, sizes.medium, sizes.large) == (1, 2, 1)
    assert box_size_stats(np.zeros(0), np.zeros(0)) is None


def test_cli_prints_counts_skipped_files_and_sizes(tmp_path: Path) -> None:
    config = make_dataset(tmp_path)
    result = CliRunner().invoke(main, ["data", "check", str(config)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "dataset: format voc" in out and "2 classes" in out
    assert "images:        3 usable, 1 without objects" in out
    assert "boxes:         3 used, 1 ignored" in out
    assert "images:        1 usable, 0 without objects" in out  # val
    lines = [line.split() for line in out.splitlines()]
    assert ["cat", "2", "0"] in lines and ["dog", "1", "1"] in lines
    assert "box width  px: min 10.0  median 40.0  max 120.0" in out
    assert "box area:      small 1  medium 1  large 1" in out
    assert "skipped:       1 image(s) (path: reason)" in out and "skipped:       0 image(s)" in out
    assert f"{tmp_path / 'voc data' / 'JPEGImages' / 'd.jpg'}: empty file (0 bytes)" in out


def test_cli_overrides_and_failures(tmp_path: Path) -> None:
    config = make_dataset(tmp_path)
    runner = CliRunner()
    # --set reaches the config: point val at the train list
    result = runner.invoke(check, [str(config), "--set", "data.val=[ImageSets/Main/train.txt]"])
    assert result.exit_code == 0 and result.output.count("images:        3 usable") == 2

    for image in (tmp_path / "voc data" / "JPEGImages").glob("*.jpg"):
        image.write_bytes(b"")  # nothing usable left
    result = runner.invoke(check, [str(config)])
    assert result.exit_code == 1
    assert (
        "Error: train: no usable image (1 entries, 4 skipped); val: no usable image"
        in result.output
    )
    assert "images:        0 usable" in result.output  # the report is still printed

    (tmp_path / "voc data" / "Annotations" / "a.xml").write_text(
        "<annotation>" + xml_object("horse", (1, 1, 5, 5)) + "</annotation>"
    )
    result = runner.invoke(check, [str(config)])
    assert result.exit_code == 1 and "a.xml: object 1 has unknown class 'horse'" in result.output

    result = runner.invoke(check, [str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "config file not found" in result.output
    result = runner.invoke(check, [str(config), "--set", "data.colour=1"])
    assert result.exit_code == 1 and "unknown key data.colour" in result.output
