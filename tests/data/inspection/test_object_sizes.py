"""Object sizes at the network input and the tile-size suggestion of `detector data check`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner

from detector.cli import main
from detector.data.inspection.object_sizes import SizeHistogram, object_sizes, suggest_tile_size
from detector.data.record import SampleRecord


def _record(
    width: int, height: int, sides: list[float], ignore: list[bool] | None = None
) -> SampleRecord:
    boxes = [[10, 10, 10 + side, 10 + side / 2] for side in sides]  # longest side: the width
    return SampleRecord(
        "x.jpg", width, height, boxes, [0] * len(sides), ignore or [False] * len(sides)
    )


def test_histogram_buckets_and_median_by_hand() -> None:
    histogram = SizeHistogram.of(np.array([7.99, 8.0, 15.99, 16, 40, 64, 127.9, 128, 500]))
    assert histogram.counts == [1, 2, 1, 1, 2, 2] and histogram.median == 40
    assert str(histogram).startswith(
        "<8: 1  8-16: 2  16-32: 1  32-64: 1  64-128: 2  >=128: 2  (median 40.0)"
    )


def test_sizes_at_input_follow_each_images_letterbox_and_skip_ignored_boxes() -> None:
    records = [
        _record(2048, 1024, [16, 40, 400]),  # scale 256 / 2048 = 1/8: 2, 5, 50 px
        _record(512, 512, [16, 30], [False, True]),  # scale 1/2: 8 px; the 30 px box is ignored
        _record(512, 512, []),
    ]
    sizes = object_sizes(records, network_size=256)
    assert sizes.native.counts == [0, 0, 2, 1, 0, 1]  # 16, 40, 400, 16 (30 is ignored)
    assert sizes.at_input.counts == [2, 1, 0, 1, 0, 0]  # 2, 5, 8, 50
    assert sizes.fraction_tiny_at_input == 0.5 and sizes.through_tiles is None
    # Through 256 px tiles of a 2048 x 1024 image: scale 1 (the tile is 256 x 256);
    # of a 512 x 512 image at 1024 px tiles: one 512 px tile, scale 1/2.
    tiled = object_sizes(records, network_size=256, slice_size=256)
    assert (
        tiled.through_tiles.counts == [0, 0, 2, 1, 0, 1] and tiled.fraction_tiny_through_tiles == 0
    )
    big_tiles = object_sizes(records[1:2], network_size=256, slice_size=1024)
    assert big_tiles.through_tiles.median == 8.0
    assert object_sizes([_record(64, 64, [])], network_size=256) is None


def test_tile_size_is_suggested_only_when_most_objects_are_tiny_at_input() -> None:
    tiny = object_sizes(
        [_record(2048, 2048, [20, 20, 24, 200])], network_size=512
    )  # 5, 5, 6, 50 px
    assert tiny.fraction_tiny_at_input == 0.75
    assert suggest_tile_size(tiny, network_size=512) == 512  # native size: median 22 px >= 8
    half = object_sizes([_record(2048, 2048, [20, 20, 200, 200])], network_size=512)  # 50% tiny
    assert suggest_tile_size(half, network_size=512) is None  # not "most": no suggestion
    # Objects of 4 px even in the image: tiles magnified until the median reaches 8 px.
    specks = object_sizes([_record(4096, 4096, [4, 4, 4])], network_size=512)
    assert suggest_tile_size(specks, network_size=512) == 256
    assert (
        suggest_tile_size(
            object_sizes([_record(4096, 4096, [0.5])], network_size=512), network_size=512
        )
        == 32
    )  # never below 32
    # Already sliced at the network size: objects keep their size, nothing to suggest.
    sliced = object_sizes(
        [_record(2048, 2048, [20, 20, 24, 200])], network_size=512, slice_size=512
    )
    assert suggest_tile_size(sliced, network_size=512) is None
    too_big = object_sizes(
        [_record(2048, 2048, [20, 20, 24, 200])], network_size=512, slice_size=2048
    )
    assert suggest_tile_size(too_big, network_size=512) == 512


def test_data_check_on_a_tiny_aerial_set_prints_sizes_and_suggests_tiles(tmp_path: Path) -> None:
    config = tmp_path / "aerial.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "format": "voc",
                    "root": str(tmp_path / "aerial"),
                    "train": ["ImageSets/Main/train.txt"],
                    "val": ["ImageSets/Main/val.txt"],
                    "names": ["circle", "square", "star"],
                    "synthetic": {
                        "kind": "aerial",
                        "num_train": 1,
                        "num_val": 1,
                        "image_size": 1024,
                        "seed": 0,
                    },
                },
                "model": {"image_size": 128},  # 1024 -> 128: a 8-40 px object is 1-5 px
            }
        )
    )
    result = CliRunner().invoke(main, ["data", "check", str(config)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        "object size:   longest box side, px" in out
        and "    in the image         <8: 0  8-16: " in out
    )
    assert "    at input 128         <8: " in out and "(whole image letterboxed)" in out
    # 8-40 px objects are 1-5 px at input; the 1-3 large ones (154-307 px) are 19-38 px.
    advice = re.search(
        r"suggestion: (\d+)% of the train objects are under 8 px at model.image_size 128 after "
        r"the letterbox; train on tiles with data.slice: \{size: 128\} \(objects keep their "
        r"size\) and detect with --slice 128",
        out,
    )
    assert advice is not None, out
    assert 80 <= int(advice.group(1)) < 100
    # With tiles of the network size the objects keep their size: no suggestion.
    sliced = CliRunner().invoke(
        main, ["data", "check", str(config), "--set", "data.slice={size: 128}"]
    )
    assert sliced.exit_code == 0, sliced.output
    assert (
        "    128 px tiles         <8: 0  8-16: " in sliced.output
        and "suggestion" not in sliced.output
    )


def test_advice_names_the_magnification_when_objects_are_tiny_even_in_the_image() -> None:
    from detector.commands.data_check import _tile_advice
    from detector.data.inspection.check import CheckReport, SplitReport

    specks = object_sizes([_record(4096, 4096, [4, 4, 4])], network_size=512)
    split = SplitReport(
        split="train",
        num_entries=1,
        num_images=1,
        num_empty=0,
        boxes_per_class={},
        ignored_per_class={},
        skipped=[],
        read_stats=None,
        box_sizes=None,
        object_sizes=specks,
    )
    report = CheckReport(
        format="voc", root=".", names=["a"], splits=[split], suggested_tile_size=256
    )
    assert _tile_advice(report, 512, sliced=False) == (
        "suggestion: 100% of the train objects are under 8 px at model.image_size 512 after the "
        "letterbox; train on tiles with data.slice: {size: 256} "
        "(tiles are magnified 2.0x to the 512 px input) "
        "and detect with --slice 256 (docs/sliced-training.md)"
    )
