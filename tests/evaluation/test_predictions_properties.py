"""Property-based test of the predictions parser (`evaluate --predictions`): any file either
loads into finite float32 boxes with non-negative size, or raises `CocoFormatError` naming the
file; never another exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from detector.evaluation.coco_format import CocoFormatError, load_coco_results

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NUMBER = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True),
    st.floats(min_value=-1e3, max_value=1e3),
)
LEAF = st.one_of(
    st.none(), st.booleans(), NUMBER, st.text(max_size=6), st.sampled_from(["a", "7", "x.jpg"])
)
JSON = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
GOOD = {"image_id": 7, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}


@st.composite
def entries(draw: st.DrawFn) -> list[Any]:
    """Valid detections with some fields replaced by random JSON or plausible near-misses."""
    result = []
    for _ in range(draw(st.integers(0, 4))):
        entry: dict[str, Any] = dict(GOOD)
        for key in draw(
            st.lists(
                st.sampled_from(["image_id", "category_id", "bbox", "score", "extra"]), max_size=3
            )
        ):
            entry[key] = draw(
                st.one_of(
                    JSON,
                    st.lists(NUMBER, min_size=4, max_size=4),
                    st.sampled_from(
                        [7, 7.0, True, "a", "7", 1, 2, [0, 0, -1, 1], [0, 0, 1, float("nan")]]
                    ),
                )
            )
        if draw(st.booleans()):
            entry.pop(draw(st.sampled_from(sorted(GOOD))))
        result.append(entry if draw(st.integers(0, 9)) else draw(JSON))
    return result


@SETTINGS
@given(content=st.one_of(entries(), JSON), cut=st.none() | st.integers(0, 120))
@example(content=[{**GOOD, "bbox": [10**400, 0, 1, 1]}], cut=None)  # float() overflows
@example(content=[{**GOOD, "bbox": "1234"}], cut=None)  # a string is 4 characters, not 4 numbers
def test_predictions_file_loads_or_names_the_file(
    tmp_path: Path, content: Any, cut: int | None
) -> None:
    path = tmp_path / "predictions.json"
    text = json.dumps(content)
    path.write_text(text if cut is None else text[:cut], encoding="utf-8")
    try:
        predictions = load_coco_results(
            path, [1, 2], image_ids=[7, 8], image_aliases={"a": 7, "x.jpg": 8}
        )
    except CocoFormatError as error:
        assert str(error).startswith(f"{path}: "), str(error)
        return
    assert set(predictions) == {7, 8}
    for prediction in predictions.values():
        boxes = prediction["boxes"]
        assert boxes.dtype == np.float32 and np.isfinite(boxes).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all() and np.isfinite(prediction["scores"]).all()
        assert set(prediction["labels"].tolist()) <= {0, 1}
