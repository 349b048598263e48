"""Dense synthetic set: density, small objects, a 10x rarer class,
large images, clutter, determinism."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from detector.config import ConfigError, DataConfig, SynthConfig, load_config
from detector.data.catalog import load_split
from detector.data.synthetic import dense
from detector.data.synthetic.embedded import (
    MARKER,
    ensure_synthetic_dataset,
    generate_shapes_dataset,
)
from detector.data.synthetic.shapes import SHAPE_CLASSES

NAMES = list(SHAPE_CLASSES)  # ring, the last, is the rare class
CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _scenes(count: int, image_size: int = 640, seed: int = 0):
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        width, height = dense.dense_image_size(rng, image_size)
        yield width, height, *dense.render_dense_scene(rng, width, height, NAMES)


def test_scenes_are_dense_small_imbalanced_and_larger_than_the_network_input() -> None:
    counts, small, total = [], 0, 0
    per_class = np.zeros(len(NAMES), int)
    for width, height, image, boxes, labels in _scenes(30):
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        assert 480 <= width <= 640 and 480 <= height <= 640
        assert len(boxes) == len(labels)
        assert (
            np.all(boxes[:, :2] >= 0)
            and np.all(boxes[:, 2] <= width)
            and np.all(boxes[:, 3] <= height)
        )
        assert np.all(boxes[:, 2:] - boxes[:, :2] >= 2)
        assert labels.min() >= 0 and labels.max() < len(NAMES)
        counts.append(len(boxes))
        # Longest side seen by a 256 px network (letterbox scale 256 / longest image side).
        sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1) * 256 / max(width, height)
        small += int((sides < 16).sum())
        total += len(boxes)
        per_class += np.bincount(labels, minlength=len(NAMES))
    assert min(counts) >= 15 and np.mean(counts) >= 30  # 20-60 attempted, a few crowded out
    assert small / total > 0.5
    common = per_class[:-1].mean()
    # Expected ratio 10; ~1200 boxes give ~120 rare ones, so 7..14 holds with a wide margin.
    assert 7 <= common / per_class[-1] <= 14
    assert per_class[:-1].min() > 0.8 * common  # the other classes stay balanced


def test_distractors_are_drawn_but_not_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    mask = dense.distractor_mask(rng, NAMES, 12.0)
    assert mask.shape == (2 * 12 + 4,) * 2 and mask.max() == 255
    monkeypatch.setattr(dense, "OBJECTS_PER_IMAGE", (0, 0))
    scenes = {}
    for count in (0, 30):
        monkeypatch.setattr(dense, "DISTRACTORS_PER_IMAGE", (count, count))
        scenes[count] = dense.render_dense_scene(np.random.default_rng(1), 500, 500, NAMES, noise=0)
    assert all(len(boxes) == 0 and len(labels) == 0 for _, boxes, labels in scenes.values())
    changed = np.abs(scenes[30][0].astype(int) - scenes[0][0].astype(int)).max(axis=2) > 30
    assert changed.mean() > 0.03  # 30 shapes of radius 6..35 px cover several % of the image


def test_class_weights_make_the_last_class_ten_times_rarer() -> None:
    np.testing.assert_allclose(dense.class_weights(5), np.array([1, 1, 1, 1, 0.1]) / 4.1)
    np.testing.assert_allclose(dense.class_weights(1), [1.0])
    with pytest.raises(ValueError, match="at least one class"):
        dense.class_weights(0)


def test_image_size_range_and_refusals() -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([dense.dense_image_size(rng, 100) for _ in range(200)])
    assert sizes.min() == 75 and sizes.max() == 100
    with pytest.raises(ValueError, match="image_size >= 64"):
        dense.dense_image_size(rng, 32)


def test_dense_dataset_is_deterministic_and_reads_back(tmp_path: Path) -> None:
    kwargs = dict(num_train=3, num_val=1, image_size=200, names=NAMES, kind="dense")
    a = generate_shapes_dataset(tmp_path / "a", seed=1, **kwargs)
    b = generate_shapes_dataset(tmp_path / "b", seed=1, **kwargs)
    c = generate_shapes_dataset(tmp_path / "c", seed=2, **kwargs)
    for name in ("JPEGImages/000002.jpg", "Annotations/000002.xml"):
        assert (a / name).read_bytes() == (b / name).read_bytes() != (c / name).read_bytes()
    size = ET.parse(a / "Annotations/000000.xml").getroot().find("size")
    assert (
        150 <= int(size.find("width").text) <= 200 and 150 <= int(size.find("height").text) <= 200
    )
    split = load_split(
        DataConfig(format="voc", root=str(a), train=["ImageSets/Main/train.txt"], names=NAMES),
        "train",
    )
    assert len(split.records) == 3
    for record in split.records:
        assert len(record.boxes) >= 10
        assert np.all(record.boxes[:, 2] <= record.width) and np.all(
            record.boxes[:, 3] <= record.height
        )


def test_kind_is_part_of_the_marker(tmp_path: Path) -> None:
    root = tmp_path / "set"

    def cfg(kind: str) -> DataConfig:
        return DataConfig(
            format="voc",
            root=str(root),
            names=NAMES,
            synthetic=SynthConfig(num_train=1, num_val=1, image_size=96, seed=0, kind=kind),
        )

    ensure_synthetic_dataset(cfg("shapes"))
    assert "kind" not in (root / MARKER).read_text()  # markers from before `kind` stay valid
    ensure_synthetic_dataset(cfg("dense"))
    assert '"kind": "dense"' in (root / MARKER).read_text()
    width = int(ET.parse(root / "Annotations/000000.xml").getroot().find("size/width").text)
    assert 72 <= width <= 96


def test_bad_kind_and_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown kind 'sparse'"):
        generate_shapes_dataset(
            tmp_path / "x",
            num_train=1,
            num_val=0,
            image_size=96,
            seed=0,
            names=NAMES,
            kind="sparse",
        )
    with pytest.raises(ValueError, match="one number"):
        generate_shapes_dataset(
            tmp_path / "y",
            num_train=1,
            num_val=0,
            image_size=(96, 80),
            seed=0,
            names=NAMES,
            kind="dense",
        )
    with pytest.raises(ConfigError, match=r"data.synthetic.kind: 'sparse' is not one of"):
        load_config(CONFIGS / "dense.yaml", ["data.synthetic.kind=sparse"])
    with pytest.raises(
        ConfigError, match=r"data.synthetic.image_size: 48 must be >= 64 for kind dense"
    ):
        load_config(CONFIGS / "dense.yaml", ["data.synthetic.image_size=48"])


def test_dense_config_loads() -> None:
    cfg = load_config(CONFIGS / "dense.yaml")
    assert (
        cfg.data.synthetic.kind == "dense" and cfg.data.synthetic.image_size > cfg.model.image_size
    )
    assert cfg.data.names[-1] == "ring"


def test_synth_command_writes_a_dense_dataset(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from detector.cli import main

    out = tmp_path / "dense"
    result = CliRunner().invoke(
        main,
        [
            "data",
            "synth",
            str(out),
            "--kind",
            "dense",
            "--num-train",
            "2",
            "--num-val",
            "1",
            "--image-size",
            "128",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "dense images" in result.output
    assert '"kind": "dense"' in (out / MARKER).read_text()
    objects = ET.parse(out / "Annotations/000000.xml").getroot().findall("object")
    assert len(objects) >= 5  # 20-60 attempted; a 96-128 px image crowds some out
    bad = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "x"), "--kind", "sparse"])
    assert bad.exit_code != 0 and "sparse" in bad.output
