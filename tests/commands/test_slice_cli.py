"""`--slice` on `detect`, `track` and `evaluate` through click's CliRunner: the written
JSON equals the API's sliced detections and records the slicing; bad settings are
one-line errors; tracking reads sliced detections.

    .venv/bin/python -m pytest tests/commands/test_slice_cli.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch
from click.testing import CliRunner

from detector import Detector
from detector.cli import main
from detector.defaults import SlicingOptions
from detector.inference.synthetic import random_checkpoint, synthetic_frame, write_synthetic_video
from detector.tracking.mot import read_mot

pytestmark = pytest.mark.usefixtures("single_thread_torch")  # tests/conftest.py
NAMES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before single_thread_torch
    try:
        return random_checkpoint(
            tmp_path_factory.mktemp("ckpt") / "tiny.pt", image_size=64, names=NAMES
        )
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for index, (width, height) in enumerate([(200, 130), (50, 40)]):  # the second: under a tile
        frame = cv2.resize(synthetic_frame(index, (64, 64)), (width, height))
        cv2.imwrite(str(folder / f"{index}.png"), frame)
    return folder


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_detect_slice_writes_the_apis_detections_and_the_slicing(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dets.json"
    result = invoke(
        "detect",
        str(checkpoint),
        str(images),
        "--device",
        "cpu",
        "--conf",
        "0.1",
        "--slice",
        "64",
        "--slice-overlap",
        "0.25",
        "--no-slice-full",
        "--slice-batch",
        "3",
        "--save-json",
        str(out),
        "--out",
        str(tmp_path / "drawn"),
    )
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert len(records) == 2 and (tmp_path / "drawn" / "0.png").is_file()
    options = SlicingOptions(size=64, overlap=0.25, full_image=False, batch_size=3)
    api = Detector.from_checkpoint(checkpoint, device="cpu", score_threshold=0.1, slicing=options)
    for record in records:
        assert record["slicing"] == options.to_dict()
        expected = api(str(images / Path(record["path"]).name))
        assert (record["width"], record["height"]) == (expected.width, expected.height)
        assert len(record["detections"]) == len(expected) > 0
        for found, box, score in zip(
            record["detections"], expected.boxes, expected.scores, strict=True
        ):
            assert found["box"] == pytest.approx(box.tolist(), abs=0.01)
            assert found["score"] == pytest.approx(float(score), abs=1e-4)


def test_detect_without_slice_records_no_slicing(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dets.json"
    assert (
        invoke(
            "detect", str(checkpoint), str(images), "--device", "cpu", "--save-json", str(out)
        ).exit_code
        == 0
    )
    assert all("slicing" not in record for record in json.loads(out.read_text()))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--slice", "48"],
            "slice size 48 is not a multiple of the model's largest stride 32 (try 64)",
        ),
        (["--slice", "16"], "slice size 16 is below the minimum of 32 px"),
        (["--slice", "64", "--slice-overlap", "1.0"], "1.0 is not in the range 0<=x<1"),
        (["--slice", "64", "--slice-overlap", "-0.1"], "-0.1 is not in the range 0<=x<1"),
        (
            ["--slice-batch", "4"],
            "--slice-overlap, --no-slice-full and --slice-batch need --slice SIZE",
        ),
        (["--no-slice-full"], "need --slice SIZE"),
        (["--slice", "64", "--slice-batch", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_slice_options_are_one_line_errors(
    checkpoint: Path, images: Path, args: list[str], message: str
) -> None:
    for command in ("detect", "track"):
        result = CliRunner().invoke(
            main, [command, str(checkpoint), str(images), "--device", "cpu", *args]
        )
        assert result.exit_code != 0
        assert message in result.output, result.output
        assert "Traceback" not in result.output


def test_track_slice_tracks_sliced_detections(checkpoint: Path, tmp_path: Path) -> None:
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=6, size=(160, 96), fps=10.0)
    mot, records = tmp_path / "clip.mot.txt", tmp_path / "dets.json"
    result = invoke(
        "track",
        str(checkpoint),
        str(video),
        "--device",
        "cpu",
        "--slice",
        "64",
        "--save-mot",
        str(mot),
        "--save-json",
        str(records),
        "--conf",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    frames = json.loads(records.read_text())
    assert len(frames) == 6 and all(r["slicing"]["size"] == 64 for r in frames)
    assert any(d["track_id"] >= 0 for r in frames for d in r["detections"])
    assert len(read_mot(mot)) > 0


def test_evaluate_slice_refuses_a_predictions_file(tmp_path: Path) -> None:
    config = tmp_path / "data.yaml"
    config.write_text("data:\n  format: yolo\n  root: .\n  train: []\n  val: []\n  names: [a]\n")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--predictions",
            str(tmp_path / "p.json"),
            "--data",
            str(config),
            "--slice",
            "64",
        ],
    )
    assert (
        result.exit_code != 0
        and "--slice runs a model; --predictions scores a results file" in result.output
    )
