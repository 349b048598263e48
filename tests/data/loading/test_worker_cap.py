"""`train.workers` above the CPUs this process may use is capped, with one line saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.config import config_from_dict
from detector.data.loading import dataset as dataset_module
from detector.data.loading.dataset import build_dataloader, capped_workers


def test_capped_at_the_available_cpus_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(dataset_module, "available_cpus", lambda: 2)
    assert capped_workers(8) == 2
    assert (
        capsys.readouterr().err
        == "train.workers: 8 is more than the CPUs available to this process (2); using 2\n"
    )
    assert capped_workers(2) == 2 and capped_workers(0) == 0
    assert capsys.readouterr().err == ""
    # Under torchrun each of the processes on a machine gets its share (at least one).
    assert capped_workers(4, processes_per_machine=2, announce=False) == 1
    assert capped_workers(4, processes_per_machine=4, announce=False) == 1


def test_the_training_loader_gets_the_capped_count(
    tmp_path: Path, tiny_training, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(dataset_module, "available_cpus", lambda: 1)
    cfg = config_from_dict(tiny_training(tmp_path / "data", workers=8))
    loader, _ = build_dataloader(cfg, "train", train=True)
    assert loader.num_workers == 1 and loader.timeout == 300.0
    assert (
        "train.workers: 8 is more than the CPUs available to this process (1); using 1"
        in capsys.readouterr().err
    )
    cfg.train.worker_timeout = None
    loader, _ = build_dataloader(cfg, "val", train=False)
    assert loader.num_workers == 1 and loader.timeout == 0
    assert "train.workers" not in capsys.readouterr().err  # said once, for the training loader
