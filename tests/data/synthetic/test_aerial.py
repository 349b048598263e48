"""Aerial synthetic set: image sizes, object-size distribution,
clusters, determinism, boxes inside."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from detector.config import ConfigError, DataConfig, load_config
from detector.data.catalog import load_split
from detector.data.synthetic import aerial
from detector.data.synthetic.embedded import MARKER, generate_shapes_dataset
from detector.data.synthetic.shapes import SHAPE_CLASSES

NAMES = list(SHAPE_CLASSES)
CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _scene(image_size: int, seed: int = 0, index: int = 0):
    rng = np.random.default_rng([seed, index])
    width, height = aerial.aerial_image_size(rng, image_size)
    return (width, height, *aerial.render_aerial_scene(rng, width, height, NAMES))


def test_image_sides_span_1024_to_the_largest_side() -> None:
    rng = np.random.default_rng(0)
    sides = np.array([aerial.aerial_image_size(rng, 2048) for _ in range(300)])
    assert sides.min() >= 1024 and sides.max() <= 2048
    assert sides.min() < 1100 and sides.max() > 1990  # the whole range is drawn
    assert aerial.aerial_image_size(rng, 512) == (512, 512)  # S <= 1024: S x S (tests, demos)
    with pytest.raises(ValueError, match="image_size >= 256"):
        aerial.aerial_image_size(rng, 200)


def test_objects_are_small_with_a_few_large_ones_inside_the_image() -> None:
    small_sides, large_per_image = [], []
    for index in range(3):
        width, height, image, boxes, labels = _scene(1536, index=index)
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        assert len(boxes) == len(labels) and labels.min() >= 0 and labels.max() < len(NAMES)
        assert (
            np.all(boxes[:, :2] >= 0)
            and np.all(boxes[:, 2] <= width)
            and np.all(boxes[:, 3] <= height)
        )
        assert np.all(boxes[:, 2:] > boxes[:, :2])
        sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
        large = sides > 100
        # Large boxes: 15-30% of the short side, up to a pixel of anti-aliasing either way.
        fraction = sides[large] / min(width, height)
        assert np.all((fraction > 0.14) & (fraction < 0.31)), fraction
        large_per_image.append(int(large.sum()))
        small_sides.append(sides[~large])
        # 30-80 small objects per megapixel are attempted; a few are crowded out.
        assert 20 <= (~large).sum() / (width * height / 1e6) <= 80
    small = np.concatenate(small_sides)
    assert small.min() >= 8 and small.max() <= 41  # 8-40 px, +1 px of rounding at most
    # Log-uniform sides: about as many under 18 px (the geometric middle) as over it.
    assert 0.35 < (small < 18).mean() < 0.65
    assert all(1 <= count <= 3 for count in large_per_image)


def test_small_objects_cluster_so_some_tiles_are_empty() -> None:
    width, height, _, boxes, _ = _scene(2048, index=1)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    cells = np.zeros((4, 4), int)  # 16 regions of the image
    for x, y in centres:
        cells[int(y * 4 / height), int(x * 4 / width)] += 1
    # Uniform placement would put ~N/16 in every region; clusters leave some nearly
    # empty and crowd others.
    assert cells.max() >= 3 * cells.mean()
    assert cells.min() <= 0.5 * cells.mean()


def test_clutter_is_drawn_but_not_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aerial, "SMALL_PER_MEGAPIXEL", (0, 0))
    monkeypatch.setattr(aerial, "LARGE_PER_IMAGE", (0, 0))
    image, boxes, labels = aerial.render_aerial_scene(
        np.random.default_rng(2), 512, 512, NAMES, noise=0
    )
    assert len(boxes) == 0 and len(labels) == 0
    monkeypatch.setattr(aerial, "DISTRACTORS_PER_MEGAPIXEL", (0, 0))
    bare, _, _ = aerial.render_aerial_scene(np.random.default_rng(2), 512, 512, NAMES, noise=0)
    assert (np.abs(image.astype(int) - bare.astype(int)).max(axis=2) > 30).mean() > 0.002


def test_aerial_dataset_is_deterministic_and_reads_back(tmp_path: Path) -> None:
    kwargs = dict(num_train=2, num_val=1, image_size=512, names=NAMES, kind="aerial")
    a = generate_shapes_dataset(tmp_path / "a", seed=1, **kwargs)
    b = generate_shapes_dataset(tmp_path / "b", seed=1, **kwargs)
    c = generate_shapes_dataset(tmp_path / "c", seed=2, **kwargs)
    for name in ("JPEGImages/000001.jpg", "Annotations/000001.xml"):
        assert (a / name).read_bytes() == (b / name).read_bytes() != (c / name).read_bytes()
    assert '"kind": "aerial"' in (a / MARKER).read_text()
    size = ET.parse(a / "Annotations/000000.xml").getroot().find("size")
    assert int(size.find("width").text) == int(size.find("height").text) == 512
    split = load_split(
        DataConfig(format="voc", root=str(a), train=["ImageSets/Main/train.txt"], names=NAMES),
        "train",
    )
    assert len(split.records) == 2
    for record in split.records:
        assert len(record.boxes) >= 4
        assert np.all(record.boxes[:, 2] <= record.width) and np.all(
            record.boxes[:, 3] <= record.height
        )


def test_aerial_config_loads_and_refuses_a_small_image_size() -> None:
    cfg = load_config(CONFIGS / "aerial.yaml")
    assert cfg.data.synthetic.kind == "aerial"
    assert cfg.data.synthetic.image_size >= 4 * cfg.model.image_size  # large images, small input
    with pytest.raises(
        ConfigError, match=r"data.synthetic.image_size: 128 must be >= 256 for kind aerial"
    ):
        load_config(CONFIGS / "aerial.yaml", ["data.synthetic.image_size=128"])
    with pytest.raises(ValueError, match="aerial synthetic dataset: image_size is one number"):
        generate_shapes_dataset(
            "unused",
            num_train=1,
            num_val=0,
            image_size=(512, 256),
            seed=0,
            names=NAMES,
            kind="aerial",
        )


def test_synth_command_writes_an_aerial_dataset(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from detector.cli import main

    out = tmp_path / "aerial"
    result = CliRunner().invoke(
        main,
        [
            "data",
            "synth",
            str(out),
            "--kind",
            "aerial",
            "--num-train",
            "1",
            "--num-val",
            "1",
            "--image-size",
            "384",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "aerial images" in result.output
    objects = ET.parse(out / "Annotations/000000.xml").getroot().findall("object")
    assert len(objects) >= 3
