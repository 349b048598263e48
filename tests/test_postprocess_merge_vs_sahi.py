"""`merge_detections` against SAHI's own `GREEDYNMM` and `NMS` postprocess (sahi 0.12.8) on
the same per-tile predictions.

    .venv/bin/python -m pytest tests/test_postprocess_merge_vs_sahi.py -q

`sahi` is a test reference that tools/bootstrap.py installs (TEST_REFERENCES, without its
dependencies: its metadata asks for opencv-python beside our opencv-python-headless); an
ImportError here means the environment was not made by tools/bootstrap.py.

Where the two are defined to agree they agree exactly: NMS keeps the same boxes, and the
greedy NMM pass forms the same groups (each kept box and the boxes it takes out). Two
documented differences (docs/slicing.md) are pinned down by hand-built cases and measured
on simulated scenes: SAHI matches at `>=` the threshold (we use `>`, as `nms`), and SAHI
re-checks each taken-out box against the growing merged box and drops the ones that no
longer match (neither fused nor kept), where we fuse every box of the group. The random
scenes keep every overlap at least `MARGIN` away from the threshold (the `>=`/`>`
difference, and float32 against float64 rounding, are then out of play) and give distinct
scores within a class (SAHI breaks score ties by coordinates, we by input index).
"""

from __future__ import annotations

import numpy as np
import pytest
import sahi  # noqa: F401  (the reference itself: no skip, CI installs it)
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sahi.postprocess.backends import set_postprocess_backend

from benchmarks.sahi_merge import object_predictions, sahi_greedy_groups, sahi_postprocess
from benchmarks.slicing import simulate_scene
from detector._postprocess.greedy import greedy_owner
from detector.postprocess import merge_detections

# Overlaps within this of the threshold are avoided in the random scenes (see above).
MARGIN = 1e-4


@pytest.fixture(params=["numpy", "numba"])
def sahi_backend(request: pytest.FixtureRequest):
    """Each of SAHI's CPU postprocess backends (its default here resolves to numba)."""
    set_postprocess_backend(request.param)
    yield request.param
    set_postprocess_backend("auto")


# --- the two sides ---------------------------------------------------------------------------


def sahi_groups(boxes, scores, labels, metric: str, threshold: float) -> dict[int, list[int]]:
    """SAHI's greedy NMM pass: kept input index -> the indices it takes out, by score."""
    return sahi_greedy_groups(boxes, scores, labels, match_metric=metric, match_threshold=threshold)


def our_groups(boxes, scores, labels, metric: str, threshold: float) -> dict[int, list[int]]:
    """Our greedy pass in `merge_detections`' order (class, then decreasing score, then
    index): kept input index -> the indices it takes out, by score."""
    order = sorted(range(len(boxes)), key=lambda i: (int(labels[i]), -float(scores[i]), i))
    index = torch.tensor(order, dtype=torch.int64)
    owner = greedy_owner(boxes[index], labels[index], threshold, ios=metric == "ios").tolist()
    groups: dict[int, list[int]] = {order[p]: [] for p, kept in enumerate(owner) if kept == p}
    for position, kept in enumerate(owner):
        if kept != position:
            groups[order[kept]].append(order[position])
    return groups


def overlap(a: list[float], b: list[float], metric: str) -> float:
    """IoU or IOS (intersection over the smaller area) of two xyxy boxes, in Python floats."""
    width = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    height = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = width * height
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    denominator = min(area_a, area_b) if metric == "ios" else area_a + area_b - inter
    return inter / denominator if denominator > 0 else 0.0


def enclosing(a: list[float], b: list[float]) -> list[float]:
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def sahi_regrow(box_list, groups, metric: str, threshold: float):
    """SAHI's documented re-check, as a slow loop: each group's box grows by the taken-out
    boxes that still match it (`>=`); the others are dropped. Returns kept index -> (box,
    number dropped), and the smallest distance of a re-check overlap to the threshold."""
    out, closest = {}, float("inf")
    for kept, taken in groups.items():
        grown, dropped = list(box_list[kept]), 0
        for index in taken:
            value = overlap(grown, box_list[index], metric)
            closest = min(closest, abs(value - threshold))
            if value >= threshold:
                grown = enclosing(grown, box_list[index])
            else:
                dropped += 1
        out[kept] = (grown, dropped)
    return out, closest


def closest_to_threshold(boxes, labels, metric: str, threshold: float) -> float:
    """Smallest |overlap - threshold| over pairs of one class (float64)."""
    box_list, label_list = boxes.double().tolist(), labels.tolist()
    closest = float("inf")
    for i in range(len(box_list)):
        for j in range(i + 1, len(box_list)):
            if label_list[i] == label_list[j]:
                value = overlap(box_list[i], box_list[j], metric)
                closest = min(closest, abs(value - threshold))
    return closest


def scores_distinct_per_class(scores, labels) -> bool:
    pairs = set(zip(labels.tolist(), scores.tolist(), strict=True))
    return len(pairs) == len(scores)


def scene(seed: int, *, size: int, tile: int, small: int, large: int, false_per_tile: int):
    """Per-tile predictions of a sliced image (`simulate_scene`: objects cut by tile borders,
    five classes, the full-image pass), clipped to the image (SAHI clamps negative
    coordinates: both sides get boxes that need no clamping), with each score replaced by
    its rank in (0, 1]: the same order, no ties (float32 draws repeat among thousands)."""
    _, boxes, scores, labels = simulate_scene(
        np.random.default_rng(seed),
        size=size,
        tile=tile,
        small=small,
        large=large,
        false_per_tile=false_per_tile,
    )
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = torch.empty_like(scores)
    ranked[order] = 1 - torch.arange(len(scores), dtype=torch.float32) / (len(scores) + 1)
    return boxes.clamp(0, size), ranked, labels


def as_rows(boxes, scores, labels) -> list[tuple[list[float], float, int]]:
    return list(
        zip(boxes.double().tolist(), scores.double().tolist(), labels.tolist(), strict=True)
    )


def compare(boxes, scores, labels, metric: str, threshold: float) -> dict[str, int]:
    """Every assertion of the comparison on one set of predictions; returns counts for the
    callers' non-vacuity checks."""
    # NMS: the same boxes, scores and labels, by decreasing score.
    ours = merge_detections(
        boxes, scores, labels, method="nms", match_metric=metric, match_threshold=threshold
    )
    predictions = object_predictions(boxes, scores, labels)
    theirs = sahi_postprocess(
        predictions, method="nms", match_metric=metric, match_threshold=threshold
    )
    assert as_rows(ours.boxes, ours.scores, ours.labels) == as_rows(*theirs)

    # Greedy NMM: the same groups.
    groups = sahi_groups(boxes, scores, labels, metric, threshold)
    assert our_groups(boxes, scores, labels, metric, threshold) == groups

    # Greedy NMM output: ours encloses every group; SAHI's equals its re-check loop, so the
    # two are equal exactly for the groups whose re-check drops nothing.
    box_list = boxes.double().tolist()
    regrown, closest = sahi_regrow(box_list, groups, metric, threshold)
    assert closest > MARGIN, "a re-check overlap sits on the threshold: pick other data"
    ours = merge_detections(
        boxes, scores, labels, method="nmm", match_metric=metric, match_threshold=threshold
    )
    theirs = sahi_postprocess(
        predictions, method="nmm", match_metric=metric, match_threshold=threshold
    )
    score_list, label_list = scores.double().tolist(), labels.tolist()
    expected_ours, expected_theirs = [], []
    for kept in ours.keep.tolist():
        whole = box_list[kept]
        for index in groups[kept]:
            whole = enclosing(whole, box_list[index])
        expected_ours.append((whole, score_list[kept], label_list[kept]))
        expected_theirs.append((regrown[kept][0], score_list[kept], label_list[kept]))
    assert as_rows(ours.boxes, ours.scores, ours.labels) == expected_ours
    assert as_rows(*theirs) == expected_theirs
    unchanged = [kept for kept, (_, dropped) in regrown.items() if dropped == 0]
    ours_rows = as_rows(ours.boxes, ours.scores, ours.labels)
    ours_by_kept = dict(zip(ours.keep.tolist(), ours_rows, strict=True))
    # Scores are distinct within a class, so (score, label) names a SAHI output.
    theirs_by_score = {(row[1], row[2]): row for row in as_rows(*theirs)}
    for kept in unchanged:
        assert ours_by_kept[kept] == theirs_by_score[score_list[kept], label_list[kept]]
    return {
        "groups": sum(1 for taken in groups.values() if taken),
        "rechecked_away": sum(1 for _, dropped in regrown.values() if dropped),
    }


# --- simulated sliced scenes -----------------------------------------------------------------


def test_sliced_scene_agrees_with_sahi(sahi_backend: str, backend: str) -> None:
    """A 1024 px image in 256 px tiles (overlap 0.2): every object a tile sees at least 15%
    of, cut by its borders and jittered; five classes; the full pass's large objects. Every
    metric at thresholds 0.3, 0.5, 0.7."""
    boxes, scores, labels = scene(0, size=1024, tile=256, small=60, large=3, false_per_tile=2)
    assert scores_distinct_per_class(scores, labels)
    totals = {"groups": 0, "rechecked_away": 0}
    for metric in ("ios", "iou"):
        for threshold in (0.3, 0.5, 0.7):
            assert closest_to_threshold(boxes, labels, metric, threshold) > MARGIN
            for key, count in compare(boxes, scores, labels, metric, threshold).items():
                totals[key] += count
    # Not vacuous: 151 groups took boxes out; SAHI's re-check dropped a box from 2 of them
    # (IoU 0.3 and 0.5), whose outputs differ from ours as its re-check loop says.
    assert totals == {"groups": 151, "rechecked_away": 2}


def test_many_tiles_form_the_same_groups_as_sahi(sahi_backend: str) -> None:
    """~10.7k predictions of 100 tiles (the merge benchmark's scene): more than 2000 of a
    class, where SAHI switches to its sparse (STRtree) pass."""
    boxes, scores, labels = scene(0, size=4193, tile=512, small=5200, large=0, false_per_tile=25)
    assert torch.bincount(labels).max() >= 2000
    assert scores_distinct_per_class(scores, labels)
    for metric in ("ios", "iou"):
        groups = sahi_groups(boxes, scores, labels, metric, 0.5)
        assert our_groups(boxes, scores, labels, metric, 0.5) == groups
        assert sum(1 for taken in groups.values() if taken) > 1000


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(260, 700),
    tile=st.sampled_from([128, 160, 256]),
    small=st.integers(0, 25),
    large=st.integers(0, 2),
    metric=st.sampled_from(["ios", "iou"]),
    threshold=st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]),
)
def test_random_sliced_scenes_agree_with_sahi(
    seed: int, size: int, tile: int, small: int, large: int, metric: str, threshold: float
) -> None:
    """Scenes of other sizes, tiles and densities, at thresholds from 0.1 to 0.9; those
    with an overlap within `MARGIN` of the threshold are left out (the `>=`/`>` cases)."""
    boxes, scores, labels = scene(
        seed, size=size, tile=tile, small=small, large=large, false_per_tile=1
    )
    assert scores_distinct_per_class(scores, labels)
    assume(closest_to_threshold(boxes, labels, metric, threshold) > MARGIN)
    groups = sahi_groups(boxes, scores, labels, metric, threshold)
    assume(sahi_regrow(boxes.double().tolist(), groups, metric, threshold)[1] > MARGIN)
    compare(boxes, scores, labels, metric, threshold)


# --- the documented differences, by hand -----------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "second", "sahi_merged"),
    [
        # IoU of [0, 0, 10, 10] and [0, 0, 10, 5]: 50 / 100, exactly 0.5.
        ("iou", [0.0, 0, 10, 5], [0.0, 0, 10, 10]),
        # IOS of [0, 0, 10, 10] and [5, 0, 15, 10]: 50 / 100, exactly 0.5.
        ("ios", [5.0, 0, 15, 10], [0.0, 0, 15, 10]),
    ],
)
def test_a_box_exactly_at_the_threshold_matches_in_sahi_only(
    metric: str, second: list[float], sahi_merged: list[float]
) -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], second])
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([3, 3])
    predictions = object_predictions(boxes, scores, labels)
    for method, sahi_box in (("nmm", sahi_merged), ("nms", [0.0, 0, 10, 10])):
        theirs = sahi_postprocess(
            predictions, method=method, match_metric=metric, match_threshold=0.5
        )
        assert theirs[0].tolist() == [sahi_box]  # >=: one box
        ours = merge_detections(
            boxes, scores, labels, method=method, match_metric=metric, match_threshold=0.5
        )
        assert ours.boxes.tolist() == boxes.tolist()  # >: both stay
        # Just below the threshold, ours matches too and gives SAHI's box.
        ours = merge_detections(
            boxes, scores, labels, method=method, match_metric=metric, match_threshold=0.4999
        )
        assert ours.boxes.tolist() == [sahi_box]
    assert sahi_groups(boxes, scores, labels, metric, 0.5) == {0: [1]}
    assert our_groups(boxes, scores, labels, metric, 0.5) == {0: [], 1: []}


def test_a_box_sahi_drops_on_its_recheck_is_fused_here() -> None:
    """An object seen by three tiles: the best view [10, 10, 20, 20] and two longer views
    reaching down and up. Each matches the best view at IoU 100 / 180 = 0.56, so the greedy
    pass takes both out (same groups on both sides). SAHI then fuses the first into
    [10, 10, 20, 28] and re-checks the second against that: IoU 100 / 260 = 0.38 < 0.5, so
    SAHI drops it, neither fused nor kept. We fuse the whole group."""
    boxes = torch.tensor([[10.0, 10, 20, 20], [10, 10, 20, 28], [10, 2, 20, 20]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 1])
    assert sahi_groups(boxes, scores, labels, "iou", 0.5) == {0: [1, 2]}
    assert our_groups(boxes, scores, labels, "iou", 0.5) == {0: [1, 2]}
    predictions = object_predictions(boxes, scores, labels)
    # With IOS the second view still matches the grown box (100 / 180 = 0.56): kept by both.
    for metric, sahi_box in (("iou", [10.0, 10, 20, 28]), ("ios", [10.0, 2, 20, 28])):
        theirs = sahi_postprocess(
            predictions, method="nmm", match_metric=metric, match_threshold=0.5
        )
        assert theirs[0].tolist() == [sahi_box]
        assert theirs[1].tolist() == [pytest.approx(0.9)]
        ours = merge_detections(
            boxes, scores, labels, method="nmm", match_metric=metric, match_threshold=0.5
        )
        assert ours.boxes.tolist() == [[10.0, 2, 20, 28]] and ours.keep.tolist() == [0]
    # The slow model of SAHI's re-check used on the random scenes says the same.
    regrown, _ = sahi_regrow(boxes.tolist(), {0: [1, 2]}, "iou", 0.5)
    assert regrown == {0: ([10.0, 10, 20, 28], 1)}


def test_sahis_recheck_keeps_a_box_exactly_at_the_threshold() -> None:
    """The re-check matches at `>=` too: [10, 8, 20, 17] meets the grown box [10, 10, 20, 22]
    at IoU 70 / 140, exactly 0.5, and is fused; the result is then our enclosing box."""
    boxes = torch.tensor([[10.0, 10, 20, 20], [10, 10, 20, 22], [10, 8, 20, 17]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 0])
    assert sahi_groups(boxes, scores, labels, "iou", 0.5) == {0: [1, 2]}
    theirs = sahi_postprocess(
        object_predictions(boxes, scores, labels),
        method="nmm",
        match_metric="iou",
        match_threshold=0.5,
    )
    ours = merge_detections(
        boxes, scores, labels, method="nmm", match_metric="iou", match_threshold=0.5
    )
    assert theirs[0].tolist() == ours.boxes.tolist() == [[10.0, 8, 20, 22]]
    regrown, closest = sahi_regrow(boxes.tolist(), {0: [1, 2]}, "iou", 0.5)
    assert regrown == {0: ([10.0, 8, 20, 22], 0)} and closest == 0.0


def test_scores_and_labels_of_a_merged_group_are_the_kept_boxes() -> None:
    """The kept box scores highest in its group, so SAHI's max score and higher-score
    category are the kept box's, as ours; other classes are never merged (class-aware)."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12], [0, 0, 10, 11], [100, 100, 110, 110]])
    scores, labels = torch.tensor([0.6, 0.8, 0.7, 0.95]), torch.tensor([2, 2, 0, 2])
    predictions = object_predictions(boxes, scores, labels)
    theirs = sahi_postprocess(predictions, method="nmm", match_metric="iou", match_threshold=0.5)
    ours = merge_detections(
        boxes, scores, labels, method="nmm", match_metric="iou", match_threshold=0.5
    )
    expected = [
        ([100.0, 100, 110, 110], 0.95, 2),
        ([0.0, 0, 10, 12], 0.8, 2),
        ([0.0, 0, 10, 11], 0.7, 0),
    ]
    for rows in (as_rows(*theirs), as_rows(ours.boxes, ours.scores, ours.labels)):
        assert [(box, pytest.approx(score), label) for box, score, label in rows] == expected
