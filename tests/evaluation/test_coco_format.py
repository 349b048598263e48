"""COCO ground-truth and results conversion: values, round trips and id checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detector.data.record import SampleRecord
from detector.evaluation.coco_format import (
    CocoFormatError,
    check_category_ids,
    coco_results_to_predictions,
    image_id_aliases,
    load_coco_results,
    predictions_to_coco_results,
    records_to_coco,
    save_coco_results,
)


def two_records() -> list[SampleRecord]:
    return [
        SampleRecord(
            "dir/a.jpg",
            640,
            480,
            [[10.5, 20, 110.5, 70], [0, 0, 5, 5]],
            [1, 0],
            [False, True],
            image_id=42,
            source_id="a",
        ),
        SampleRecord(
            "dir/b.jpg", 32, 16, image_id=7, source_id="b"
        ),  # no objects: kept as a negative
    ]


def test_records_to_coco_fields_and_ids():
    gt = records_to_coco(two_records(), ["cat", "dog"], category_ids=[90, 3])
    assert gt["images"] == [
        {"id": 42, "width": 640, "height": 480, "file_name": "a.jpg"},
        {"id": 7, "width": 32, "height": 16, "file_name": "b.jpg"},
    ]
    assert gt["annotations"] == [
        {
            "id": 1,
            "image_id": 42,
            "category_id": 3,
            "bbox": [10.5, 20.0, 100.0, 50.0],
            "area": 5000.0,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 42,
            "category_id": 90,
            "bbox": [0.0, 0.0, 5.0, 5.0],
            "area": 25.0,
            "iscrowd": 1,
        },
    ]
    assert gt["categories"] == [{"id": 90, "name": "cat"}, {"id": 3, "name": "dog"}]
    assert json.loads(json.dumps(gt)) == gt  # plain JSON types only


def test_default_category_ids_are_one_based():
    gt = records_to_coco(two_records(), ["cat", "dog"])
    assert [c["id"] for c in gt["categories"]] == [1, 2]
    assert [a["category_id"] for a in gt["annotations"]] == [2, 1]


def test_records_errors_name_the_problem():
    records = two_records()
    records[1].image_id = 42
    with pytest.raises(CocoFormatError, match="image id 42 appears twice"):
        records_to_coco(records, ["cat", "dog"])
    with pytest.raises(CocoFormatError, match="label 1 is outside 0..0"):
        records_to_coco(two_records(), ["cat"])
    with pytest.raises(CocoFormatError, match="category id 5"):
        check_category_ids([5, 5], ["cat", "dog"])
    with pytest.raises(CocoFormatError, match="1 category ids for 2"):
        check_category_ids([5], ["cat", "dog"])


def test_predictions_round_trip_through_a_results_file(tmp_path):
    predictions = {
        42: {
            "boxes": np.array([[1.25, 2.5, 11.25, 22.5], [3, 4, 5, 6]], np.float32),
            "scores": np.array([0.75, 0.5], np.float32),
            "labels": np.array([1, 0]),
        },
        7: {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)},
    }
    results = predictions_to_coco_results(predictions, [90, 3], image_ids=[42, 7])
    assert results == [
        {"image_id": 42, "category_id": 3, "bbox": [1.25, 2.5, 10.0, 20.0], "score": 0.75},
        {"image_id": 42, "category_id": 90, "bbox": [3.0, 4.0, 2.0, 2.0], "score": 0.5},
    ]
    path = tmp_path / "sub" / "preds.json"
    save_coco_results(path, results)
    loaded = load_coco_results(path, [90, 3], image_ids=[42, 7])
    assert set(loaded) == {42, 7} and len(loaded[7]["scores"]) == 0  # every GT image present
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(loaded[42][key], predictions[42][key])
    assert loaded[42]["boxes"].dtype == np.float32 and loaded[42]["labels"].dtype == np.int64


def test_prediction_id_mismatches_raise_naming_the_id(tmp_path):
    one = {"boxes": np.zeros((1, 4)), "scores": np.ones(1), "labels": np.array([0])}
    with pytest.raises(CocoFormatError, match="image id 8"):
        predictions_to_coco_results({8: one}, [1], image_ids=[7])
    with pytest.raises(CocoFormatError, match="label -1"):
        predictions_to_coco_results({7: {**one, "labels": np.array([-1])}}, [1])
    with pytest.raises(CocoFormatError, match="1 boxes, 2 scores"):
        predictions_to_coco_results({7: {**one, "scores": np.ones(2)}}, [1])
    with pytest.raises(CocoFormatError, match="non-finite"):
        predictions_to_coco_results({7: {**one, "boxes": np.full((1, 4), np.nan)}}, [1])
    entry = {"image_id": 7, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 0.5}
    # An off-by-one category id (0-based labels written as ids) is caught, not scored as AP 0.
    with pytest.raises(
        CocoFormatError, match="category id 4 .* not one of the dataset's \\[1, 2, 3\\]"
    ):
        coco_results_to_predictions([entry], [1, 2, 3])
    with pytest.raises(CocoFormatError, match="image id 7 .* not in the ground truth"):
        coco_results_to_predictions([{**entry, "category_id": 1}], [1], image_ids=[1, 2])
    with pytest.raises(CocoFormatError, match="entry 0 is not a detection"):
        coco_results_to_predictions([{"image_id": 7}], [1])
    with pytest.raises(CocoFormatError, match="entry 0: bbox must be 4 finite numbers"):
        coco_results_to_predictions([{**entry, "category_id": 1, "bbox": ["a", 0, 1, 1]}], [1])
    with pytest.raises(CocoFormatError, match="entry 0: bbox must be 4 finite numbers"):
        coco_results_to_predictions([{**entry, "category_id": 1, "bbox": [0, 0, 1]}], [1])


def test_load_coco_results_bad_files(tmp_path):
    with pytest.raises(CocoFormatError, match="not found"):
        load_coco_results(tmp_path / "missing.json", [1])
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(CocoFormatError, match="broken.json: not valid JSON"):
        load_coco_results(broken, [1])
    not_list = tmp_path / "dict.json"
    not_list.write_text('{"annotations": []}')
    with pytest.raises(CocoFormatError, match="expected a JSON list"):
        load_coco_results(not_list, [1])


def test_string_image_ids_resolve_by_file_stem_never_as_numbers():
    records = [
        SampleRecord("VOC2007/JPEGImages/000005.jpg", 10, 10, image_id=0, source_id="000005"),
        SampleRecord("VOC2007/JPEGImages/000007.jpg", 10, 10, image_id=5, source_id="000007"),
        SampleRecord("VOC2012/JPEGImages/000007.png", 10, 10, image_id=9, source_id="000007b"),
    ]
    aliases = image_id_aliases(records)
    assert aliases["000005"] == 0 and aliases["000005.jpg"] == 0 and aliases["000007b"] == 9
    assert aliases["000007"] == -1  # stem of two different images: ambiguous
    det = {"category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}
    out = coco_results_to_predictions(
        [{**det, "image_id": "000005"}], [1], image_ids=[0, 5, 9], image_aliases=aliases
    )
    # "000005" is image 0 (its stem), not image 5 (what int("000005") would say).
    assert len(out[0]["boxes"]) == 1 and len(out[5]["boxes"]) == 0
    with pytest.raises(CocoFormatError, match="'000007'.*ambiguous"):
        coco_results_to_predictions([{**det, "image_id": "000007"}], [1], image_aliases=aliases)
    with pytest.raises(CocoFormatError, match="'nope'.*matches no image"):
        coco_results_to_predictions([{**det, "image_id": "nope"}], [1], image_aliases=aliases)


GOOD = {"image_id": 7, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_id": 7.0}, "entry 2: image_id 7.0 must be an integer or an image name string"),
        ({"image_id": 7.9}, "entry 2: image_id 7.9 must be an integer"),
        ({"image_id": True}, "entry 2: image_id True must be an integer"),
        ({"image_id": None}, "entry 2: image_id None must be an integer"),
        ({"image_id": [7]}, "entry 2: image_id [7] must be an integer"),
        ({"category_id": 1.0}, "entry 2: category_id 1.0 must be an integer"),
        ({"category_id": True}, "entry 2: category_id True must be an integer"),
        ({"category_id": "1"}, "entry 2: category_id '1' must be an integer"),
        ({"bbox": [1, 2, -3, 4]}, "entry 2: bbox width and height must be >= 0"),
        ({"bbox": [1, 2, 3, -0.5]}, "entry 2: bbox width and height must be >= 0"),
        ({"bbox": [1, 2, 3, float("nan")]}, "entry 2: bbox must be 4 finite numbers"),
        ({"bbox": [1, float("inf"), 3, 4]}, "entry 2: bbox must be 4 finite numbers"),
        ({"bbox": [10**400, 2, 3, 4]}, "entry 2: bbox must be 4 finite numbers"),
        ({"bbox": [True, 2, 3, 4]}, "entry 2: bbox must be 4 finite numbers"),
        ({"bbox": "1234"}, "entry 2: bbox must be 4 finite numbers"),
        ({"bbox": {"x": 1, "y": 2, "w": 3, "h": 4}}, "entry 2: bbox must be 4 finite numbers"),
        ({"bbox": [1, 2, 3.5e38, 4]}, "entry 2: bbox [1, 2, 3.5e+38, 4] is beyond float32 range"),
        ({"score": float("nan")}, "entry 2: score must be a finite number, got nan"),
        ({"score": float("-inf")}, "entry 2: score must be a finite number"),
        ({"score": "0.5"}, "entry 2: score must be a finite number, got '0.5'"),
        ({"score": True}, "entry 2: score must be a finite number, got True"),
        ({"score": 10**400}, "entry 2: score must be a finite number"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_every_entry_is_validated_naming_file_and_entry(tmp_path, change, message):
    path = tmp_path / "preds.json"
    entries = [GOOD, {**GOOD, "bbox": [0, 0, 0, 0]}, {**GOOD, **change}, GOOD]
    path.write_text(
        json.dumps(entries)
    )  # NaN / Infinity literals and huge integers, as json writes them
    with pytest.raises(CocoFormatError) as info:
        load_coco_results(path, [1], image_ids=[7])
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_valid_entries_with_zero_size_boxes_and_string_ids_load(tmp_path):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "image_id": "x", "bbox": [5, 5, 0, 0], "score": 0}]))
    loaded = load_coco_results(path, [1], image_ids=[7], image_aliases={"x": 7})
    np.testing.assert_array_equal(loaded[7]["boxes"], [[1, 2, 4, 6], [5, 5, 5, 5]])
    np.testing.assert_array_equal(loaded[7]["scores"], [0.5, 0.0])


def test_deeply_nested_json_is_a_format_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CocoFormatError, match="deep.json: not valid JSON"):
        load_coco_results(path, [1])
