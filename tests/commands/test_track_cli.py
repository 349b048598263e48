"""`detector track` and `detector evaluate-tracks` end to end on the synthetic shapes video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch
from click.testing import CliRunner

from detector.cli import main
from detector.data.synthetic.shapes_video import ground_truth_path, write_shapes_video
from detector.inference.synthetic import random_checkpoint
from detector.tracking.mot import read_mot

NAMES = ["circle", "square", "triangle", "star", "ring"]
FRAMES = 16


pytestmark = pytest.mark.usefixtures("single_thread_torch")  # tests/conftest.py


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", image_size=64, names=NAMES)
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    write_shapes_video(path, NAMES, width=160, height=120, frames=FRAMES, fps=15.0)
    return path




def test_track_writes_one_id_per_box_per_frame_and_a_valid_mot_file(checkpoint: Path, video: Path,
                                                                     tmp_path: Path) -> None:
    mot, records_path = tmp_path / "tracks.txt", tmp_path / "tracks.json"
    result = CliRunner().invoke(main, ["track", str(checkpoint), str(video), "--device", "cpu", "--out",
                                       str(tmp_path / "out"), "--save-json", str(records_path), "--save-mot",
                                       str(mot), "--track-high", "0.3", "--batch", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote {mot}" in result.output and "tracks over 16 frames" in result.output
    records = json.loads(records_path.read_text())
    assert [r["frame"] for r in records] == list(range(FRAMES))
    rows = read_mot(mot)  # strict: one id per box per frame, valid numbers
    assert len(rows) > 0 and rows.frames.min() >= 1 and rows.frames.max() <= FRAMES
    for record in records:
        dets = record["detections"]
        assert dets and all("track_id" in d for d in dets)
        tracked = sorted(d["track_id"] for d in dets if d["track_id"] > 0)
        assert len(tracked) == len(set(tracked))  # no id twice in a frame
        in_file = sorted(rows.ids[rows.frames == record["frame"] + 1].tolist())
        assert in_file == tracked  # the MOT file holds exactly the tracked boxes of each frame
    first = next(d for r in records for d in r["detections"] if d["track_id"] > 0)
    row = (rows.ids == first["track_id"]).argmax()
    assert rows.boxes_xywh[row][:2].tolist() == pytest.approx(first["box"][:2], abs=0.01)
    capture = cv2.VideoCapture(str(tmp_path / "out" / "shapes.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == FRAMES

    scores_path = tmp_path / "scores.json"
    result = CliRunner().invoke(main, ["evaluate-tracks", str(ground_truth_path(video)), str(mot),
                                       "--json", str(scores_path)])
    assert result.exit_code == 0, result.output
    assert "HOTA" in result.output and "IDF1" in result.output and "ID switches" in result.output
    combined = json.loads(scores_path.read_text())["combined"]
    assert 0.0 <= combined["HOTA"] <= 1.0 and combined["TP"] + combined["FN"] == int(
        (read_mot(ground_truth_path(video)).marks != 0).sum())


def test_track_rejects_bad_options_in_one_line(checkpoint: Path, video: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["track", str(checkpoint), str(video), "--conf", "0.6",
                                       "--track-high", "0.5"])
    assert result.exit_code != 0 and "--conf 0.6 is above --track-high 0.5" in result.output
    result = CliRunner().invoke(main, ["track", str(checkpoint), str(tmp_path / "missing.mp4")])
    assert result.exit_code != 0 and "missing.mp4" in result.output and "Traceback" not in result.output


def test_evaluate_tracks_reports_a_malformed_line(tmp_path: Path) -> None:
    (tmp_path / "gt.txt").write_text("1,1,10,20,30,40,1,1,1\n")
    (tmp_path / "pred.txt").write_text("1,1,10,20,30,40,0.9,-1,-1,-1\n1,2,10,20\n")
    result = CliRunner().invoke(main, ["evaluate-tracks", str(tmp_path / "gt.txt"), str(tmp_path / "pred.txt")])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'pred.txt'}:2: expected 6 to 10 comma-separated values, got 4"
