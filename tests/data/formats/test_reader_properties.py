"""Property-based tests of the VOC, COCO and YOLO readers on randomly corrupted files.

Any input either loads, or raises `AnnotationError` whose message names the file;
never another exception. Example counts are kept small (the suite's time budget).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from detector.data.formats.annotations import AnnotationError
from detector.data.formats.coco import read_coco
from detector.data.formats.voc import read_voc_split
from detector.data.formats.yolo import read_yolo_source

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NAMES = ["cat", "dog"]
# Text that parsers choke on: numbers in odd spellings, markup, separators, non-ASCII.
NASTY = [
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e999",
    "-1e400",
    "0x10",
    "1_000",
    "-3",
    "0",
    "5.5",
    "abc",
    "<",
    ">",
    "&",
    "&amp;",
    "]]>",
    "<!--",
    "\x00",
    "é",
    "١٢",
    "\n",
    "../x.jpg",
    "/etc/passwd",
    "C:\\x.jpg",
]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(alphabet=string.printable + "é\x00", max_size=12))
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def write_image(path: Path) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(path)


def assert_names_file(error: AnnotationError, *paths: Path) -> None:
    assert any(str(error).startswith(str(path)) for path in paths), str(error)


VALID_VOC = (
    "<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height></size>"
    "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin>"
    "<xmax>20</xmax><ymax>30</ymax></bndbox></object></annotation>"
)


@st.composite
def corrupted_text(draw: st.DrawFn, valid: str) -> str:
    """`valid` with a few random edits:
    truncation, a slice replaced by nasty text, or insertions."""
    text = valid
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "replace", "insert"]))
        position = draw(st.integers(0, len(text)))
        if kind == "truncate":
            text = text[:position]
        elif kind == "replace":
            end = draw(st.integers(position, min(len(text), position + 12)))
            text = text[:position] + draw(TEXT) + text[end:]
        else:
            text = text[:position] + draw(TEXT) + text[position:]
    return text


@st.composite
def voc_values(draw: st.DrawFn) -> str:
    """A well-formed XML whose values (names, coordinates, filename, size)
    are random or plausible."""

    def value() -> str:
        raw = draw(st.one_of(st.integers(-5, 100).map(str), TEXT))
        return raw.replace("&", "&amp;").replace("<", "&lt;").replace("\x00", "")

    objects = "".join(
        f"<object><name>{draw(st.sampled_from(NAMES + ['bird']))}</name>"
        f"<difficult>{value()}</difficult>"
        f"<bndbox><xmin>{value()}</xmin><ymin>{value()}</ymin>"
        f"<xmax>{value()}</xmax><ymax>{value()}</ymax>"
        "</bndbox></object>"
        for _ in range(draw(st.integers(0, 2)))
    )
    return (
        f"<annotation><filename>{value()}</filename><size><width>{value()}</width>"
        f"<height>{value()}</height></size>{objects}</annotation>"
    )


@SETTINGS
@given(
    content=st.one_of(corrupted_text(VALID_VOC), voc_values(), st.binary(max_size=64).map(repr)),
    raw_bytes=st.none() | st.binary(max_size=40),
)
@example(
    content=VALID_VOC.replace("<width>64</width>", "<width>inf</width>"), raw_bytes=None
)  # int(inf)
@example(content='<?xml version="1.0" encoding="no-such-codec"?><annotation/>', raw_bytes=None)
def test_voc_reader_loads_or_names_the_file(
    tmp_path: Path, content: str, raw_bytes: bytes | None
) -> None:
    base = tmp_path / "VOC"
    write_image(base / "JPEGImages" / "a.jpg")
    xml = base / "Annotations" / "a.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    if raw_bytes is not None:
        xml.write_bytes(content.encode("utf-8", "surrogatepass")[:50] + raw_bytes)
    else:
        xml.write_text(content, encoding="utf-8")
    split = base / "ImageSets" / "Main" / "train.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("a\n")
    try:
        records, skipped = read_voc_split(split, NAMES, min_box_size=1.0)
    except AnnotationError as error:
        assert_names_file(error, xml, split)
        return
    assert len(records) + len(skipped) == 1
    for record in records:
        assert (
            np.isfinite(record.boxes).all() and (record.boxes[:, 2:] >= record.boxes[:, :2]).all()
        )


VALID_COCO: dict[str, Any] = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "iscrowd": 0}
    ],
    "categories": [{"id": 1, "name": "cat"}],
}


@st.composite
def mutated_coco(draw: st.DrawFn) -> Any:
    """The valid document with up to 4 random values replaced (a key, a whole entry or a list)."""
    document = json.loads(json.dumps(VALID_COCO))
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(["images", "annotations", "categories"]))
        target = draw(st.sampled_from(["section", "entry", "field"]))
        if target == "section":
            document[section] = draw(JSON)
        elif not isinstance(document[section], list) or not document[section]:
            document[section] = [draw(JSON)]
        elif target == "entry":
            document[section].append(draw(JSON))
        elif isinstance(document[section][0], dict):
            key = draw(st.sampled_from(sorted(VALID_COCO[section][0]) + ["extra"]))
            document[section][0][key] = draw(JSON)
    return document


@SETTINGS
@given(
    document=st.one_of(mutated_coco(), JSON),
    names=st.sampled_from([None, ["cat"], ["dog"]]),
    cut=st.none() | st.integers(0, 200),
)
def test_coco_reader_loads_or_names_the_file(
    tmp_path: Path, document: Any, names: list[str] | None, cut: int | None
) -> None:
    write_image(tmp_path / "images" / "a.jpg")
    annotation_file = tmp_path / "instances.json"
    text = json.dumps(document)
    annotation_file.write_text(text if cut is None else text[:cut], encoding="utf-8")
    try:
        records, skipped, found_names = read_coco(
            tmp_path / "images", annotation_file, names=names, min_box_size=1.0
        )
    except AnnotationError as error:
        assert_names_file(error, annotation_file)
        return
    assert names is None or found_names == names
    for record in records:
        assert np.isfinite(record.boxes).all() and record.labels.max(initial=0) < max(
            len(found_names), 1
        )


YOLO_TOKENS = st.sampled_from(
    [
        "0",
        "1",
        "2",
        "-1",
        "0.5",
        "0.25",
        "1.5",
        "-0.1",
        "nan",
        "inf",
        "1e999",
        "abc",
        "1.0",
        "0x1",
        "",
        "\t",
    ]
)


@st.composite
def yolo_labels(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        lines.append(" ".join(draw(st.lists(YOLO_TOKENS, min_size=0, max_size=7))))
    return "\n".join(lines)


@SETTINGS
@given(
    labels=st.one_of(yolo_labels(), corrupted_text("0 0.5 0.5 0.25 0.25\n1 0.1 0.1 0.1 0.1\n")),
    raw_bytes=st.none() | st.binary(min_size=1, max_size=16),
)
def test_yolo_reader_loads_or_names_the_file(
    tmp_path: Path, labels: str, raw_bytes: bytes | None
) -> None:
    image = tmp_path / "images" / "a.jpg"
    write_image(image)
    label_file = tmp_path / "labels" / "a.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_bytes(labels.encode("utf-8", "surrogatepass") + (raw_bytes or b""))
    try:
        records, skipped = read_yolo_source(tmp_path / "images", NAMES, min_box_size=1.0)
    except AnnotationError as error:
        assert_names_file(error, label_file)
        return
    assert len(records) == 1 and skipped == []
    assert np.isfinite(records[0].boxes).all() and set(records[0].labels.tolist()) <= {0, 1}
