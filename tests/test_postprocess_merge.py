"""`merge_detections` (NMS / greedy NMM, IoU / IOS) against a slow reference loop.

    .venv/bin/python -m pytest tests/test_postprocess_merge.py -q

Cases taking `backend` run on each greedy path (tests/conftest.py): the numba loop, the
pure-torch pass with default and 16-box blocks (suppression and ownership crossing block
borders).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.nms import clustered_boxes
from detector.postprocess import batched_nms, merge_detections

# --- the slow, readable reference on Python floats ------------------------------------------


def ref_overlap(a: list[float], b: list[float], metric: str) -> float:
    def area(box: list[float]) -> float:
        return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)

    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    denominator = min(area(a), area(b)) if metric == "ios" else area(a) + area(b) - inter
    return inter / max(denominator, 1e-7)


def reference_merge(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    metric: str,
    threshold: float,
) -> list[tuple[list[float], float, int, int]]:
    """Per class, best first: keep a box, take out every unassigned later box it matches;
    NMM grows the kept box to enclose them. Returns (box, score, label, index) by score."""
    box_list, score_list, label_list = boxes.tolist(), scores.tolist(), labels.tolist()
    order = sorted(range(len(box_list)), key=lambda i: (-score_list[i], i))
    taken = [False] * len(box_list)
    out = []
    for position, i in enumerate(order):
        if taken[i]:
            continue
        merged = list(box_list[i])
        for j in order[position + 1 :]:
            if taken[j] or label_list[j] != label_list[i]:
                continue
            if ref_overlap(box_list[i], box_list[j], metric) > threshold:
                taken[j] = True
                if method == "nmm":
                    merged = [
                        min(merged[0], box_list[j][0]),
                        min(merged[1], box_list[j][1]),
                        max(merged[2], box_list[j][2]),
                        max(merged[3], box_list[j][3]),
                    ]
        out.append((merged, score_list[i], label_list[i], i))
    return out


def assert_matches_reference(boxes, scores, labels, method, metric, threshold) -> None:
    result = merge_detections(
        boxes, scores, labels, method=method, match_metric=metric, match_threshold=threshold
    )
    expected = reference_merge(boxes, scores, labels, method, metric, threshold)
    assert result.keep.tolist() == [row[3] for row in expected]
    assert result.boxes.tolist() == [row[0] for row in expected]
    assert result.scores.tolist() == [row[1] for row in expected]
    assert result.labels.tolist() == [row[2] for row in expected]
    assert result.boxes.dtype == boxes.dtype and result.labels.dtype == torch.int64


# --- hand-computed cases ---------------------------------------------------------------------


def test_an_object_cut_by_a_tile_border_is_made_whole_by_nmm() -> None:
    # One 40x20 object, x 100..140, seen by two tiles split at x = 120: two halves
    # of 20x20, plus a full detection from the full-image pass with a lower score.
    boxes = torch.tensor([[100.0, 50, 120, 70], [118, 50, 140, 70], [101, 50, 139, 70]])
    scores = torch.tensor([0.9, 0.8, 0.6])
    labels = torch.tensor([1, 1, 1])
    # IOS of the halves: 2*20 / (20*20) = 0.1; IOS of the full box with the first: 19*20/400.
    merged = merge_detections(
        boxes, scores, labels, method="nmm", match_metric="ios", match_threshold=0.5
    )
    assert merged.keep.tolist() == [0, 1]  # the second half is not matched by the first
    assert merged.boxes.tolist() == [[100.0, 50, 139, 70], [118, 50, 140, 70]]
    # At IOS 0.05 the halves match too: one box, the enclosing one, with the best score.
    merged = merge_detections(
        boxes, scores, labels, method="nmm", match_metric="ios", match_threshold=0.05
    )
    assert merged.boxes.tolist() == [[100.0, 50, 140, 70]]
    assert merged.scores.tolist() == [pytest.approx(0.9)] and merged.keep.tolist() == [0]
    # NMS at the same setting drops the others and keeps the half.
    nms_merged = merge_detections(
        boxes, scores, labels, method="nms", match_metric="ios", match_threshold=0.05
    )
    assert nms_merged.boxes.tolist() == [[100.0, 50, 120, 70]]


def test_classes_never_merge_and_threshold_is_strict() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10]])
    scores = torch.tensor([0.5, 0.9, 0.7])
    labels = torch.tensor([0, 1, 0])
    merged = merge_detections(
        boxes, scores, labels, method="nmm", match_metric="ios", match_threshold=0.5
    )
    # IOS of box 0 and 2 is exactly 0.5: not above the threshold, both stay.
    assert merged.keep.tolist() == [1, 2, 0]
    merged = merge_detections(
        boxes, scores, labels, method="nmm", match_metric="ios", match_threshold=0.49
    )
    assert merged.keep.tolist() == [1, 2] and merged.boxes[1].tolist() == [0.0, 0, 15, 10]


def test_nms_with_iou_equals_batched_nms(backend: str) -> None:
    boxes, scores, labels = clustered_boxes(2000, generator=torch.Generator().manual_seed(3))
    for threshold in (0.3, 0.5, 0.7):
        merged = merge_detections(
            boxes, scores, labels, method="nms", match_metric="iou", match_threshold=threshold
        )
        assert torch.equal(merged.keep, batched_nms(boxes, scores, labels, threshold))
        assert torch.equal(merged.boxes, boxes[merged.keep])


def test_clustered_boxes_match_the_reference(backend: str) -> None:
    boxes, scores, labels = clustered_boxes(400, generator=torch.Generator().manual_seed(1))
    for method in ("nmm", "nms"):
        for metric in ("ios", "iou"):
            assert_matches_reference(boxes.double(), scores.double(), labels, method, metric, 0.5)


def test_empty_input_and_dtypes() -> None:
    merged = merge_detections(
        torch.zeros(0, 4, dtype=torch.float16), torch.zeros(0), torch.zeros(0, dtype=torch.int32)
    )
    assert merged.boxes.shape == (0, 4) and merged.boxes.dtype == torch.float16
    assert merged.keep.dtype == torch.int64 and merged.labels.dtype == torch.int64
    half = merge_detections(
        torch.tensor([[0.0, 0, 10, 10], [1, 0, 10, 10]], dtype=torch.float16),
        torch.tensor([0.9, 0.8], dtype=torch.float16),
        torch.tensor([0, 0]),
    )
    assert half.boxes.dtype == torch.float16 and half.boxes.tolist() == [[0.0, 0, 10, 10]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "wbf"}, "merge method must be one of nmm, nms"),
        ({"match_metric": "giou"}, "match metric must be one of ios, iou"),
        ({"match_threshold": 1.5}, r"match_threshold must be in \[0, 1\]"),
        ({"match_threshold": -0.1}, r"match_threshold must be in \[0, 1\]"),
    ],
)
def test_bad_settings_raise(kwargs: dict, message: str) -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10]])
    with pytest.raises(ValueError, match=message):
        merge_detections(boxes, torch.tensor([0.5]), torch.tensor([0]), **kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        merge_detections(torch.zeros(3, 5), torch.zeros(3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="scores must have shape"):
        merge_detections(torch.zeros(3, 4), torch.zeros(2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        merge_detections(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3))


def test_inputs_are_not_modified() -> None:
    boxes, scores, labels = clustered_boxes(100, generator=torch.Generator().manual_seed(2))
    copies = boxes.clone(), scores.clone(), labels.clone()
    merge_detections(boxes, scores, labels, method="nmm", match_metric="ios", match_threshold=0.1)
    assert all(torch.equal(a, b) for a, b in zip((boxes, scores, labels), copies, strict=True))


# --- property-based: random and degenerate boxes, many ties, against the reference ---------

# Integer coordinates (as float64) keep areas and overlaps exact, so the compiled loop, the
# torch pass and the reference agree bit for bit even exactly at a threshold.
COORD = st.integers(-50, 400)
SIDE = st.integers(-20, 200)  # negative: inverted; 0: zero area


@st.composite
def scored_boxes(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    count = draw(st.integers(0, 40))
    rows = [
        [x, y, x + w, y + h]
        for x, y, w, h in (draw(st.tuples(COORD, COORD, SIDE, SIDE)) for _ in range(count))
    ]
    if rows and draw(st.booleans()):  # parts cut from a box, as tile borders make them
        for _ in range(draw(st.integers(1, 6))):
            x1, y1, x2, y2 = rows[draw(st.integers(0, len(rows) - 1))]
            cut = draw(st.integers(min(x1, x2), max(x1, x2)))
            rows.append([x1, y1, cut, y2] if draw(st.booleans()) else [cut, y1, x2, y2])
    scores = [draw(st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0])) for _ in rows]
    labels = [draw(st.integers(0, 2)) for _ in rows]
    return _as_tensors(rows, scores, labels)


def _as_tensors(rows: list, scores: list, labels: list) -> tuple[torch.Tensor, ...]:
    return (
        torch.tensor(rows, dtype=torch.float64).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float64),
        torch.tensor(labels, dtype=torch.int64),
    )


def test_defaults_are_the_slicing_defaults() -> None:
    import inspect

    from detector import defaults

    parameters = inspect.signature(merge_detections).parameters
    assert (
        parameters["method"].default,
        parameters["match_metric"].default,
        parameters["match_threshold"].default,
    ) == (
        defaults.DEFAULT_SLICE_MERGE,
        defaults.DEFAULT_SLICE_MATCH_METRIC,
        defaults.DEFAULT_SLICE_MATCH_THRESHOLD,
    )
    options = defaults.SlicingOptions(size=64)
    assert (options.merge, options.match_metric, options.match_threshold) == ("nms", "iou", 0.5)


def test_detections_of_many_tiles_match_the_reference(backend: str) -> None:
    """Float boxes spread over a large image, as tiles give them (the compiled loop only
    examines an x1 window per kept box): every method and metric equals the reference."""
    import numpy as np

    from benchmarks.slicing import simulate_scene

    _, boxes, scores, labels = simulate_scene(
        np.random.default_rng(4), size=2048, tile=256, small=150, large=3, false_per_tile=3
    )
    assert len(boxes) > 300
    for method in ("nmm", "nms"):
        for metric in ("ios", "iou"):
            assert_matches_reference(boxes, scores, labels, method, metric, 0.5)


@st.composite
def spread_boxes(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Small boxes over a wide image (a group spanning > 4x its widest box: the compiled
    loop's x1-window path), with near-copies and border cuts."""
    count = draw(st.integers(1, 40))
    rows = [
        [x, y, x + w, y + h]
        for x, y, w, h in (
            draw(
                st.tuples(
                    st.integers(0, 3000),
                    st.integers(0, 300),
                    st.integers(-5, 80),
                    st.integers(-5, 80),
                )
            )
            for _ in range(count)
        )
    ]
    for _ in range(draw(st.integers(0, 10))):
        x1, y1, x2, y2 = rows[draw(st.integers(0, len(rows) - 1))]
        shift = draw(st.integers(-3, 3))
        rows.append(
            [x1 + shift, y1, x2 + shift, y2]
            if draw(st.booleans())
            else [x1, y1, (x1 + x2) // 2, y2]
        )
    rows.append([0, 0, 1, 1])
    rows.append([2999, 0, 3100, 50])  # the span: > 4x the widest box
    scores = [draw(st.sampled_from([0.1, 0.5, 0.9, 1.0])) for _ in rows]
    labels = [draw(st.integers(0, 1)) for _ in rows]
    return _as_tensors(rows, scores, labels)


@pytest.mark.parametrize("boxes", [scored_boxes(), spread_boxes()], ids=["random", "spread"])
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    method=st.sampled_from(["nmm", "nms"]),
    metric=st.sampled_from(["ios", "iou"]),
    threshold=st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]),
)
def test_merge_matches_the_reference(
    backend: str, boxes, data, method: str, metric: str, threshold: float
) -> None:
    """Random, degenerate and border-cut boxes (`scored_boxes`), and small boxes spread over
    a wide image (`spread_boxes`: the compiled loop's x1-window path)."""
    assert_matches_reference(*data.draw(boxes), method, metric, threshold)
