"""Fixtures for export tests: a tiny random-weight checkpoint and files exported from it once.

The checkpoint is `random_checkpoint`'s resnet18 at 64 px with the box layer's
weights scaled down and a log-size bias, so boxes are ~2.5 strides wide,
and the score layers scaled down so no two scores tie at 1.0 (overlapping, not clipped
to the whole image) and NMS has real work: the comparisons below are then well
conditioned. Exports are session-scoped because the dynamo exporter takes
seconds each on this CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.export import ExportOptions, export_checkpoint
from detector.inference.synthetic import random_checkpoint

NAMES = ("circle", "square", "triangle")


def tame_checkpoint(path: Path, *, names=NAMES, image_size: int = 64) -> Path:
    """A random checkpoint: boxes ~2.5 strides wide (not up to exp(10)), unsaturated scores."""
    random_checkpoint(path, image_size=image_size, names=names)
    ckpt = load_checkpoint(path)
    for key, value in ckpt["model"].items():
        if key.endswith("box_pred.weight"):
            ckpt["model"][key] = value * 0.1
        if key.endswith("box_pred.bias"):  # log-size: boxes ~2.5 strides, so neighbours overlap
            ckpt["model"][key] = torch.tensor([0.0, 0.0, 0.9, 0.9])
        if key.endswith(("obj_pred.weight", "cls_pred.weight")):  # spread scores, no ties at 1.0
            ckpt["model"][key] = value * 0.05
    save_checkpoint(ckpt, path)
    return path


def legacy_nms_file(source: Path, out: Path) -> Path:
    """A copy of an --nms .onnx as older versions wrote it: thresholds baked in, not inputs."""
    import onnx

    model = onnx.load(str(source))
    for value in [i for i in model.graph.input if i.name != "images"]:
        model.graph.input.remove(value)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def tiny_checkpoint(export_dir: Path) -> Path:
    torch.set_num_threads(1)
    return tame_checkpoint(export_dir / "tiny.pt")


def _export(checkpoint: Path, out: Path, **options) -> Path:
    torch.set_num_threads(1)
    return export_checkpoint(checkpoint, ExportOptions(out=out, **options)).path


@pytest.fixture(scope="session")
def onnx_static(tiny_checkpoint: Path, export_dir: Path) -> Path:
    """dynamo exporter, static 1 x 3 x 64 x 64."""
    return _export(tiny_checkpoint, export_dir / "static.onnx")


@pytest.fixture(scope="session")
def onnx_dynamic(tiny_checkpoint: Path, export_dir: Path) -> Path:
    """dynamo exporter, dynamic batch, height and width."""
    return _export(tiny_checkpoint, export_dir / "dynamic.onnx", dynamic=True)


@pytest.fixture(scope="session")
def onnx_nms(tiny_checkpoint: Path, export_dir: Path) -> Path:
    """Static batch 2 with in-graph NMS (low threshold, small max_det so the cap bites)."""
    return _export(
        tiny_checkpoint,
        export_dir / "nms.onnx",
        nms=True,
        batch=2,
        score_threshold=0.3,
        iou_threshold=0.5,
        max_det=20,
    )


@pytest.fixture(autouse=True)
def _single_thread(single_thread_torch) -> None:
    """Every test in this folder runs with one torch thread (tests/conftest.py)."""
