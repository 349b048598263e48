"""MOT text files: strict line validation, round trip, frame-range rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.tracking.evaluate import evaluate_tracks
from detector.tracking.mot import MotFormatError, MotWriter, read_mot

GOOD = "1,1,10,20,30,40,1,1,1\n1,2,50,20,30,40,0,1,0.5\n\n2,1,12,20,30,40,1,1,1\n"


def test_read_good_file(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(GOOD)
    rows = read_mot(path)
    assert rows.frames.tolist() == [1, 1, 2] and rows.ids.tolist() == [1, 2, 1]
    assert rows.boxes_xywh[2].tolist() == [12, 20, 30, 40]
    assert rows.marks.tolist() == [1, 0, 1] and rows.visibility.tolist() == [1, 0.5, 1]
    assert rows.lines.tolist() == [1, 2, 4]  # blank line 3 skipped, numbers kept


@pytest.mark.parametrize(
    "line, message",
    [
        ("1,1,10,20,30", "expected 6 to 10"),
        ("1,1,10,20,30,40,1,1,1,1,1", "expected 6 to 10"),
        ("1,1,ten,20,30,40,1,-1,-1", "not a number"),
        ("0,1,10,20,30,40,1,-1,-1", "frame must be an integer >= 1"),
        ("1.5,1,10,20,30,40,1,-1,-1", "frame must be an integer >= 1"),
        ("1,-3,10,20,30,40,1,-1,-1", "id must be an integer >= 0"),
        ("1,1,nan,20,30,40,1,-1,-1", "non-finite"),
        ("1,1,10,20,-30,40,1,-1,-1", "negative box size"),
        ("1,1,10,20,30,40,1,-1,-1", "appears twice in frame 1"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "pred.txt"
    path.write_text("1,1,10,20,30,40,0.9,-1,-1,-1\n" + line + "\n")
    with pytest.raises(MotFormatError, match=message) as info:
        read_mot(path)
    assert str(info.value).startswith(f"{path}:2: ")
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt: no such file"):
        read_mot("nope.txt")


def test_writer_round_trip_skips_untracked(tmp_path: Path) -> None:
    path = tmp_path / "out" / "pred.txt"
    with MotWriter(path) as writer:
        writer.write(
            1,
            np.array([3, -1, 5]),
            np.array([[10, 20, 40, 60], [0, 0, 5, 5], [1.5, 2.5, 3.5, 4.5]]),
            np.array([0.9, 0.2, 0.5]),
        )
        writer.write(2, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))
    assert path.read_text().splitlines() == [
        "1,3,10.00,20.00,30.00,40.00,0.9000,-1,-1,-1",
        "1,5,1.50,2.50,2.00,2.00,0.5000,-1,-1,-1",
    ]
    rows = read_mot(path)
    assert rows.ids.tolist() == [3, 5] and rows.boxes_xywh[0].tolist() == [10, 20, 30, 40]


def test_prediction_on_an_unknown_frame_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "gt.txt").write_text("1,1,10,20,30,40,1,1,1\n2,1,10,20,30,40,1,1,1\n")
    (tmp_path / "pred.txt").write_text(
        "1,1,10,20,30,40,0.9,-1,-1,-1\n3,1,10,20,30,40,0.9,-1,-1,-1\n"
    )
    with pytest.raises(
        MotFormatError, match=r"pred.txt:2: frame 3 is past the sequence's last frame 2"
    ):
        evaluate_tracks(tmp_path / "gt.txt", tmp_path / "pred.txt")
    table = evaluate_tracks(tmp_path / "gt.txt", tmp_path / "pred.txt", num_frames=3)
    assert table.combined["FP"] == 1 and table.combined["TP"] == 1


def test_folders_must_hold_the_same_sequences(tmp_path: Path) -> None:
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
    (tmp_path / "gt" / "a.txt").write_text("1,1,10,20,30,40,1,1,1\n")
    (tmp_path / "gt" / "b.txt").write_text("1,1,10,20,30,40,1,1,1\n")
    (tmp_path / "pred" / "a.txt").write_text("1,1,10,20,30,40,0.9,-1,-1,-1\n")
    with pytest.raises(MotFormatError, match="no predictions for sequence.s. b"):
        evaluate_tracks(tmp_path / "gt", tmp_path / "pred")
    with pytest.raises(MotFormatError, match="two files or two folders"):
        evaluate_tracks(tmp_path / "gt", tmp_path / "pred" / "a.txt")
