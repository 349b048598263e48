"""Tile geometry: exact cover, inward-shifted last tiles, the fewest tiles, bad input.

.venv/bin/python -m pytest tests/test_postprocess_tiles.py -q
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.postprocess import check_tile_size, tile_grid, tile_starts


def test_hand_computed_grid() -> None:
    # width 1500, tile 640, overlap 0.2: stride 640 - 128 = 512, starts 0, 512 and 1500 - 640 = 860;
    # height 1000: starts 0 and 360.
    assert tile_starts(1500, 640, 0.2) == [0, 512, 860]
    assert tile_starts(1000, 640, 0.2) == [0, 360]
    grid = tile_grid(1500, 1000, 640, 0.2)
    assert grid == [
        (0, 0, 640, 640),
        (512, 0, 1152, 640),
        (860, 0, 1500, 640),
        (0, 360, 640, 1000),
        (512, 360, 1152, 1000),
        (860, 360, 1500, 1000),
    ]


def test_exact_multiple_needs_no_shifted_tile() -> None:
    assert tile_starts(1024, 256, 0.0) == [0, 256, 512, 768]
    assert tile_starts(1024, 256, 0.5) == [0, 128, 256, 384, 512, 640, 768]
    assert tile_starts(256, 256, 0.2) == [0]


def test_image_smaller_than_a_tile_is_one_tile_of_the_image() -> None:
    # The policy for a tile larger than the image: the tile shrinks to the image side.
    assert tile_grid(50, 100, 640, 0.2) == [(0, 0, 50, 100)]
    assert tile_grid(2000, 100, 640, 0.0) == [
        (0, 0, 640, 100),
        (640, 0, 1280, 100),
        (1280, 0, 1920, 100),
        (1360, 0, 2000, 100),
    ]


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 5000),
    tile=st.integers(32, 1200),
    overlap=st.floats(0.0, 0.95, allow_nan=False),
)
def test_axis_properties(length: int, tile: int, overlap: float) -> None:
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0
    assert starts[-1] + size == length  # the last tile ends exactly at the edge
    assert all(0 <= s and s + size <= length for s in starts)  # never past the edge
    assert all(
        b > a for a, b in zip(starts, starts[1:], strict=False)
    )  # strictly increasing: no duplicates
    # Neighbours share at least floor(overlap * tile) pixels (no gap, the asked context).
    assert all(
        a + size - b >= math.floor(overlap * tile) for a, b in zip(starts, starts[1:], strict=False)
    )
    # The fewest tiles: one tile fewer at the same stride cannot reach the edge.
    if length > tile:
        step = tile - math.floor(overlap * tile)
        assert len(starts) == 1 + math.ceil((length - tile) / step)
        assert (len(starts) - 2) * step + tile < length


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    tile=st.integers(1, 120),
    overlap=st.floats(0.0, 0.9, allow_nan=False),
)
def test_grid_covers_every_pixel(height: int, width: int, tile: int, overlap: float) -> None:
    covered = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in tile_grid(width, height, tile, overlap):
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert x2 - x1 == min(tile, width) and y2 - y1 == min(tile, height)
        covered[y1:y2, x1:x2] = True
    assert covered.all()


@pytest.mark.parametrize("overlap", [-0.1, 1.0, 1.5, float("nan")])
def test_overlap_outside_zero_one_is_refused(overlap: float) -> None:
    with pytest.raises(ValueError, match=r"slice overlap must be in \[0, 1\)"):
        tile_grid(100, 100, 64, overlap)


@pytest.mark.parametrize(
    ("size", "stride", "message"),
    [
        (16, 32, "below the minimum of 32 px"),
        (31, 1, "below the minimum of 32 px"),
        (100, 32, "not a multiple of the model's largest stride 32 .try 96"),
        (96, 64, "not a multiple of the model's largest stride 64"),
        (64.0, 32, "must be an integer"),
        (True, 32, "must be an integer"),
    ],
)
def test_bad_tile_sizes_are_one_line_errors(size: object, stride: int, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        check_tile_size(size, stride)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_good_tile_sizes_pass() -> None:
    for size in (32, 64, 640, 1024):
        check_tile_size(size, 32)
    check_tile_size(128, 64)
