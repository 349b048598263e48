"""`detector benchmark` (issue 21 item 4): a row per format with AP through evaluate's path,
speed, size and the machine; rows that cannot run say why; GPU rows' logic on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from detector.cli import main
from detector.export.benchmark import (
    BenchmarkResult,
    BenchmarkRow,
    format_table,
    gpu_row_reason,
    torch_half_reason,
)


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_gpu_rows_need_cuda_and_their_provider() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    both = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert gpu_row_reason("onnx-cuda", cpu, both) == "needs --device cuda (this run: cpu)"
    assert gpu_row_reason("onnx-cuda", cuda, both) == ""
    assert gpu_row_reason("onnx-tensorrt", cuda, both) == ""
    only_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert gpu_row_reason("onnx-cuda", cuda, only_cuda) == ""
    assert "no TensorrtExecutionProvider" in gpu_row_reason("onnx-tensorrt", cuda, only_cuda)
    assert "pip install onnxruntime-gpu" in gpu_row_reason(
        "onnx-cuda", cuda, ["CPUExecutionProvider"]
    )


def test_torch_autocast_rows_are_cuda_only() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        assert "CUDA only" in torch_half_reason(dtype, torch.device("cpu"))


def test_table_says_why_a_row_did_not_run_and_the_ratio_to_ort_fp32() -> None:
    machine = {
        "cpu": "Some CPU",
        "cpu_cores": 2,
        "threads": 1,
        "gpu": None,
        "torch": "2",
        "onnxruntime": "1",
    }
    rows = [
        BenchmarkRow("onnx-fp32", "fp32", "ORT CPU", "a.onnx", 4.0, 0.5, 0.8, 10.0, 100.0),
        BenchmarkRow("onnx-int8", "int8", "ORT CPU", "b.onnx", 1.0, 0.49, 0.79, 5.0, 210.0),
        BenchmarkRow(
            "onnx-cuda", "fp32", "ORT CUDA", skipped="needs --device cuda (this run: cpu)"
        ),
    ]
    lines = format_table(BenchmarkResult(machine, rows)).splitlines()
    assert lines[0].startswith("machine: Some CPU (2 cores), 1 threads, no GPU")
    assert lines[2].split()[-1] == "1.00x" and lines[3].split()[-1] == "2.00x"
    assert lines[3].split()[4:9] == ["1.00", "0.4900", "0.7900", "5.00", "210.0"]
    assert lines[4].endswith("not run: needs --device cuda (this run: cpu)")


def _evaluate_ap(model: Path, config: Path, out: Path) -> dict:
    result = invoke("evaluate", model, "--data", config, "--json", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_benchmark_rows_score_what_evaluate_scores(
    trained_tiny_run: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "tiny.pt"  # a copy: --keep writes beside it
    checkpoint.write_bytes(trained_tiny_run["best"].read_bytes())
    config = trained_tiny_run["config"]
    formats = "torch-fp32,torch-bf16,torchscript,onnx-fp32,onnx-int8,onnx-tensorrt"
    result = invoke(
        "benchmark",
        checkpoint,
        "--data",
        config,
        "--formats",
        formats,
        "--reps",
        1,
        "--calibration-images",
        8,
        "--exporter",
        "torchscript",
        "--json",
        tmp_path / "b.json",
        "--keep",
        "--threads",
        1,
    )
    assert result.exit_code == 0, result.output
    print(result.output)
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["machine"]["threads"] == 1 and report["machine"]["cpu"]
    rows = {row["format"]: row for row in report["rows"]}
    assert list(rows) == formats.split(",")
    assert rows["torch-bf16"]["skipped"].startswith("autocast is CUDA only")
    assert rows["onnx-tensorrt"]["skipped"] == "needs --device cuda (this run: cpu)"
    assert rows["torch-bf16"]["ap"] is None and rows["onnx-tensorrt"]["ms_per_image_batch1"] is None
    ran = [rows[name] for name in ("torch-fp32", "torchscript", "onnx-fp32", "onnx-int8")]
    for row in ran:
        assert (
            row["skipped"] == ""
            and row["ms_per_image_batch1"] > 0
            and row["images_per_s_batch8"] > 0
        )
        assert (
            Path(row["file"]).is_file() and row["size_mb"] == Path(row["file"]).stat().st_size / 1e6
        )
    assert Path(rows["onnx-int8"]["file"]).parent == tmp_path / "tiny-benchmark"  # --keep
    # The same AP `detector evaluate` prints, for the checkpoint and for each exported file.
    evaluated = _evaluate_ap(checkpoint, config, tmp_path / "pt.json")
    assert evaluated["AP"] > 0.05
    for name in ("torch-fp32", "torchscript", "onnx-fp32"):
        assert rows[name]["ap"] == pytest.approx(evaluated["AP"], abs=1e-6), name
        assert rows[name]["ap50"] == pytest.approx(evaluated["AP50"], abs=1e-6), name
    int8 = _evaluate_ap(Path(rows["onnx-int8"]["file"]), config, tmp_path / "int8.json")
    assert rows["onnx-int8"]["ap"] == pytest.approx(int8["AP"], abs=1e-6)
    assert rows["onnx-int8"]["size_mb"] < 0.4 * rows["onnx-fp32"]["size_mb"]  # int8 weights
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("onnx-tensorrt")]
    assert line.endswith("not run: needs --device cuda (this run: cpu)")


def test_exported_files_go_to_a_temp_folder_without_keep(
    trained_tiny_run: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(trained_tiny_run["best"].read_bytes())
    result = invoke(
        "benchmark",
        checkpoint,
        "--data",
        trained_tiny_run["config"],
        "--formats",
        "onnx-fp32,onnx-cuda",
        "--reps",
        1,
        "--exporter",
        "torchscript",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    fp32, cuda = report["rows"]
    assert fp32["file"] == "" and fp32["size_mb"] > 0 and fp32["ap"] > 0.05
    assert cuda["skipped"] == "needs --device cuda (this run: cpu)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formats", "onnx-fp32,onnx-int4"], "--formats: onnx-int4: choose among torch-fp32"),
        (["--reps", "0"], "--reps 0: must be >= 1"),
    ],
)
def test_bad_benchmark_options_are_one_line_errors(args: list[str], message: str) -> None:
    """Checked before the checkpoint or the config is read."""
    result = CliRunner().invoke(main, ["benchmark", "missing.pt", "--data", "missing.yaml", *args])
    assert result.exit_code != 0 and message in result.output, result.output
