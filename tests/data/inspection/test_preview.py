"""`detector data preview`: a grid of augmented samples with boxes drawn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from detector.cli import main
from detector.data.inspection.preview import class_colour, draw_boxes, tile_grid


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        f"data:\n  format: voc\n  root: {tmp_path / 'shapes'}\n"
        "  train: [ImageSets/Main/train.txt]\n"
        "  val: [ImageSets/Main/val.txt]\n  names: [circle, square, triangle, star, ring]\n"
        "  synthetic: {num_train: 6, num_val: 1, image_size: 64, seed: 0}\n"
        "model:\n  image_size: 64\n"
    )
    return path


def test_preview_writes_a_grid_of_the_expected_size(tmp_path: Path) -> None:
    out = tmp_path / "out dir" / "preview.png"
    result = CliRunner().invoke(
        main,
        [
            "data",
            "preview",
            str(_config_file(tmp_path)),
            "--out",
            str(out),
            "--num",
            "5",
            "--seed",
            "2",
            "--set",
            "model.image_size=96",
        ],
    )
    assert result.exit_code == 0, result.output
    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 96, 3 * 96, 3)  # 5 tiles: 3 columns, 2 rows
    assert (
        grid[:96].std() > 10 and (grid[96:, 2 * 96 :] == 0).all()
    )  # content; the sixth tile empty
    colours = {class_colour(label) for label in range(5)}
    assert any((grid == colour).all(axis=2).sum() > 20 for colour in colours)  # boxes drawn


def test_preview_bad_input_exits_with_a_reason(tmp_path: Path) -> None:
    config = _config_file(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "data",
            "preview",
            str(config),
            "--out",
            str(tmp_path / "p.png"),
            "--set",
            "augment=[{name: spin}]",
        ],
    )
    assert result.exit_code != 0 and "augment[0].name" in result.output
    result = CliRunner().invoke(
        main, ["data", "preview", str(config), "--out", str(tmp_path / "p.png"), "--num", "0"]
    )
    assert result.exit_code == 2


def test_draw_boxes_hand_checked() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    drawn = draw_boxes(
        image, np.array([[10, 20, 30, 35]]), np.array([1]), ["a", "b"], np.array([False])
    )
    colour = class_colour(1)
    assert (
        tuple(drawn[34, 15]) == colour and tuple(drawn[25, 29]) == colour
    )  # bottom and right edges
    assert (drawn[25, 15] == 0).all()  # inside left untouched
    assert (image == 0).all()  # input not modified
    ignored = draw_boxes(
        image, np.array([[10, 20, 30, 35]]), np.array([0]), ["a"], np.array([True])
    )
    assert tuple(ignored[34, 15]) == (160, 160, 160)


def test_tile_grid_places_tiles_in_rows() -> None:
    tiles = [np.full((4, 4, 3), value, np.uint8) for value in (1, 2, 3)]
    grid = tile_grid(tiles, columns=2)
    assert grid.shape == (8, 8, 3)
    assert grid[0, 0, 0] == 1 and grid[0, 4, 0] == 2 and grid[4, 0, 0] == 3 and grid[4, 4, 0] == 0


def test_preview_shows_mosaic_mixup_and_multi_scale(tmp_path: Path) -> None:
    from detector.config import load_config
    from detector.data.inspection.preview import render_preview

    augment = (
        "augment=[{name: mosaic, p: 1.0}, {name: mixup, p: 1.0}, {name: affine, p: 1.0}, "
        "{name: vflip, p: 0.5}]"
    )
    cfg = load_config(_config_file(tmp_path), [augment, "train.multi_scale=[32, 128]"])
    grid = render_preview(cfg, num=9, seed=1)
    assert grid.shape == (3 * 128, 3 * 128, 3)  # cells of the largest side drawn
    # Each tile keeps its own side: black beyond it, grey (114 padding) or image inside.
    sides = []
    for row in range(3):
        for column in range(3):
            cell = grid[row * 128 : (row + 1) * 128, column * 128 : (column + 1) * 128]
            filled = np.argwhere(cell.any(axis=2))
            sides.append(int(filled[:, 1].max()) + 1)
    assert set(sides) <= {32, 64, 96, 128} and len(set(sides)) > 1
    plain = render_preview(load_config(_config_file(tmp_path), ["augment=[]"]), num=9, seed=1)
    assert plain.shape == (3 * 64, 3 * 64, 3)


def test_tile_grid_pads_smaller_tiles() -> None:
    grid = tile_grid([np.full((4, 4, 3), 1, np.uint8), np.full((2, 2, 3), 2, np.uint8)], columns=2)
    assert grid.shape == (4, 8, 3)
    assert (grid[:2, 4:6] == 2).all() and (grid[2:, 4:] == 0).all() and (grid[:, 6:] == 0).all()


def test_tile_overview_outlines_the_tiles_on_the_scaled_image() -> None:
    from detector.data.inspection.preview import tile_overview
    from detector.data.record import SampleRecord

    record = SampleRecord("x.jpg", 200, 100, [[20, 20, 60, 60]], [1], [False])
    image = np.zeros((100, 200, 3), np.uint8)
    overview = tile_overview(record, image, [(0, 0, 100, 100), (100, 0, 200, 100)], side=100)
    assert overview.shape == (50, 100, 3)  # scale 1/2
    white, black = (255, 255, 255), (0, 0, 0)
    assert (overview[0, 1:49] == white).all() and (overview[1:49, 0] == white).all()  # first tile
    assert (
        overview[0, 51:99] == black
    ).all()  # the second tile alternates to black (on black here)
    assert (overview[10, 10:30] == class_colour(1)).all()  # the box at half scale: 10..29


def test_preview_with_data_slice_shows_the_tile_overview_then_tiles(tmp_path: Path) -> None:
    from detector.config import load_config
    from detector.data.catalog import load_split
    from detector.data.images import read_image_rgb
    from detector.data.inspection.preview import render_preview, tile_overview
    from detector.data.tiles import tile_grid as tile_windows

    config = tmp_path / "aerial.yaml"
    config.write_text(
        f"data:\n  format: voc\n  root: {tmp_path / 'aerial'}\n"
        "  train: [ImageSets/Main/train.txt]\n"
        "  val: [ImageSets/Main/val.txt]\n  names: [circle, square, star]\n"
        "  synthetic: {kind: aerial, num_train: 1, num_val: 1, image_size: 512, seed: 0}\n"
        "  slice: {size: 128, overlap: 0.2, empty_rate: 1.0, full_images: false}\n"
        "model:\n  image_size: 128\naugment: []\n"
    )
    cfg = load_config(config)
    grid = render_preview(cfg, num=3, seed=0)
    assert grid.shape == (2 * 128, 2 * 128, 3)  # the overview and 3 samples: 2 x 2 cells of 128 px
    first = load_split(cfg.data, "train").records[0]
    windows = tile_windows(512, 512, 128, 0.2)
    assert len(windows) == 25
    expected = tile_overview(first, read_image_rgb(first.image_path), windows, 128)
    np.testing.assert_array_equal(grid[:100, :128], expected[:100])  # above the caption
    # Each sample is a 128 px tile at a 128 px input, so the plain letterbox leaves it unscaled:
    # most of its pixels (all but the drawn boxes and labels) are those of one tile of the image.
    image = read_image_rgb(first.image_path)[..., ::-1]
    for cell in (grid[:100, 128:], grid[128:228, :128], grid[128:228, 128:]):
        same = [
            (image[y1 : y1 + 100, x1:x2] == cell).all(axis=2).mean() for x1, y1, x2, _ in windows
        ]
        assert max(same) > 0.7 and sorted(same)[-2] < 0.5, sorted(same)[
            -2:
        ]  # one tile, not its neighbours
    plain = render_preview(load_config(config, ["data.slice=null"]), num=3, seed=0)
    assert plain.shape == (2 * 128, 2 * 128, 3)
    assert not np.array_equal(plain[:100, :128], expected[:100])  # no overview without data.slice
