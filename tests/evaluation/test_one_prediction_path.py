"""One prediction path: on a trained tiny model, validation during training, `detector evaluate`
and `Detector` predictions on the val files score the same COCO AP (issue 14: within 0.002).

The model is trained for a few seconds on 8 synthetic 64 px images (validated on the same
images so the AP is far from 0 and a difference in preprocessing, precision or decode
would show). Run on the CPU, where the three paths feed the model identical pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from detector import Detector
from detector.cli import main
from detector.config import load_config
from detector.data.catalog import category_ids, load_split
from detector.evaluation.coco_format import predictions_to_coco_results
from detector.evaluation.evaluator import evaluate_detections


@pytest.fixture
def trained_run(trained_tiny_run: dict, tmp_path: Path) -> dict:
    """The shared trained tiny model (tests/conftest.py) and a folder for this test's files."""
    return {**trained_tiny_run, "tmp": tmp_path}


def test_api_evaluate_and_validation_score_the_same_ap(trained_run: dict) -> None:
    best = trained_run["best"]
    validation_ap = float(torch.load(best, weights_only=True)["best_ap"])  # what training reported

    metrics_file, saved_file = (
        trained_run["tmp"] / "metrics.json",
        trained_run["tmp"] / "saved.json",
    )
    # (files of its own: the module's other tests share trained_run's folder)
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(best),
            "--device",
            "cpu",
            "--json",
            str(metrics_file),
            "--save-predictions",
            str(saved_file),
        ],
    )
    assert result.exit_code == 0, result.output
    evaluate_ap = json.loads(metrics_file.read_text())["AP"]

    cfg = load_config(trained_run["config"])
    split = load_split(cfg.data, "val")
    detector = Detector.from_checkpoint(
        best,
        device="cpu",
        score_threshold=cfg.eval.score_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        max_det=cfg.eval.max_det,
    )
    paths = [record.image_path for record in split.records]
    predictions = {}
    for record, found in zip(split.records, detector(paths), strict=True):
        predictions[record.image_id] = {
            "boxes": found.boxes,
            "scores": found.scores,
            "labels": found.labels,
        }
    api_ap = evaluate_detections(split.records, predictions, split.names, voc_metric="none").stats[
        "AP"
    ]

    # On the CPU the paths feed identical pixels: the very same detections, not only the same AP.
    assert_same_results(predictions, cfg, saved_file)

    print(
        f"AP: validation {validation_ap:.6f}, detector evaluate {evaluate_ap:.6f}, "
        f"Detector API {api_ap:.6f}"
    )
    assert evaluate_ap > 0.05  # a trained model: equal APs near 0 would prove nothing
    assert abs(api_ap - evaluate_ap) <= 0.002
    assert abs(validation_ap - evaluate_ap) <= 0.002


def test_validation_evaluate_and_api_predict_at_one_precision(
    trained_run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA all three autocast at the checkpoint's `train.amp_dtype` (bf16): CPU stands in.

    `half_dtype` is where CPU falls back to fp32; patched to decide as on CUDA, both
    paths autocast at bf16 on the CPU (which supports it), and the detections of
    `detector evaluate` (validation's `evaluation_detector`) equal the API's default.
    """
    from detector.model import precision

    real_half_dtype = precision.half_dtype
    monkeypatch.setattr(
        precision, "half_dtype", lambda half, device: real_half_dtype(half, torch.device("cuda"))
    )
    best, cfg = trained_run["best"], load_config(trained_run["config"])
    assert cfg.train.amp and cfg.train.amp_dtype == "bf16"  # the defaults: bf16 on CUDA
    saved_file = trained_run["tmp"] / "saved_bf16.json"
    result = CliRunner().invoke(
        main, ["evaluate", str(best), "--device", "cpu", "--save-predictions", str(saved_file)]
    )
    assert result.exit_code == 0, result.output

    detector = Detector.from_checkpoint(
        best,
        device="cpu",
        score_threshold=cfg.eval.score_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        max_det=cfg.eval.max_det,
    )
    assert detector.autocast_dtype == torch.bfloat16
    split = load_split(cfg.data, "val")
    found = detector([record.image_path for record in split.records])
    predictions = {
        record.image_id: {"boxes": f.boxes, "scores": f.scores, "labels": f.labels}
        for record, f in zip(split.records, found, strict=True)
    }
    assert_same_results(predictions, cfg, saved_file)


def assert_same_results(predictions: dict, cfg, saved_file: Path) -> None:
    """The API's detections equal a saved COCO results file, entry by entry (identical
    pixels and dtype on the CPU: equal to the rounding of the results file)."""
    ours = predictions_to_coco_results(predictions, category_ids(cfg.data))
    theirs = json.loads(saved_file.read_text())
    assert len(ours) == len(theirs) > 0
    key = lambda r: (r["image_id"], -r["score"], r["category_id"])  # noqa: E731
    for mine, saved in zip(sorted(ours, key=key), sorted(theirs, key=key), strict=True):
        assert (mine["image_id"], mine["category_id"]) == (saved["image_id"], saved["category_id"])
        assert mine["score"] == pytest.approx(saved["score"], abs=1e-4)
        assert mine["bbox"] == pytest.approx(saved["bbox"], abs=1e-2)


def test_sliced_evaluate_and_api_give_the_same_detections(trained_run: dict) -> None:
    """`detector evaluate --slice` and `Detector(slicing=...)` on the val files: one path.

    32 px tiles on the 64 px images: three tiles a side (the last shifted inward), merged
    with the full-image pass.
    """
    from detector.defaults import SlicingOptions

    best = trained_run["best"]
    saved_file = trained_run["tmp"] / "saved_sliced.json"
    evaluate_ap = evaluate_cli_ap(
        best,
        trained_run["tmp"] / "sliced.json",
        "--slice",
        "32",
        "--save-predictions",
        str(saved_file),
    )

    cfg = load_config(trained_run["config"])
    split = load_split(cfg.data, "val")
    detector = Detector.from_checkpoint(
        best,
        device="cpu",
        score_threshold=cfg.eval.score_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        max_det=cfg.eval.max_det,
        slicing=SlicingOptions(size=32),
    )
    found = detector([record.image_path for record in split.records])
    predictions = {
        record.image_id: {"boxes": f.boxes, "scores": f.scores, "labels": f.labels}
        for record, f in zip(split.records, found, strict=True)
    }
    assert_same_results(predictions, cfg, saved_file)
    api_ap = evaluate_detections(split.records, predictions, split.names, voc_metric="none").stats[
        "AP"
    ]
    print(f"sliced AP: detector evaluate {evaluate_ap:.6f}, Detector API {api_ap:.6f}")
    assert abs(api_ap - evaluate_ap) <= 0.002


def test_validation_of_a_tiled_run_is_sliced_evaluate(trained_run: dict) -> None:
    """A run trained on tiles (`data.slice`) validates by sliced inference on the full images:
    the AP training reports equals `detector evaluate --slice SIZE --slice-overlap F`'s."""
    from detector.checkpoint import load_checkpoint
    from detector.config import SliceConfig
    from detector.data.loading.dataset import build_dataloader
    from detector.model.build import model_from_checkpoint
    from detector.training.engine import validate

    best = trained_run["best"]
    evaluate_ap = evaluate_cli_ap(
        best,
        trained_run["tmp"] / "sliced_validation.json",
        "--slice",
        "32",
        "--slice-overlap",
        "0.25",
    )

    cfg = load_config(trained_run["config"])
    cfg.data.slice = SliceConfig(size=32, overlap=0.25, full_images=True)
    model, _ = model_from_checkpoint(load_checkpoint(best), device="cpu")
    split = load_split(cfg.data, "val")
    validation = validate(model, None, split, cfg, device=torch.device("cpu"))
    # The same model validated letterboxed scores another AP: what makes this test able to fail.
    cfg.data.slice = None
    loader, _ = build_dataloader(cfg, "val", train=False)
    letterboxed = validate(model, loader, split, cfg, device=torch.device("cpu"))
    print(
        f"AP: sliced validation {validation['AP']:.6f}, evaluate --slice {evaluate_ap:.6f}, "
        f"letterboxed validation {letterboxed['AP']:.6f}"
    )
    assert evaluate_ap > 0.05
    assert validation["AP"] == pytest.approx(evaluate_ap, abs=1e-6)
    assert letterboxed["AP"] != pytest.approx(evaluate_ap, abs=1e-3)


def evaluate_cli_ap(best: Path, metrics_file: Path, *options: str) -> float:
    """`detector evaluate BEST --device cpu OPTIONS --json METRICS_FILE`: its AP."""
    result = CliRunner().invoke(
        main, ["evaluate", str(best), "--device", "cpu", *options, "--json", str(metrics_file)]
    )
    assert result.exit_code == 0, result.output
    return json.loads(metrics_file.read_text())["AP"]
