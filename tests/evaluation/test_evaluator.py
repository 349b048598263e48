"""evaluate_detections against pycocotools run directly on JSON files.

The reference JSON is written by this test with its own plain conversion (not by
detector.evaluation.coco_format), then scored by pycocotools' COCO(file) + loadRes(file)
+ COCOeval exactly as its README shows.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detector.data.record import SampleRecord
from detector.evaluation.coco_format import CocoFormatError
from detector.evaluation.evaluator import STAT_KEYS, evaluate_detections, format_table

NAMES = ["cat", "dog", "bird"]
CATEGORY_IDS = [17, 3, 90]  # non-contiguous and not sorted: position != sorted order


def make_records(num_images: int, seed: int, *, crowd_fraction: float = 0.1) -> list[SampleRecord]:
    """Images of varied sizes with 0-7 boxes of mixed sizes (small, medium and large)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(num_images):
        width, height = (int(v) for v in rng.integers(120, 640, 2))
        n = int(rng.integers(0, 8))
        # COCO's small / medium / large ranges: side < 32, 32..96, > 96 pixels
        side = np.choose(
            rng.integers(0, 3, n),
            [rng.uniform(4, 30, n), rng.uniform(33, 95, n), rng.uniform(97, 300, n)],
        )
        wh = np.stack([side * rng.uniform(0.7, 1.3, n), side * rng.uniform(0.7, 1.3, n)], 1)
        wh = np.minimum(wh, [width - 1, height - 1])
        xy = rng.uniform(0, 1, (n, 2)) * ([width, height] - wh)
        boxes = np.concatenate([xy, xy + wh], 1)
        records.append(
            SampleRecord(
                image_path=f"images/{i:05d}.jpg",
                width=width,
                height=height,
                boxes=boxes,
                labels=rng.integers(0, len(NAMES), n),
                ignore=rng.random(n) < crowd_fraction,
                image_id=1000 + 7 * i,  # ids unrelated to positions
            )
        )
    return records


def perfect_predictions(records: list[SampleRecord]) -> dict[int, dict]:
    return {
        r.image_id: {
            "boxes": r.boxes.copy(),
            "scores": np.linspace(0.99, 0.9, len(r.boxes)),
            "labels": r.labels.copy(),
        }
        for r in records
    }


def noisy_predictions(records: list[SampleRecord], seed: int, *, extra: int = 6) -> dict[int, dict]:
    """Jittered true boxes, some with wrong classes, plus random false positives."""
    rng = np.random.default_rng(seed)
    predictions = {}
    for r in records:
        n, k = len(r.boxes), int(rng.integers(0, extra + 1))
        size = r.boxes[:, 2:] - r.boxes[:, :2]
        jittered = r.boxes + rng.normal(0, 0.06, (n, 4)) * np.tile(size, 2)
        labels = np.where(rng.random(n) < 0.2, rng.integers(0, len(NAMES), n), r.labels)
        xy = rng.uniform(0, [r.width * 0.8, r.height * 0.8], (k, 2))
        false_boxes = np.concatenate([xy, xy + rng.uniform(4, 150, (k, 2))], 1)
        predictions[r.image_id] = {
            "boxes": np.concatenate([jittered, false_boxes]).astype(np.float32),
            "scores": rng.random(n + k).astype(np.float32),
            "labels": np.concatenate([labels, rng.integers(0, len(NAMES), k)]),
        }
    return predictions


def reference_json(records, predictions, tmp_path, category_ids=CATEGORY_IDS):
    """GT and results JSON files written with a plain conversion of our own."""
    images, annotations, results = [], [], []
    for r in records:
        images.append(
            {"id": r.image_id, "width": r.width, "height": r.height, "file_name": r.image_path}
        )
        for (x1, y1, x2, y2), label, crowd in zip(
            r.boxes.tolist(), r.labels.tolist(), r.ignore.tolist(), strict=True
        ):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": r.image_id,
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                    "category_id": category_ids[label],
                }
            )
    for image_id, p in predictions.items():
        boxes = np.asarray(p["boxes"], np.float64).tolist()
        for (x1, y1, x2, y2), score, label in zip(
            boxes,
            np.asarray(p["scores"], np.float64).tolist(),
            np.asarray(p["labels"]).tolist(),
            strict=True,
        ):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category_ids[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    categories = [{"id": c, "name": n} for c, n in zip(category_ids, NAMES, strict=True)]
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    results_path.write_text(json.dumps(results))
    return str(gt_path), str(results_path)


def pycocotools_stats(
    gt_path: str, results_path: str, cat_ids: list[int] | None = None
) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
        coco_dt = coco_gt.loadRes(results_path)
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        if cat_ids is not None:
            coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


CASES = [
    (10, "perfect"),
    (10, "noisy"),
    (50, "noisy"),
    (50, "mixed"),  # half the images without predictions, half noisy
    (100, "noisy"),
]


@pytest.mark.parametrize("num_images,kind", CASES)
def test_twelve_stats_equal_pycocotools(tmp_path, num_images, kind):
    records = make_records(num_images, seed=num_images)
    if kind == "perfect":
        predictions = perfect_predictions(records)
    else:
        predictions = noisy_predictions(records, seed=num_images + 1)
        if kind == "mixed":
            predictions = {k: v for i, (k, v) in enumerate(predictions.items()) if i % 2}
    result = evaluate_detections(
        records, predictions, NAMES, category_ids=CATEGORY_IDS, voc_metric="none"
    )
    expected = pycocotools_stats(*reference_json(records, predictions, tmp_path))
    assert list(result.stats) == list(STAT_KEYS)
    for key, value in zip(STAT_KEYS, expected, strict=True):
        assert result.stats[key] == pytest.approx(value, abs=1e-9), key
    if kind == "perfect":
        assert result.stats["AP"] == pytest.approx(1.0) and result.stats["AR100"] == pytest.approx(
            1.0
        )
    else:
        assert 0.05 < result.stats["AP"] < 0.95  # a case where mistakes matter


def test_per_class_ap_equals_cocoeval_restricted_to_that_class(tmp_path):
    records = make_records(50, seed=3)
    predictions = noisy_predictions(records, seed=4)
    result = evaluate_detections(records, predictions, NAMES, category_ids=CATEGORY_IDS)
    files = reference_json(records, predictions, tmp_path)
    for name, category in zip(NAMES, CATEGORY_IDS, strict=True):
        stats = pycocotools_stats(*files, cat_ids=[category])
        assert result.per_class[name]["AP"] == pytest.approx(stats[0], abs=1e-9)
        assert result.per_class[name]["AP50"] == pytest.approx(stats[1], abs=1e-9)
        expected_gt = sum(int(((r.labels == NAMES.index(name)) & ~r.ignore).sum()) for r in records)
        assert result.per_class[name]["num_gt"] == expected_gt


def test_category_ids_cannot_be_mismapped():
    """Class "cat" perfect, "dog" all wrong: its AP must stay with its name whatever the ids."""
    records = [
        SampleRecord(
            "a.jpg",
            100,
            100,
            [[10, 10, 50, 50], [60, 60, 90, 90]],
            [0, 1],
            [False, False],
            image_id=5,
        )
    ]
    predictions = {
        5: {
            "boxes": np.array([[10, 10, 50, 50], [0, 0, 5, 5]]),
            "scores": np.array([0.9, 0.8]),
            "labels": np.array([0, 1]),
        }
    }
    for ids in ([90, 3], [1, 2], [2, 1]):
        result = evaluate_detections(records, predictions, ["cat", "dog"], category_ids=ids)
        assert result.per_class["cat"]["AP"] == pytest.approx(1.0)
        assert result.per_class["dog"]["AP"] == 0.0
        assert result.stats["AP"] == pytest.approx(0.5)


def test_zero_predictions_give_zero_not_a_crash():
    records = make_records(20, seed=5, crowd_fraction=0.0)
    for predictions in (
        {},
        {
            r.image_id: {
                "boxes": np.zeros((0, 4)),
                "scores": np.zeros(0),
                "labels": np.zeros(0, int),
            }
            for r in records
        },
    ):
        result = evaluate_detections(records, predictions, NAMES)
        assert result.num_predictions == 0
        # every area range has ground truth in this set, so every stat is a real 0
        assert all(result.stats[key] == 0.0 for key in STAT_KEYS), result.stats
        assert all(v["AP"] == 0.0 for v in result.per_class.values())


def test_more_than_100_detections_per_image_follow_max_dets(tmp_path):
    """Per (image, class) pycocotools counts only the 100 best: low-scored true boxes are lost."""
    rng = np.random.default_rng(7)
    records, predictions = [], {}
    for i in range(5):
        gt = np.array([[10.0 * j, 10.0 * j, 10.0 * j + 40, 10.0 * j + 40] for j in range(4)])
        records.append(
            SampleRecord(f"{i}.jpg", 400, 400, gt, [0, 0, 1, 2], [False] * 4, image_id=i + 1)
        )
        noise = rng.uniform(100, 300, (150, 2))
        false_boxes = np.concatenate([noise, noise + 20], 1)
        boxes = np.concatenate([false_boxes, gt])
        scores = np.concatenate(
            [rng.uniform(0.5, 1.0, 150), [0.1, 0.1, 0.99, 0.2]]
        )  # class-0 truths ranked last
        labels = np.concatenate([np.zeros(120, int), rng.integers(1, 3, 30), [0, 0, 1, 2]])
        predictions[i + 1] = {"boxes": boxes, "scores": scores, "labels": labels}
    result = evaluate_detections(records, predictions, NAMES, category_ids=CATEGORY_IDS)
    expected = pycocotools_stats(*reference_json(records, predictions, tmp_path))
    for key, value in zip(STAT_KEYS, expected, strict=True):
        assert result.stats[key] == pytest.approx(value, abs=1e-9), key
    assert result.per_class["cat"]["AP"] == 0.0  # its true boxes fall past the 100-detection limit
    assert result.per_class["dog"]["AP"] > 0.5


def test_crowd_boxes_are_dont_care(tmp_path):
    """A detection on a crowd box is neither TP nor FP; the crowd box is no miss."""
    records = [
        SampleRecord(
            "a.jpg",
            200,
            200,
            [[0, 0, 50, 50], [100, 100, 190, 190]],
            [0, 0],
            [False, True],
            image_id=1,
        )
    ]
    on_crowd = {
        1: {
            "boxes": np.array([[0, 0, 50, 50], [120, 120, 150, 150]]),
            "scores": np.array([0.5, 0.9]),
            "labels": np.array([0, 0]),
        }
    }
    result = evaluate_detections(records, on_crowd, NAMES)
    assert result.stats["AP"] == pytest.approx(1.0)  # the higher-scored crowd hit costs nothing
    expected = pycocotools_stats(*reference_json(records, on_crowd, tmp_path, [1, 2, 3]))
    assert [result.stats[k] for k in STAT_KEYS] == pytest.approx(list(expected), abs=1e-9)


def test_class_without_ground_truth_is_nan_and_null_in_json():
    records = [SampleRecord("a.jpg", 100, 100, [[10, 10, 50, 50]], [0], [False], image_id=1)]
    predictions = {
        1: {
            "boxes": np.array([[10, 10, 50, 50], [0, 0, 9, 9]]),
            "scores": np.array([0.9, 0.8]),
            "labels": np.array([0, 2]),
        }
    }
    result = evaluate_detections(records, predictions, NAMES, voc_metric="area")
    assert math.isnan(result.per_class["bird"]["AP"]) and math.isnan(
        result.per_class["dog"]["AP50"]
    )
    assert result.per_class["cat"]["AP"] == pytest.approx(1.0)
    document = json.loads(json.dumps(result.to_json(), allow_nan=False))  # strict JSON
    assert set(STAT_KEYS) <= set(document) and document["per_class"]["bird"]["AP"] is None
    assert document["voc"]["AP50"] == {"cat": 1.0, "dog": None, "bird": None}
    assert document["voc"]["mAP"] == 1.0
    assert "bird" in format_table(result)


def test_voc_metric_auto_follows_the_dataset_format():
    records = make_records(10, seed=8)
    predictions = noisy_predictions(records, seed=9)
    assert evaluate_detections(records, predictions, NAMES, dataset_format="coco").voc is None
    voc = evaluate_detections(records, predictions, NAMES, dataset_format="voc").voc
    assert voc["metric"] == "area" and set(voc["AP50"]) == set(NAMES)
    eleven = evaluate_detections(records, predictions, NAMES, voc_metric="11point").voc
    assert eleven["metric"] == "11point" and eleven["mAP"] != voc["mAP"]
    with pytest.raises(ValueError, match="voc_metric"):
        evaluate_detections(records, predictions, NAMES, voc_metric="07")


def test_unknown_image_and_bad_labels_raise_naming_them():
    records = make_records(3, seed=10)
    bad_image = {
        123456: {"boxes": np.zeros((1, 4)), "scores": np.ones(1), "labels": np.zeros(1, int)}
    }
    with pytest.raises(CocoFormatError, match="123456"):
        evaluate_detections(records, bad_image, NAMES)
    bad_label = {
        records[0].image_id: {
            "boxes": np.zeros((1, 4)),
            "scores": np.ones(1),
            "labels": np.array([3]),
        }
    }
    with pytest.raises(CocoFormatError, match="label 3"):
        evaluate_detections(records, bad_label, NAMES)
    with pytest.raises(ValueError, match="no images"):
        evaluate_detections([], {}, NAMES)


def test_confusion_matrix_hand_computed():
    from detector.evaluation.plots import confusion_matrix

    records = [
        SampleRecord(
            "a.jpg",
            200,
            200,
            [[0, 0, 50, 50], [60, 60, 100, 100], [120, 0, 160, 40], [0, 150, 40, 190]],
            [0, 1, 2, 0],
            [False, False, False, True],
            image_id=1,
        )
    ]
    predictions = {
        1: {
            "boxes": np.array(
                [
                    [0, 0, 50, 50],  # cat as cat
                    [1, 1, 50, 50],  # duplicate: nothing left to match -> background row
                    [60, 60, 100, 100],  # dog predicted as bird
                    [150, 150, 190, 190],  # nothing there -> background row
                    [0, 150, 40, 190],  # on the ignored box: left out
                    [120, 0, 160, 40],
                ]
            ),  # bird, but under the score threshold
            "scores": np.array([0.9, 0.8, 0.7, 0.6, 0.9, 0.1]),
            "labels": np.array([0, 0, 2, 1, 0, 2]),
        }
    }
    matrix = confusion_matrix(records, predictions, 3, score_threshold=0.25)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1  # cat -> cat
    expected[1, 2] = 1  # dog -> bird
    expected[2, 3] = 1  # bird missed
    expected[3, 0] = 1  # duplicate cat
    expected[3, 1] = 1  # dog out of nowhere
    np.testing.assert_array_equal(matrix, expected)
