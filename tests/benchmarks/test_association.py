"""`benchmark.py association`: every setting on every set, and the half-rate ground truth."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from benchmarks.association import SETTINGS, association, every_other_frame


def test_every_other_frame_keeps_odd_frames_renumbered(tmp_path: Path) -> None:
    gt = tmp_path / "v.gt.txt"
    gt.write_text(
        "1,1,0,0,5,5,1,1,1.0\n2,1,1,0,5,5,1,1,1.0\n3,1,2,0,5,5,1,1,1.0\n3,2,9,9,5,5,0,2,0.1\n"
    )
    half = every_other_frame(gt, tmp_path / "half.gt.txt")
    assert half.read_text().splitlines() == [
        "1,1,0,0,5,5,1,1,1.0",
        "2,1,2,0,5,5,1,1,1.0",
        "2,2,9,9,5,5,0,2,0.1",
    ]


def test_association_prints_every_setting_per_set(tmp_path: Path) -> None:
    from detector.inference.synthetic import random_checkpoint

    checkpoint = random_checkpoint(tmp_path / "random.pt", image_size=64)
    result = CliRunner().invoke(
        association,
        ["--checkpoint", str(checkpoint), "--videos", "1", "--crowded", "1", "--frames", "12"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "1 checkpoints x 1 demo videos (12 frames) + 1 crowded (24 frames)" in lines[0]
    for set_name in ("demo", "crowded", "15 fps"):
        start = lines.index(f"{set_name}: mean over 1 x 1 replays")
        rows = lines[start + 2 : start + 2 + len(SETTINGS)]
        assert [row[2:46].strip() for row in rows] == list(SETTINGS)
        for row in rows:
            # Fed the ground-truth boxes, the tracker follows 12 frames of 6 shapes
            # almost perfectly whatever the setting: the ceiling column.
            assert float(row.split()[-1]) > 0.9, row
