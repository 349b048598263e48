"""`tools/benchmark.py gpu`: every code path at tiny sizes on the CPU, and the no-CUDA exit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from benchmarks import gpu


def test_every_path_runs_at_tiny_sizes_on_cpu() -> None:
    lines: list[str] = []
    gpu.run_all(
        torch.device("cpu"),
        image_size=64,
        batch_size=2,
        steps=1,
        repeats=1,
        workers=0,
        frames=2,
        nms_boxes=64,
        onnx_path=None,
        echo=lines.append,
    )
    text = "\n".join(lines)

    def number(label: str) -> float:
        match = re.search(re.escape(label) + r"\s+([0-9.]+)", text)
        assert match, f"no figure for {label!r} in:\n{text}"
        return float(match.group(1))

    for backbone in ("resnet18", "resnet50"):
        assert number(f"{backbone} synthetic on-device batches") > 0
        assert number(f"{backbone} DataLoader x0 workers") > 0
        assert number(f"{backbone} batch 1") > 0 and number(f"{backbone} batch 8") > 0
    assert number("ours cpu") > 0
    assert "ONNX Runtime CUDA: skipped: no --onnx FILE given" in text


def test_synthetic_batches_are_on_device_and_well_formed() -> None:
    (batch,) = gpu.synthetic_batches(1, 3, 32, torch.device("cpu"))
    assert batch["images"].shape == (3, 3, 32, 32) and batch["images"].dtype == torch.uint8
    boxes = batch["targets"][0]["boxes"]
    assert boxes.shape == (3, 4) and bool((boxes[:, 2:] > boxes[:, :2]).all())


def test_onnx_row_skips_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu.onnx_cuda_fps(None, 64, 1, 1).startswith("skipped: no --onnx FILE")
    monkeypatch.setattr(gpu.importlib.util, "find_spec", lambda name: None)
    assert (
        gpu.onnx_cuda_fps(tmp_path / "m.onnx", 64, 1, 1) == "skipped: onnxruntime is not installed"
    )


def test_without_cuda_it_says_so_and_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(gpu.gpu, [])
    assert result.exit_code == 0 and "no CUDA device here; nothing measured" in result.output


# Installed first on sys.meta_path in a fresh interpreter: these two cannot be imported,
# as on the lent GPU machine (no network, no wheels for them).
_HIDE_ALBUMENTATIONS = """
import runpy, sys

class HideModules:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("albumentations", "pycocotools"):
            raise ImportError(f"{name} hidden by the test (as on a bare GPU machine)")
        return None

sys.meta_path.insert(0, HideModules())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_script_runs_without_albumentations_and_pycocotools() -> None:
    """`tools/benchmark.py gpu` at tiny sizes on the CPU, with both modules unimportable."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable,
        "-c",
        _HIDE_ALBUMENTATIONS,
        str(root / "tools" / "benchmark.py"),
        "gpu",
        "--device",
        "cpu",
        "--image-size",
        "64",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--repeats",
        "1",
        "--workers",
        "0",
        "--frames",
        "2",
        "--nms-boxes",
        "64",
    ]
    # tools/ as `python tools/benchmark.py` puts it first on the path (runpy does not).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "tools")]),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for backbone in ("resnet18", "resnet50"):
        assert re.search(rf"{backbone} synthetic on-device batches\s+[0-9.]+", text), text
        assert re.search(rf"{backbone} DataLoader x0\s+skipped: albumentations", text), text
        assert re.search(rf"{backbone} batch 8\s+[0-9.]+", text), text
    assert re.search(r"ours cpu\s+[0-9.]+", text), text
