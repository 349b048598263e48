"""`detector export`, and `detect` / `evaluate` with the exported file, end to end through
click's CliRunner: what they print and write, and a one-line error for each bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import pytest
import torch
from click.testing import CliRunner

from detector.cli import main
from detector.inference.synthetic import write_synthetic_video

from .conftest import legacy_nms_file, tame_checkpoint


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def two_class(tmp_path: Path, tiny_training_yaml) -> dict[str, Path]:
    """A checkpoint named like the tiny training dataset (6 val images) and its config."""
    checkpoint = tame_checkpoint(tmp_path / "two.pt", names=("circle", "square"))
    config = tiny_training_yaml("data.yaml", tmp_path / "data")
    return {"checkpoint": checkpoint, "config": config, "root": tmp_path}


def table_row(output: str, label: str) -> list[str]:
    """The values after `label` on the verify table's line for it."""
    (line,) = [line for line in output.splitlines() if line.strip().startswith(label)]
    return line.strip()[len(label) :].split()


def test_export_writes_the_file_and_verifies_it(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = invoke("export", tiny_checkpoint, "--out", out, "--exporter", "torchscript")
    assert result.exit_code == 0, result.output
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == [
        "model.onnx"
    ]  # no temp file left
    lines = result.output.splitlines()
    assert (
        lines[0].startswith(f"wrote {out}")
        and "input 1x3x64x64" in lines[0]
        and "outputs boxes, scores" in lines[0]
    )
    assert "on 16 synthetic shapes images" in lines[1]
    assert table_row(result.output, "detections matched")[0] == "100.00%"
    assert float(table_row(result.output, "boxes max abs diff")[0]) < 0.05
    assert float(table_row(result.output, "scores max abs diff")[0]) < 1e-4
    assert table_row(result.output, "result:") == ["PASS"]


def test_verify_with_data_compares_ap_and_evaluate_matches(
    trained_tiny_run: dict[str, Path], tmp_path: Path
) -> None:
    """On a briefly trained model (AP far from 0): the exported file scores the checkpoint's AP."""
    out = tmp_path / "trained.onnx"
    config = trained_tiny_run["config"]
    # The faster exporter: this test is about verify and evaluate.
    result = invoke(
        "export",
        trained_tiny_run["best"],
        "--out",
        out,
        "--dynamic",
        "--data",
        config,
        "--exporter",
        "torchscript",
    )
    assert result.exit_code == 0, result.output
    assert "val images of" in result.output and "result: PASS" in result.output
    assert float(table_row(result.output, "AP checkpoint")[0]) > 0.05
    assert float(table_row(result.output, "AP diff")[0]) == 0.0

    metrics = {}
    for name, model in (("pt", trained_tiny_run["best"]), ("onnx", out)):
        json_file = tmp_path / f"{name}.json"
        evaluated = invoke(
            "evaluate", model, "--data", config, "--json", json_file, "--device", "cpu"
        )
        assert evaluated.exit_code == 0, evaluated.output
        metrics[name] = json.loads(json_file.read_text())
    print({name: round(m["AP"], 4) for name, m in metrics.items()})
    assert metrics["pt"]["AP"] > 0.05  # a trained model: equal APs near 0 would prove nothing
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert metrics["onnx"][key] == metrics["pt"][key], key


def test_evaluate_says_when_an_old_graph_nms_threshold_is_above_the_evaluation_one(
    two_class: dict[str, Path],
) -> None:
    new = two_class["root"] / "two_nms.onnx"
    exported = invoke(
        "export",
        two_class["checkpoint"],
        "--out",
        new,
        "--nms",
        "--conf",
        "0.3",
        "--no-verify",
        "--exporter",
        "torchscript",
    )
    assert exported.exit_code == 0, exported.output
    # The thresholds are graph inputs: evaluation at 0.001 is what it says.
    result = CliRunner().invoke(
        main, ["evaluate", str(new), "--data", str(two_class["config"]), "--device", "cpu"]
    )
    assert result.exit_code == 0 and "NMS in the graph" not in result.stderr, result.output
    out = legacy_nms_file(new, two_class["root"] / "old_nms.onnx")
    result = CliRunner().invoke(
        main, ["evaluate", str(out), "--data", str(two_class["config"]), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"{out}: NMS in the graph keeps scores above 0.3 only, not 0.001; "
        "AP is that of the file as deployed"
    ) in result.stderr
    # At or under the graph's own threshold there is nothing to say.
    quiet = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(out),
            "--data",
            str(two_class["config"]),
            "--device",
            "cpu",
            "--conf",
            "0.3",
        ],
    )
    assert quiet.exit_code == 0 and "NMS in the graph" not in quiet.stderr


def test_evaluate_exported_needs_data(onnx_static: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(onnx_static)])
    assert result.exit_code == 2 and "holds no dataset config; pass --data CONFIG" in result.output


def test_detect_with_the_exported_file_writes_what_the_checkpoint_writes(
    onnx_static: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=12, size=(80, 60), fps=10.0)
    records = {}
    for name, model in (("pt", tiny_checkpoint), ("onnx", onnx_static)):
        out = tmp_path / name
        result = invoke(
            "detect",
            model,
            video,
            "--device",
            "cpu",
            "--out",
            out,
            "--save-json",
            out / "dets.json",
            "--batch",
            "3",
        )
        assert result.exit_code == 0, result.output
        assert any(line.startswith("12 frames, ") for line in result.output.splitlines())
        capture = cv2.VideoCapture(str(out / "clip.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
        assert (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        ) == (80, 60)
        capture.release()
        records[name] = json.loads((out / "dets.json").read_text())
    assert len(records["pt"]) == len(records["onnx"]) == 12
    for ours, theirs in zip(records["onnx"], records["pt"], strict=True):
        assert set(ours) == set(theirs) and ours["frame"] == theirs["frame"]
        assert [d["label"] for d in ours["detections"]] == [
            d["label"] for d in theirs["detections"]
        ]
        for a, b in zip(ours["detections"], theirs["detections"], strict=True):
            assert set(a) == set(b) == {"box", "score", "label", "name"}
            assert max(abs(x - y) for x, y in zip(a["box"], b["box"], strict=True)) <= 0.02
            assert abs(a["score"] - b["score"]) <= 2e-4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "100"], "--image-size 100: must be a positive multiple of 32"),
        (["--nms", "--format", "torchscript"], "--nms: NMS in the graph is ONNX only"),
        (["--out", "{tmp}/missing/m.onnx"], "folder {tmp}/missing does not exist"),
        (["--out", "{tmp}/m.pt"], "--format onnx writes a .onnx file"),
        (["--batch", "0"], "--batch 0: must be >= 1"),
        (
            ["--opset", "12", "--exporter", "torchscript"],
            "--opset 12: the torchscript exporter needs opset >= 13",
        ),
    ],
)
def test_bad_options_are_one_line_errors(
    tiny_checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, ["export", str(tiny_checkpoint), *args])
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert message.replace("{tmp}", str(tmp_path)) in result.output
    assert not list(tmp_path.rglob("*.onnx"))


def test_unknown_format_and_bad_checkpoints(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(tmp_path / "x.pt"), "--format", "tflite"])
    assert result.exit_code == 2 and "'tflite' is not one of 'onnx', 'torchscript'" in result.output
    result = CliRunner().invoke(main, ["export", str(tmp_path / "missing.pt")])
    assert result.exit_code == 1 and "missing.pt: checkpoint not found" in result.output
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    result = CliRunner().invoke(main, ["export", str(corrupt)])
    assert (
        result.exit_code == 1 and "corrupt.pt: checkpoint is corrupt or unreadable" in result.output
    )
    assert not (tmp_path / "corrupt.onnx").exists()


def test_missing_onnx_package_says_what_to_install(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = CliRunner().invoke(
        main, ["export", str(tiny_checkpoint), "--out", str(tmp_path / "m.onnx")]
    )
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == "Error: ONNX export needs onnxscript: pip install 'detector[export]'"
    )


def test_failed_export_leaves_no_file(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::foo\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", broken)
    result = CliRunner().invoke(main, ["export", str(tiny_checkpoint), "--out", str(out)])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == "Error: torch.onnx.export (dynamo) failed: unsupported operator aten::foo"
    )
    assert out.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_interrupted_write_leaves_the_previous_file(tmp_path: Path) -> None:
    from detector.export.files import write_atomic

    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")

    def write(handle):
        handle.write(b"half of it")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, write)
    assert out.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_verify_outside_tolerance_exits_1(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detector.export import verify

    monkeypatch.setattr(verify, "MATCH_SCORE", -1.0)  # nothing can match: the check must fail
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(tiny_checkpoint),
            "--out",
            str(tmp_path / "m.onnx"),
            "--exporter",
            "torchscript",
        ],
    )
    assert result.exit_code == 1, result.output
    assert table_row(result.output, "detections matched")[0] == "0.00%"
    assert "result: FAIL (detections matched)" in result.output


def test_detect_and_evaluate_report_a_bad_onnx_in_one_line(
    tmp_path: Path, video_file_for_errors: Path
) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage")
    config = tmp_path / "data.yaml"
    config.write_text(
        "data:\n  format: voc\n  root: nowhere\n  names: [circle]\n", encoding="utf-8"
    )
    for args in (
        ["detect", str(corrupt), str(video_file_for_errors)],
        ["evaluate", str(corrupt), "--data", str(config)],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"Error: {corrupt}: not a loadable ONNX model"), line


@pytest.fixture
def video_file_for_errors(tmp_path: Path) -> Path:
    return write_synthetic_video(tmp_path / "v.mp4", frames=2, size=(32, 32), fps=5.0)
