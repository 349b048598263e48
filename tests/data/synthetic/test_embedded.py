"""Synthetic shapes dataset: VOC layout, tight boxes, determinism, atomic generation, CLI."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.config import DataConfig, SynthConfig
from detector.data.catalog import load_split
from detector.data.synthetic import embedded as synthetic
from detector.data.synthetic.embedded import ensure_synthetic_dataset, generate_shapes_dataset
from detector.data.synthetic.shapes import SHAPE_CLASSES, PlacedShape, draw_shape, render_scene

NAMES = list(SHAPE_CLASSES)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generation_is_deterministic_per_seed(tmp_path: Path) -> None:
    kwargs = dict(num_train=5, num_val=2, image_size=64, names=NAMES)
    a = _digest(generate_shapes_dataset(tmp_path / "a", seed=3, **kwargs))
    b = _digest(generate_shapes_dataset(tmp_path / "b", seed=3, **kwargs))
    c = _digest(generate_shapes_dataset(tmp_path / "c", seed=4, **kwargs))
    assert a == b
    assert a["JPEGImages/000000.jpg"] != c["JPEGImages/000000.jpg"]


def test_voc_layout_and_boxes_inside_images(tmp_path: Path) -> None:
    root = generate_shapes_dataset(
        tmp_path / "shapes",
        num_train=12,
        num_val=4,
        image_size=(80, 60),
        seed=0,
        names=["star", "ring", "circle"],
    )
    train_ids = (root / "ImageSets/Main/train.txt").read_text().split()
    val_ids = (root / "ImageSets/Main/val.txt").read_text().split()
    assert len(train_ids) == 12 and len(val_ids) == 4 and not set(train_ids) & set(val_ids)
    total = 0
    for image_id in train_ids + val_ids:
        image = cv2.imread(str(root / "JPEGImages" / f"{image_id}.jpg"))
        assert image.shape == (60, 80, 3)
        tree = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
        assert (tree.findtext("size/width"), tree.findtext("size/height")) == ("80", "60")
        for obj in tree.iter("object"):
            total += 1
            assert (
                obj.findtext("name") in ("star", "ring", "circle")
                and obj.findtext("difficult") == "0"
            )
            x1, y1, x2, y2 = (
                int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")
            )
            assert 1 <= x1 < x2 <= 80 and 1 <= y1 < y2 <= 60  # 1-based inclusive
    assert total > 0
    split = load_split(
        DataConfig(
            format="voc",
            root=str(root),
            train=["ImageSets/Main/train.txt"],
            names=["star", "ring", "circle"],
        ),
        "train",
    )
    assert len(split.records) == 12 and not split.skipped
    for record in split.records:
        assert (record.boxes >= 0).all() and (record.boxes[:, [0, 2]] <= 80).all()
        assert (record.boxes[:, [1, 3]] <= 60).all()


@pytest.mark.parametrize("kind", SHAPE_CLASSES)
def test_drawn_box_is_the_tight_extent_of_the_shape(kind: str) -> None:
    canvas = np.zeros((60, 70, 3), np.uint8)
    box = draw_shape(canvas, PlacedShape(kind, 33.3, 28.6, 17.0, 0.4, (255, 255, 255)))
    strong = np.argwhere(canvas[..., 0] >= 128)  # >= 50% coverage
    (y1, x1), (y2, x2) = strong.min(axis=0), strong.max(axis=0)
    np.testing.assert_array_equal(box, [x1, y1, x2 + 1, y2 + 1])
    assert (canvas[..., 0] > 0).sum() > 0.25 * (box[2] - box[0]) * (box[3] - box[1])


def test_ring_shows_the_background_through_its_hole() -> None:
    canvas = np.zeros((50, 50, 3), np.uint8)
    draw_shape(canvas, PlacedShape("ring", 25, 25, 20, 0, (255, 255, 255)))
    assert canvas[25, 25, 0] == 0 and canvas[25, 8, 0] == 255


def test_scenes_have_varied_content_and_empty_images() -> None:
    rng = np.random.default_rng(0)
    counts, sizes = [], []
    for _ in range(40):
        _, boxes, labels = render_scene(rng, 96, 96, NAMES)
        counts.append(len(boxes))
        sizes += list(boxes[:, 2] - boxes[:, 0])
        assert labels.dtype == np.int64 and ((labels >= 0) & (labels < 5)).all()
    assert max(counts) >= 4 and min(sizes) < 12 and max(sizes) > 30
    image, boxes, labels = render_scene(rng, 96, 96, NAMES, empty_fraction=1.0)
    assert boxes.shape == (0, 4) and labels.shape == (0,) and image.std() > 5  # textured, not blank


def test_unknown_class_names_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hexagon"):
        generate_shapes_dataset(
            tmp_path / "x",
            num_train=1,
            num_val=0,
            image_size=32,
            seed=0,
            names=["circle", "hexagon"],
        )


def _data_cfg(root: Path, num_train: int = 3) -> DataConfig:
    return DataConfig(
        format="voc",
        root=str(root),
        train=["ImageSets/Main/train.txt"],
        names=NAMES,
        synthetic=SynthConfig(num_train=num_train, num_val=1, image_size=32, seed=0),
    )


def test_ensure_generates_once_and_regenerates_on_new_parameters(tmp_path: Path) -> None:
    root = tmp_path / "data" / "shapes"
    ensure_synthetic_dataset(_data_cfg(root))
    first = _digest(root)
    assert len(list((root / "JPEGImages").iterdir())) == 4
    marker_time = (root / synthetic.MARKER).stat().st_mtime_ns
    ensure_synthetic_dataset(_data_cfg(root))
    assert (root / synthetic.MARKER).stat().st_mtime_ns == marker_time
    ensure_synthetic_dataset(_data_cfg(root, num_train=5))
    assert len(list((root / "JPEGImages").iterdir())) == 6 and _digest(root) != first
    assert sorted(p.name for p in root.parent.iterdir()) == ["shapes"]  # no temp dirs left


def test_ensure_never_overwrites_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine"):
        ensure_synthetic_dataset(_data_cfg(tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_interrupted_generation_leaves_no_half_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def render_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render_scene(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_scene", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_dataset(_data_cfg(tmp_path / "shapes"))
    assert list(tmp_path.iterdir()) == []


def test_synth_command_writes_the_dataset(tmp_path: Path) -> None:
    out = tmp_path / "synth out"
    result = CliRunner().invoke(
        main,
        [
            "data",
            "synth",
            str(out),
            "--num-train",
            "4",
            "--num-val",
            "2",
            "--image-size",
            "48",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 6
    assert len(list((out / "Annotations").glob("*.xml"))) == 6
    assert cv2.imread(str(out / "JPEGImages" / "000005.jpg")).shape == (48, 48, 3)
    again = CliRunner().invoke(main, ["data", "synth", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output


def _config_file(tmp_path: Path, synthetic_section: bool = True) -> Path:
    text = (
        f"data:\n  format: voc\n  root: {tmp_path / 'shapes'}\n"
        "  train: [ImageSets/Main/train.txt]\n"
        f"  names: [circle, star, ring]\n"
    )
    if synthetic_section:
        text += "  synthetic: {num_train: 4, num_val: 1, image_size: 64, seed: 0}\n"
    path = tmp_path / "cfg.yaml"
    path.write_text(text + "model:\n  image_size: 64\n")
    return path


def test_video_command_writes_the_requested_frames(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    result = CliRunner().invoke(
        main,
        [
            "data",
            "video",
            str(_config_file(tmp_path)),
            "--out",
            str(out),
            "--frames",
            "12",
            "--fps",
            "10",
            "--size",
            "96x64",
        ],
    )
    assert result.exit_code == 0, result.output
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 12 and frames[0].shape == (64, 96, 3)
    assert not np.array_equal(frames[0], frames[-1])  # the shapes move
    gt_lines = (tmp_path / "demo.gt.txt").read_text().splitlines()
    assert f"wrote {tmp_path / 'demo.gt.txt'}" in result.output
    assert {int(line.split(",")[0]) for line in gt_lines} == set(
        range(1, 13)
    )  # ground truth on every frame


def test_video_command_shapes_makes_a_crowd(tmp_path: Path) -> None:
    out = tmp_path / "crowd.mp4"
    args = ["data", "video", str(_config_file(tmp_path)), "--out", str(out), "--frames", "5"]
    result = CliRunner().invoke(main, [*args, "--shapes", "10"])
    assert result.exit_code == 0, result.output
    ids = {line.split(",")[1] for line in (tmp_path / "crowd.gt.txt").read_text().splitlines()}
    assert len(ids) == 10
    result = CliRunner().invoke(main, [*args, "--shapes", "0"])
    assert result.exit_code != 0 and "--shapes" in result.output


def test_video_command_needs_a_synthetic_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "data",
            "video",
            str(_config_file(tmp_path, synthetic_section=False)),
            "--out",
            str(tmp_path / "v.mp4"),
        ],
    )
    assert result.exit_code != 0 and "data.synthetic" in result.output
