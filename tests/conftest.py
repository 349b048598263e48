"""Shared pytest fixtures and settings.

Tests run on CPU with few threads so the suite behaves the same on a 2-core CI
machine; CUDA-only tests carry the `cuda` marker and skip where there is no GPU.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

# One thread: tiny tensors gain nothing from more, and on a loaded 2-core
# machine oversubscription (threads x DataLoader workers) slows tests many-fold.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


@pytest.fixture(scope="session", autouse=True)
def offline_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Keep every test off the network and out of the real torch cache: the base URL.

    `model.pretrained: imagenet` anywhere in the suite (a shipped config, a subprocess)
    looks in an empty `TORCH_HOME` and downloads from a loopback port that refuses
    connections, so it fails at once with its one-line error instead of fetching ~100 MB.
    Tests that download serve their own files (tests/model/test_imagenet.py).
    """
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))  # bound but never listening: connecting is refused
    url = f"http://127.0.0.1:{blocker.getsockname()[1]}/models/"
    saved = {key: os.environ.get(key) for key in ("TORCH_HOME", "DETECTOR_WEIGHTS_URL")}
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    os.environ["DETECTOR_WEIGHTS_URL"] = url
    yield url
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    blocker.close()


def _tiny_training(
    data_root: Path, run_dir: Path | None = None, *, num_train: int = 4, **train: object
) -> dict[str, Any]:
    """The smallest real training run, as a raw config dict.

    resnet18 at 64 px with 16-channel neck/head, on `num_train` synthetic images
    (generated into `data_root` on first use), batch 2, CPU, no workers; `train`
    overrides any `train:` key.
    """
    settings: dict[str, Any] = {
        "epochs": 1,
        "batch_size": 2,
        "workers": 0,
        "device": "cpu",
        **train,
    }
    if run_dir is not None:
        settings["run_dir"] = str(run_dir)
    return {
        "data": {
            "format": "voc",
            "root": str(data_root),
            "train": ["ImageSets/Main/train.txt"],
            "val": ["ImageSets/Main/val.txt"],
            "names": ["circle", "square"],
            "synthetic": {"num_train": num_train, "num_val": 2, "image_size": 64, "seed": 0},
        },
        "model": {
            "backbone": "resnet18",
            "image_size": 64,
            "neck_channels": 16,
            "head_channels": 16,
        },
        "train": settings,
        "eval": {"batch_size": 2},
    }


@pytest.fixture(scope="session")
def tiny_training() -> Callable[..., dict[str, Any]]:
    """Factory for the smallest real training config:
    `tiny_training(data_root, run_dir, **train)`."""
    return _tiny_training


@pytest.fixture
def tiny_training_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing `tiny_training(...)` to a YAML file in tmp_path; returns its path."""

    def write(name: str, data_root: Path, run_dir: Path | None = None, **kwargs: object) -> Path:
        path = tmp_path / name
        path.write_text(
            yaml.safe_dump(_tiny_training(data_root, run_dir, **kwargs)), encoding="utf-8"
        )
        return path

    return write


@pytest.fixture(scope="session")
def trained_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model trained for seconds until its AP is far from 0: {config, best}.

    15 epochs on 8 synthetic images rendered at 90 px (resized into 64: the
    interpolation counts), validated on the same images, no augmentation. Shared by
    the tests that compare APs: equal APs near 0 would prove nothing. Read-only.
    """
    from click.testing import CliRunner

    from detector.cli import main

    tmp = tmp_path_factory.mktemp("trained_tiny")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    settings = _tiny_training(
        tmp / "data",
        tmp / "run",
        num_train=8,
        epochs=15,
        ema=False,
        optimizer="adamw",
        lr=0.01,
        warmup_epochs=0.5,
    )
    settings["data"]["val"] = ["ImageSets/Main/train.txt"]
    settings["data"]["synthetic"]["image_size"] = 90
    settings["augment"] = []  # no augmentation: the 8 images are learned within seconds
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    result = CliRunner().invoke(main, ["train", str(config)])
    torch.set_num_threads(previous)
    assert result.exit_code == 0, result.output
    return {"config": config, "best": tmp / "run" / "weights" / "best.pt"}


@pytest.fixture
def single_thread_torch() -> Any:
    """One intra-op thread while a test runs: on a loaded 2-core machine, 2 OpenMP
    threads spin against other processes and a 64 px forward takes ~30x longer.
    (ONNX Runtime sessions in the tests follow torch's thread count.)"""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _greedy_backends() -> list[str]:
    from detector._postprocess import greedy_numba

    return ["torch", "torch-16-box-blocks"] + (["numba"] if greedy_numba.AVAILABLE else [])


@pytest.fixture(params=_greedy_backends())
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each CPU path of the greedy NMS / merge pass (detector/_postprocess/greedy.py): the
    pure-torch pass with default and 16-box blocks (crossing block borders), and numba."""
    from detector._postprocess import greedy

    monkeypatch.setattr(greedy, "CPU_BACKEND", "numba" if request.param == "numba" else "torch")
    if request.param == "torch-16-box-blocks":
        monkeypatch.setattr(greedy, "CPU_BLOCK_SIZE", 16)
    return request.param
