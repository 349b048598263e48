"""`detector evaluate --predictions FILE --data CONFIG` end to end on a tiny COCO dataset.

The expected numbers come from pycocotools run on the dataset's own instances
file and the predictions file, exactly as a user would run it by hand.
"""

from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.cli import main
from detector.evaluation.evaluator import STAT_KEYS

CATEGORIES = [{"id": 5, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 9, "name": "star"}]


@pytest.fixture(scope="module")
def coco_dataset(tmp_path_factory):
    """12 images (one without objects), non-contiguous category ids, a crowd box."""
    root = tmp_path_factory.mktemp("coco")
    (root / "val").mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(12):
        width, height = int(rng.integers(60, 120)), int(rng.integers(60, 120))
        image_id = 100 + 3 * i
        cv2.imwrite(
            str(root / "val" / f"{image_id}.png"), np.full((height, width, 3), 127, np.uint8)
        )
        images.append(
            {"id": image_id, "file_name": f"{image_id}.png", "width": width, "height": height}
        )
        for _ in range(int(rng.integers(0, 4)) if i else 0):  # image 0: a negative
            w, h = float(rng.integers(8, 40)), float(rng.integers(8, 40))
            x, y = float(rng.integers(0, width - w)), float(rng.integers(0, height - h))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(len(annotations) == 3),
                    "category_id": CATEGORIES[int(rng.integers(0, 3))]["id"],
                }
            )
    (root / "instances_val.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
    )
    config = root / "data.yaml"
    config.write_text(
        f"data:\n  format: coco\n  root: {root}\n  train: []\n"
        "  val:\n    - {images: val, annotations: instances_val.json}\n"
    )
    # predictions: each true box jittered (some with another class) plus a false positive per image
    results = []
    for ann in annotations:
        jitter = rng.normal(0, 2, 4) * [1, 1, 0.5, 0.5]
        category = (
            ann["category_id"] if rng.random() < 0.8 else CATEGORIES[int(rng.integers(0, 3))]["id"]
        )
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": category,
                "bbox": [float(v) for v in np.array(ann["bbox"]) + jitter],
                "score": float(rng.random()),
            }
        )
    for image in images:
        results.append(
            {
                "image_id": image["id"],
                "category_id": 2,
                "bbox": [1.0, 2.0, 15.0, 10.0],
                "score": float(rng.random()),
            }
        )
    predictions = root / "predictions.json"
    predictions.write_text(json.dumps(results))
    return {"root": root, "config": config, "predictions": predictions, "results": results}


def pycocotools_stats(gt_file, results_file):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_file))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(results_file)), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def test_predictions_file_scored_like_pycocotools(coco_dataset, tmp_path):
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--predictions",
        str(coco_dataset["predictions"]),
        "--data",
        str(coco_dataset["config"]),
        "--json",
        str(out / "metrics.json"),
        "--save-predictions",
        str(out / "saved.json"),
        "--voc-metric",
        "11point",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "AR100" in result.output and "circle" in result.output

    metrics = json.loads((out / "metrics.json").read_text())
    expected = pycocotools_stats(
        coco_dataset["root"] / "instances_val.json", coco_dataset["predictions"]
    )
    for key, value in zip(STAT_KEYS, expected, strict=True):
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    assert 0.1 < metrics["AP"] < 0.95
    assert list(metrics["per_class"]) == [
        "square",
        "circle",
        "star",
    ]  # labels follow category id order
    assert metrics["voc"]["metric"] == "11point" and 0 < metrics["voc"]["mAP"] <= 1
    assert metrics["num_images"] == 12 and metrics["num_predictions"] == len(
        coco_dataset["results"]
    )

    saved = json.loads((out / "saved.json").read_text())  # standard results, the dataset's own ids

    def key(r):
        return (
            r["image_id"],
            r["category_id"],
            round(r["score"], 5),
            *(round(v, 3) for v in r["bbox"]),
        )

    assert sorted(map(key, saved)) == sorted(map(key, coco_dataset["results"]))

    for name in ("pr_curves.png", "confusion_matrix.png"):  # beside the JSON
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 100


def test_plots_dir_and_zero_predictions(coco_dataset, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    args = [
        "evaluate",
        "--predictions",
        str(empty),
        "--data",
        str(coco_dataset["config"]),
        "--json",
        str(tmp_path / "m.json"),
        "--plots",
        str(tmp_path / "plots"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["AP"] == 0.0 and metrics["AR100"] == 0.0 and metrics["num_predictions"] == 0
    assert (tmp_path / "plots" / "pr_curves.png").stat().st_size > 0
    assert (tmp_path / "plots" / "confusion_matrix.png").stat().st_size > 0


@pytest.mark.parametrize(
    "content,message",
    [
        (
            [{"image_id": 100, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}],
            "category id 1",
        ),
        ([{"image_id": 7, "category_id": 5, "bbox": [0, 0, 5, 5], "score": 0.5}], "image id 7"),
        ({"not": "a list"}, "expected a JSON list"),
        (
            [
                {"image_id": 100, "category_id": 5, "bbox": [0, 0, 5, 5], "score": 0.5},
                {"image_id": 100.0, "category_id": 5, "bbox": [0, 0, 5, 5], "score": 0.5},
            ],
            "bad.json: entry 1: image_id 100.0 must be an integer",
        ),
        (
            [{"image_id": 100, "category_id": 5, "bbox": [0, 0, -5, 5], "score": 0.5}],
            "bad.json: entry 0: bbox width and height must be >= 0",
        ),
    ],
)
def test_bad_predictions_are_one_line_errors(coco_dataset, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    result = CliRunner().invoke(
        main, ["evaluate", "--predictions", str(bad), "--data", str(coco_dataset["config"])]
    )
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def test_usage_errors(coco_dataset, tmp_path):
    runner = CliRunner()
    neither = runner.invoke(main, ["evaluate"])
    assert neither.exit_code == 2 and "either CHECKPOINT or --predictions" in neither.output
    no_data = runner.invoke(main, ["evaluate", "--predictions", str(coco_dataset["predictions"])])
    assert no_data.exit_code == 2 and "--predictions needs --data" in no_data.output
    missing = runner.invoke(
        main,
        [
            "evaluate",
            "--predictions",
            str(tmp_path / "nope.json"),
            "--data",
            str(coco_dataset["config"]),
        ],
    )
    assert missing.exit_code == 1 and "nope.json: predictions file not found" in missing.output
    no_checkpoint = runner.invoke(main, ["evaluate", str(tmp_path / "missing.pt")])
    assert no_checkpoint.exit_code == 1 and "checkpoint not found" in no_checkpoint.output


@pytest.fixture(scope="module")
def checkpoint(coco_dataset, tmp_path_factory):
    """A randomly initialised small model saved as a checkpoint of the tiny dataset."""
    import torch

    from detector.checkpoint import save_checkpoint
    from detector.config import config_to_dict, load_config
    from detector.model.build import build_model

    cfg = load_config(
        coco_dataset["config"],
        overrides=[
            "model.backbone=resnet18",
            "model.image_size=64",
            "train.workers=0",
            "eval.batch_size=16",
        ],
    )  # one batch
    names = ["square", "circle", "star"]  # category id order
    torch.manual_seed(0)
    model = build_model(cfg.model, len(names)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(
        {
            "model": model.state_dict(),
            "config": config_to_dict(cfg),
            "names": names,
            "image_size": 64,
            "mean": cfg.model.mean,
            "std": cfg.model.std,
            "epoch": 0,
            "best_ap": 0.0,
        },
        path,
    )
    return path


def test_checkpoint_predictions_scored_like_pycocotools(coco_dataset, checkpoint, tmp_path):
    args = [
        "evaluate",
        str(checkpoint),
        "--device",
        "cpu",
        "--json",
        str(tmp_path / "metrics.json"),
        "--save-predictions",
        str(tmp_path / "saved.json"),
        "--max-det",
        "20",
        "--conf",
        "1e-6",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "saved.json").read_text())
    assert saved and {r["category_id"] for r in saved} <= {2, 5, 9}
    per_image = {}
    for r in saved:
        per_image[r["image_id"]] = per_image.get(r["image_id"], 0) + 1
    assert max(per_image.values()) <= 20
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    expected = pycocotools_stats(
        coco_dataset["root"] / "instances_val.json", tmp_path / "saved.json"
    )
    for key, value in zip(STAT_KEYS, expected, strict=True):
        assert metrics[key] == pytest.approx(value, abs=1e-9), key


def test_checkpoint_with_other_class_names_is_refused(coco_dataset, checkpoint, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(
        coco_dataset["config"]
        .read_text()
        .replace("  train: []", "  train: []\n  names: [star, circle]")
    )
    result = CliRunner().invoke(
        main, ["evaluate", str(checkpoint), "--data", str(other), "--device", "cpu"]
    )
    assert result.exit_code == 1
    assert "class names differ" in result.output and "['square', 'circle', 'star']" in result.output
    assert "['star', 'circle']" in result.output


def test_a_broken_image_is_reported_once(coco_dataset, checkpoint, tmp_path):
    # The same dataset plus one file that is not an image: evaluate skips it and says so
    # once (the loader's report), with a checkpoint and with --predictions alike.
    content = json.loads((coco_dataset["root"] / "instances_val.json").read_text())
    (tmp_path / "val").mkdir()
    for image in content["images"]:
        (tmp_path / "val" / image["file_name"]).write_bytes(
            (coco_dataset["root"] / "val" / image["file_name"]).read_bytes()
        )
    (tmp_path / "val" / "broken.png").write_bytes(b"not a png at all")
    content["images"].append({"id": 999, "file_name": "broken.png", "width": 80, "height": 60})
    (tmp_path / "instances_val.json").write_text(json.dumps(content))
    config = tmp_path / "data.yaml"
    config.write_text(
        coco_dataset["config"].read_text().replace(str(coco_dataset["root"]), str(tmp_path))
    )
    runs = {
        "checkpoint": ["evaluate", str(checkpoint), "--data", str(config), "--device", "cpu"],
        "predictions": [
            "evaluate",
            "--predictions",
            str(coco_dataset["predictions"]),
            "--data",
            str(config),
        ],
    }
    for kind, args in runs.items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (kind, result.output)
        assert result.stderr.count("broken.png") == 1, (kind, result.stderr)
        assert result.stderr.count("1 image(s) skipped") == 1, (kind, result.stderr)
        assert "12 images" in result.stdout, (kind, result.stdout)
