"""PASCAL VOC reader (reliability.md, "Annotations"): coordinates, difficult, <size>, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.config import DataConfig
from detector.data.catalog import load_split
from detector.data.formats.annotations import ReadStats
from detector.data.formats.voc import parse_voc_xml, read_voc_split, write_voc_xml
from detector.data.images import read_image_rgb

NAMES = ["cat", "dog"]


def voc_object(
    name: str, xmin: str, ymin: str, xmax: str, ymax: str, difficult: str | None = None
) -> str:
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return (
        f"<object><name>{name}</name><pose>Left</pose>{flag}<bndbox><xmin>{xmin}</xmin>"
        f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def voc_xml(objects: list[str], size: tuple[int, int] | None = None) -> str:
    """An annotation file; `size` is (width, height) or None for no <size> element."""
    size_xml = (
        ""
        if size is None
        else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    )
    return (
        "<annotation><folder>VOC</folder><filename>x.jpg</filename>"
        f"{size_xml}{''.join(objects)}</annotation>"
    )


def add_sample(base: Path, image_id: str, xml: str, width: int = 64, height: int = 48) -> Path:
    """Write JPEGImages/<id>.jpg (width x height) and Annotations/<id>.xml under `base`."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    image_path = base / "JPEGImages" / f"{image_id}.jpg"
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(image_path)
    (base / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
    return image_path


def write_split(base: Path, ids: list[str], name: str = "trainval") -> Path:
    path = base / "ImageSets" / "Main" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{image_id}\n" for image_id in ids), encoding="utf-8")
    return path


def test_one_based_inclusive_coordinates_become_zero_based_continuous(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(
        voc_xml(
            [voc_object("dog", "1", "1", "10", "20"), voc_object("cat", "5.5", "3", "5.5", "3")]
        )
    )
    annotation = parse_voc_xml(xml, NAMES)
    # pixels 1..10 (1-based) are columns 0..9, i.e. x in [0, 10)
    np.testing.assert_array_equal(annotation.boxes, [[0, 0, 10, 20], [4.5, 2, 5.5, 3]])
    np.testing.assert_array_equal(annotation.labels, [1, 0])
    assert annotation.size is None


def test_missing_difficult_means_zero_and_difficult_is_kept_as_ignore(tmp_path: Path) -> None:
    base = tmp_path / "VOC2007"
    add_sample(
        base,
        "a",
        voc_xml(
            [
                voc_object("cat", "2", "2", "20", "20"),
                voc_object("dog", "3", "3", "30", "30", difficult="1"),
                voc_object("dog", "4", "4", "40", "40", difficult="0"),
            ],
            size=(64, 48),
        ),
    )
    records, skipped = read_voc_split(write_split(base, ["a"]), NAMES, min_box_size=1.0)
    assert skipped == []
    (record,) = records
    np.testing.assert_array_equal(record.ignore, [False, True, False])
    np.testing.assert_array_equal(record.labels, [0, 1, 1])
    assert len(record.boxes) == 3  # the difficult box is kept, not dropped


@pytest.mark.parametrize(
    "size", [None, (48, 64), (0, 0), (640, 480)], ids=["missing", "swapped", "zero", "wrong"]
)
def test_missing_or_wrong_size_is_taken_from_the_image(
    tmp_path: Path, size: tuple[int, int] | None
) -> None:
    base = tmp_path / "VOC2012"
    add_sample(
        base,
        "a",
        voc_xml([voc_object("cat", "1", "1", "64", "48")], size=size),
        width=64,
        height=48,
    )
    stats = ReadStats()
    (record,), _ = read_voc_split(write_split(base, ["a"]), NAMES, min_box_size=1.0, stats=stats)
    assert (record.width, record.height) == (64, 48)
    np.testing.assert_array_equal(record.boxes, [[0, 0, 64, 48]])  # not clipped: fits the image
    assert stats.size_mismatches == (1 if size in [(48, 64), (640, 480)] else 0)
    assert stats.boxes_clipped == 0


def test_unknown_class_names_the_file_and_the_class(tmp_path: Path) -> None:
    xml = tmp_path / "000123.xml"
    xml.write_text(
        voc_xml([voc_object("cat", "1", "1", "5", "5"), voc_object("zebra", "1", "1", "5", "5")])
    )
    with pytest.raises(ValueError, match=r"000123\.xml.*object 2.*'zebra'"):
        parse_voc_xml(xml, NAMES)


@pytest.mark.parametrize(
    "coords, message",
    [
        (("10", "1", "5", "5"), "x2 < x1"),
        (("1", "nan", "5", "5"), "non-finite"),
        (("1", "1", "", "5"), "non-numeric <xmax>"),
        (("1", "1", "abc", "5"), "non-numeric"),
    ],
)
def test_inverted_nan_and_missing_coordinates_raise_with_the_file(
    tmp_path: Path, coords: tuple[str, ...], message: str
) -> None:
    xml = tmp_path / "bad.xml"
    xml.write_text(voc_xml([voc_object("dog", *coords)]))
    with pytest.raises(ValueError, match=rf"bad\.xml.*{message}"):
        parse_voc_xml(xml, NAMES)


def test_malformed_xml_names_the_file(tmp_path: Path) -> None:
    xml = tmp_path / "broken.xml"
    xml.write_text("<annotation><object><name>cat</name>")
    with pytest.raises(ValueError, match=r"broken\.xml: malformed XML"):
        parse_voc_xml(xml, NAMES)


def test_boxes_outside_are_clipped_and_tiny_ones_dropped(tmp_path: Path) -> None:
    base = tmp_path / "VOC2007"
    add_sample(
        base,
        "a",
        voc_xml(
            [
                voc_object(
                    "cat", "-5", "10", "100", "30"
                ),  # reaches outside left and right: clipped
                voc_object(
                    "dog", "70", "10", "90", "20"
                ),  # entirely right of the 64 px image: dropped
                voc_object(
                    "dog", "10", "10", "10.5", "20"
                ),  # 1.5 px wide: kept at min 1, dropped at 2
            ]
        ),
        width=64,
        height=48,
    )
    stats = ReadStats()
    (record,), _ = read_voc_split(write_split(base, ["a"]), NAMES, min_box_size=1.0, stats=stats)
    np.testing.assert_array_equal(record.boxes, [[0, 9, 64, 30], [9, 9, 10.5, 20]])
    np.testing.assert_array_equal(record.labels, [0, 1])
    assert (stats.boxes_clipped, stats.boxes_dropped) == (1, 1)
    (record,), _ = read_voc_split(write_split(base, ["a"]), NAMES, min_box_size=2.0)
    np.testing.assert_array_equal(record.labels, [0])


def test_image_without_objects_is_kept_as_negative(tmp_path: Path) -> None:
    base = tmp_path / "VOC2007"
    add_sample(base, "empty", voc_xml([], size=(64, 48)))
    (record,), skipped = read_voc_split(write_split(base, ["empty"]), NAMES, min_box_size=1.0)
    assert skipped == [] and record.boxes.shape == (0, 4) and record.labels.dtype == np.int64


def test_years_and_split_files_are_combined_with_unique_ids(tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit"
    for year, ids in (("VOC2007", ["000001", "000002"]), ("VOC2012", ["2008_000001"])):
        for image_id in ids:
            add_sample(root / year, image_id, voc_xml([voc_object("cat", "1", "1", "8", "8")]))
        write_split(root / year, ids)
    cfg = DataConfig(
        format="voc",
        root=str(root),
        names=NAMES,
        train=["VOC2007/ImageSets/Main/trainval.txt", "VOC2012/ImageSets/Main/trainval.txt"],
    )
    split = load_split(cfg, "train")
    assert [r.source_id for r in split.records] == ["000001", "000002", "2008_000001"]
    assert [r.image_id for r in split.records] == [0, 1, 2]
    assert split.names == NAMES and split.skipped == []


def test_missing_and_broken_images_are_skipped_and_reported(tmp_path: Path) -> None:
    base = tmp_path / "VOC2007"
    add_sample(base, "good", voc_xml([voc_object("cat", "1", "1", "8", "8")]))
    add_sample(base, "gone", voc_xml([])).unlink()
    add_sample(base, "zero", voc_xml([])).write_bytes(b"")
    add_sample(base, "noxml", voc_xml([]))
    (base / "Annotations" / "noxml.xml").unlink()
    records, skipped = read_voc_split(
        write_split(base, ["good", "gone", "zero", "noxml"]), NAMES, min_box_size=1.0
    )
    assert [r.source_id for r in records] == ["good"]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert reasons["gone.jpg"] == "file not found"
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert "annotation file not found" in reasons["noxml.jpg"]


def test_split_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="trainval.txt"):
        read_voc_split(tmp_path / "ImageSets/Main/trainval.txt", NAMES, min_box_size=1.0)
    wrong = tmp_path / "lists" / "train.txt"
    wrong.parent.mkdir()
    wrong.write_text("a\n")
    with pytest.raises(ValueError, match="ImageSets/Main"):
        read_voc_split(wrong, NAMES, min_box_size=1.0)
    with pytest.raises(ValueError, match="data.names is required"):
        load_split(DataConfig(format="voc", root=str(tmp_path), train=["x"]), "train")


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_image_box_lands_on_the_object(tmp_path: Path, orientation: int) -> None:
    # Upright view 90 wide x 60 high with a red block at x 50..80, y 10..30. The file
    # stores the pixels turned, and <size> states the stored (turned) size.
    displayed = np.full((60, 90, 3), 30, np.uint8)
    displayed[10:30, 50:80] = (255, 0, 0)
    stored = np.ascontiguousarray(np.rot90(displayed, k=1 if orientation == 6 else -1))
    base = tmp_path / "VOC2007"
    add_sample(base, "r", voc_xml([voc_object("dog", "51", "11", "80", "30")], size=(60, 90)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(base / "JPEGImages" / "r.jpg", quality=95, exif=exif)
    (record,), _ = read_voc_split(write_split(base, ["r"]), NAMES, min_box_size=1.0)
    assert (record.width, record.height) == (90, 60)
    image = read_image_rgb(record.image_path)
    assert image.shape == (record.height, record.width, 3)
    x1, y1, x2, y2 = record.boxes[0].astype(int)
    inside = image[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].astype(int)
    assert inside[..., 0].mean() > 220 and inside[..., 1].mean() < 40
    mask = np.ones(image.shape[:2], bool)
    mask[y1 - 2 : y2 + 2, x1 - 2 : x2 + 2] = False
    assert image[mask][:, 0].mean() < 60  # no red outside the box


def test_write_voc_xml_round_trips(tmp_path: Path) -> None:
    boxes = np.array([[0, 0, 10, 20], [3.25, 4.5, 30.75, 40]], np.float32)
    write_voc_xml(
        tmp_path / "w.xml",
        filename="w.jpg",
        width=64,
        height=48,
        boxes=boxes,
        labels=np.array([1, 0]),
        names=NAMES,
        difficult=np.array([False, True]),
    )
    text = (tmp_path / "w.xml").read_text()
    assert "<xmin>1</xmin>" in text and "<xmax>10</xmax>" in text  # 1-based on disk
    annotation = parse_voc_xml(tmp_path / "w.xml", NAMES)
    np.testing.assert_array_equal(annotation.boxes, boxes)
    np.testing.assert_array_equal(annotation.difficult, [False, True])
    assert annotation.size == (48, 64) and annotation.filename == "w.jpg"


@pytest.mark.parametrize(
    "filename",
    [
        "/etc/passwd",
        "../../secret.jpg",
        "sub/../../x.jpg",
        "C:\\data\\x.jpg",
        "..\\x.jpg",
        "\\\\server\\share\\x.jpg",
    ],
)
def test_filename_escaping_the_dataset_is_an_error_naming_the_xml(
    tmp_path: Path, filename: str
) -> None:
    from detector.data.formats.annotations import AnnotationError

    outside = tmp_path / "secret.jpg"
    Image.fromarray(np.full((20, 20, 3), 1, np.uint8)).save(outside)
    base = tmp_path / "sets" / "VOC"
    add_sample(
        base,
        "a",
        voc_xml([]).replace("<filename>x.jpg</filename>", f"<filename>{filename}</filename>"),
    )
    (base / "JPEGImages" / "a.jpg").unlink()  # so the reader would follow <filename>
    split = write_split(base, ["a"])
    with pytest.raises(AnnotationError) as info:
        read_voc_split(split, NAMES, min_box_size=1.0)
    xml = base / "Annotations" / "a.xml"
    assert str(info.value).startswith(
        f"{xml}: <filename> {filename!r} escapes the dataset's JPEGImages folder"
    )


def test_plain_and_nested_filenames_are_followed(tmp_path: Path) -> None:
    base = tmp_path / "VOC"
    add_sample(
        base,
        "a",
        voc_xml([]).replace("<filename>x.jpg</filename>", "<filename>sub/a b.png</filename>"),
    )
    (base / "JPEGImages" / "a.jpg").rename(base / "JPEGImages" / "a b.png")
    (base / "JPEGImages" / "sub").mkdir()
    (base / "JPEGImages" / "a b.png").rename(base / "JPEGImages" / "sub" / "a b.png")
    records, skipped = read_voc_split(write_split(base, ["a"]), NAMES, min_box_size=1.0)
    assert skipped == [] and records[0].image_path == str(base / "JPEGImages" / "sub" / "a b.png")
