"""`detector train` end to end on a tiny synthetic dataset, asserting on what it writes."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch
import yaml
from click.testing import CliRunner

from detector.cli import main


def test_train_writes_the_run_directory(tmp_path: Path, tiny_training_yaml) -> None:
    config = tiny_training_yaml("tiny.yaml", tmp_path / "data", epochs=2)
    run = tmp_path / "runs" / "exp"
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(config),
            "--set",
            f"train.run_dir={run}",
            "--set",
            "train.optimizer=adamw",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(run)

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["optimizer"] == "adamw" and resolved["train"]["run_dir"] == str(run)
    assert resolved["model"]["image_size"] == 64 and resolved["data"]["names"] == [
        "circle",
        "square",
    ]

    with (run / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    for column in (
        "loss",
        "loss_box",
        "loss_obj",
        "loss_cls",
        "lr",
        "AP",
        "AP50",
        "train_s",
        "images_per_s",
    ):
        assert all(row[column] != "" for row in rows), column
    assert 0.0 <= float(rows[-1]["AP"]) <= float(rows[-1]["AP50"]) <= 1.0

    last = torch.load(run / "weights/last.pt", weights_only=True)
    best = torch.load(run / "weights/best.pt", weights_only=True)
    assert last["finished"] and last["epoch"] == 2 and last["names"] == ["circle", "square"]
    assert {"optimizer", "scheduler", "scaler", "ema", "rng", "train_model"} <= set(last)
    assert best["image_size"] == 64 and best["best_ap"] == max(float(r["AP"]) for r in rows)
    assert "optimizer" not in best
    assert (run / "plots/loss.png").stat().st_size > 0 and (run / "plots/ap.png").stat().st_size > 0

    # Resuming the finished run is refused with the reason, and so is a fresh run into it.
    refused = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert refused.exit_code != 0 and "finished" in refused.output
    exists = CliRunner().invoke(main, ["train", str(config), "--set", f"train.run_dir={run}"])
    assert exists.exit_code != 0 and "exists" in exists.output


def test_bad_input_exits_with_one_line_reason(tmp_path: Path, tiny_training_yaml) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["train", str(tmp_path / "nope.yaml")])
    assert missing.exit_code != 0 and "config file not found" in missing.output
    nothing = runner.invoke(main, ["train"])
    assert nothing.exit_code != 0 and "--resume" in nothing.output
    config = tiny_training_yaml("c.yaml", tmp_path / "data", epochs=2)
    bad_key = runner.invoke(main, ["train", str(config), "--set", "train.epochz=3"])
    assert bad_key.exit_code != 0 and "unknown key train.epochz" in bad_key.output
    no_run = runner.invoke(main, ["train", "--resume", str(tmp_path / "absent")])
    assert no_run.exit_code != 0 and "no such run directory" in no_run.output


def test_missing_dataset_fails_with_its_path_and_leaves_no_run_dir(tmp_path: Path) -> None:
    config = tmp_path / "missing.yaml"
    config.write_text(
        f"data: {{format: voc, root: {tmp_path / 'nowhere'}, train: [ImageSets/Main/train.txt], "
        "val: [ImageSets/Main/val.txt], names: [a]}\n",
        encoding="utf-8",
    )
    run = tmp_path / "runs" / "exp"
    result = CliRunner().invoke(
        main, ["train", str(config), "--set", f"train.run_dir={run}", "--device", "cpu"]
    )
    assert result.exit_code != 0
    assert "train.txt" in result.output and "not found" in result.output
    assert not run.exists()


def test_imagenet_weights_offline_end_with_one_line_and_no_run_dir(
    tmp_path: Path, tiny_training_yaml, offline_weights: str
) -> None:
    config = tiny_training_yaml("c.yaml", tmp_path / "data", epochs=1)
    run = tmp_path / "runs" / "exp"
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(config),
            "--set",
            "model.pretrained=imagenet",
            "--set",
            f"train.run_dir={run}",
        ],
    )
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    cache = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert errors == [
        "Error: model.pretrained: imagenet: cannot download "
        f"{offline_weights}resnet18-f37072fd.pth "
        f"([Errno 111] Connection refused); to work offline place that file at {cache}, or set "
        "model.pretrained to a local path"
    ], result.output
    assert not run.exists() and not cache.exists()


def test_imagenet_from_cache_trains_and_resume_needs_no_weight_file(
    tmp_path: Path, tiny_training_yaml, monkeypatch
) -> None:
    import hashlib
    import io

    from detector.model.backbone import ResNetBackbone
    from detector.model.imagenet import IMAGENET_FILES

    buffer = io.BytesIO()
    torch.save(ResNetBackbone(depth=18).state_dict(), buffer)  # torchvision's keys, minus fc
    name = f"resnet18-{hashlib.sha256(buffer.getvalue()).hexdigest()[:8]}.pth"
    monkeypatch.setitem(IMAGENET_FILES, ("resnet18", "imagenet"), name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(buffer.getvalue())  # as if torchvision had downloaded it: no request

    config = tiny_training_yaml("c.yaml", tmp_path / "data", epochs=1)
    run = tmp_path / "runs" / "exp"
    first = CliRunner().invoke(
        main,
        [
            "train",
            str(config),
            "--set",
            "model.pretrained=imagenet",
            "--set",
            f"train.run_dir={run}",
        ],
    )
    assert first.exit_code == 0, first.output
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["pretrained"] == "imagenet"

    cached.unlink()  # offline (tests/conftest.py) and no cache: any fetch would fail
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run), "--set", "train.epochs=2"])
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(run / "weights/last.pt", weights_only=True)["epoch"] == 2
    assert not cached.exists()
