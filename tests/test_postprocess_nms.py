"""NMS, batched NMS and multi-image NMS against slow, readable reference loops.

    .venv/bin/python -m pytest tests/test_postprocess_nms.py -q

Every CPU case runs on each greedy backend (the `backend` fixture, tests/conftest.py):
the pure-torch pass (default blocks and 16-box blocks, so suppression crosses block
borders) and the numba loop when installed.
"""

from __future__ import annotations

import functools

import pytest
import torch

from benchmarks.nms import clustered_boxes
from detector.postprocess import batched_nms, multi_image_nms, nms, soft_nms

THRESHOLDS = [0.2, 0.5, 0.8]


# --- slow, readable references on Python floats -------------------------------------------


def ref_iou(a: list[float], b: list[float]) -> float:
    def area(box: list[float]) -> float:
        return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)

    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(
        min(a[3], b[3]) - max(a[1], b[1]), 0.0
    )
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def by_score(indices: list[int], scores: list[float]) -> list[int]:
    """Decreasing score, ties by lower index (Python's sort is stable)."""
    return sorted(sorted(indices), key=lambda i: -scores[i])


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """Sort by score; keep the best remaining box; drop those overlapping it; repeat."""
    box_list, score_list = boxes.double().tolist(), scores.double().tolist()
    order = by_score(list(range(len(box_list))), score_list)
    suppressed = [False] * len(box_list)
    keep = []
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[position + 1 :]:
            if not suppressed[j] and ref_iou(box_list[i], box_list[j]) > iou_threshold:
                suppressed[j] = True
    return keep


def reference_grouped_nms(boxes, scores, groups: list, iou_threshold: float) -> list[int]:
    """NMS per group (class, or image and class), merged by score."""
    kept = []
    for group in sorted(set(groups)):
        members = [i for i, g in enumerate(groups) if g == group]
        kept += [members[k] for k in reference_nms(boxes[members], scores[members], iou_threshold)]
    return by_score(kept, scores.double().tolist())


def companion(box: list[float], iou: float) -> list[float]:
    """The box shifted right so that its IoU with `box` is `iou`: (w - d) / (w + d) = iou."""
    shift = (box[2] - box[0]) * (1 - iou) / (1 + iou)
    return [box[0] + shift, box[1], box[2] + shift, box[3]]


@functools.cache
def scene(seed: int, iou_threshold: float, num_boxes: int = 150, image_size: float = 300.0):
    """Clustered boxes plus companions at IoU threshold +- 0.002 of ten of them (scored lower).

    Odd seeds round scores to 0.1 so many are tied. Returns (boxes, scores, labels).
    """
    generator = torch.Generator().manual_seed(seed)
    boxes, scores, labels = clustered_boxes(
        num_boxes, num_objects=6, num_classes=3, image_size=image_size, generator=generator
    )
    picks = torch.randperm(num_boxes, generator=generator)[:10].tolist()
    extra = [
        companion(boxes[i].tolist(), iou_threshold + (0.002 if k % 2 else -0.002))
        for k, i in enumerate(picks)
    ]
    boxes = torch.cat((boxes, torch.tensor(extra)))
    scores = torch.cat((scores, scores[picks] * 0.99))
    labels = torch.cat((labels, labels[picks]))
    if seed % 2:
        scores = (scores * 10).round() / 10
    return boxes, scores, labels


def assert_indices(result: torch.Tensor, expected: list[int]) -> None:
    assert result.dtype == torch.int64
    assert result.tolist() == expected


# --- exactness against the reference loop ----------------------------------------------------


@functools.cache
def scene_reference(seed: int, iou_threshold: float) -> tuple[list[int], list[int]]:
    """Reference nms/batched_nms of `scene(seed, iou_threshold)`, computed once for all backends."""
    boxes, scores, labels = scene(seed, iou_threshold)
    return (
        reference_nms(boxes, scores, iou_threshold),
        reference_grouped_nms(boxes, scores, labels.tolist(), iou_threshold),
    )


@pytest.mark.parametrize("iou_threshold", THRESHOLDS)
@pytest.mark.parametrize("seed", range(10))
def test_nms_and_batched_nms_match_reference_loop(
    seed: int, iou_threshold: float, backend: str
) -> None:
    boxes, scores, labels = scene(seed, iou_threshold)
    expected, expected_batched = scene_reference(seed, iou_threshold)
    for dtype in (torch.float32, torch.float64):
        assert_indices(nms(boxes.to(dtype), scores, iou_threshold), expected)
        assert_indices(
            batched_nms(boxes.to(dtype), scores, labels, iou_threshold), expected_batched
        )


@pytest.mark.parametrize("iou_threshold", THRESHOLDS)
def test_pairs_just_above_threshold_suppress_and_just_below_do_not(
    iou_threshold: float, backend: str
) -> None:
    box = [10.0, 20.0, 50.0, 45.0]
    scores = torch.tensor([0.9, 0.8])
    for delta, expected in [(0.002, [0]), (-0.002, [0, 1]), (1e-5, [0]), (-1e-5, [0, 1])]:
        pair = torch.tensor([box, companion(box, iou_threshold + delta)])
        assert (ref_iou(*pair.double().tolist()) > iou_threshold) == (delta > 0)
        assert_indices(nms(pair, scores, iou_threshold), expected)
        assert_indices(batched_nms(pair, scores, torch.tensor([4, 4]), iou_threshold), expected)
        assert_indices(batched_nms(pair, scores, torch.tensor([4, 5]), iou_threshold), [0, 1])


def test_hand_computed_cases(backend: str) -> None:
    # A and B overlap 0.25, B and C overlap 0.25, A and C not at all.
    chain = torch.tensor([[0.0, 0.0, 10.0, 10.0], [6.0, 0.0, 16.0, 10.0], [12.0, 0.0, 22.0, 10.0]])
    assert_indices(nms(chain, torch.tensor([0.9, 0.8, 0.7]), 0.2), [0, 2])  # B goes, so C stays
    assert_indices(nms(chain, torch.tensor([0.9, 0.8, 0.7]), 0.3), [0, 1, 2])
    assert_indices(nms(chain, torch.tensor([0.5, 0.9, 0.7]), 0.2), [1])  # B first takes both
    # IoU exactly 0.5 is not "greater than" 0.5
    half = torch.tensor([[0.0, 0.0, 4.0, 1.0], [0.0, 0.0, 2.0, 1.0]])
    assert_indices(nms(half, torch.tensor([0.6, 0.7]), 0.5), [1, 0])
    assert_indices(nms(half, torch.tensor([0.6, 0.7]), 0.49), [1])
    # zero-area boxes neither suppress nor are suppressed
    points = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]])
    assert_indices(nms(points, torch.tensor([0.9, 0.8]), 0.0), [0, 1])


def test_tied_scores_are_deterministic_lower_index_first(backend: str) -> None:
    boxes, _, labels = scene(0, 0.5)
    scores = torch.full((boxes.shape[0],), 0.5)
    expected = reference_nms(boxes, scores, 0.5)
    assert expected[:3] == sorted(expected[:3])
    for _ in range(3):
        assert_indices(nms(boxes, scores, 0.5), expected)
    duplicates = torch.tensor([[1.0, 1.0, 9.0, 9.0]] * 5)
    assert_indices(nms(duplicates, torch.ones(5), 0.5), [0])
    assert_indices(
        batched_nms(duplicates, torch.ones(5), torch.tensor([2, 1, 2, 1, 3]), 0.5), [0, 1, 4]
    )


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_equals_nms_per_class(seed: int, backend: str) -> None:
    boxes, scores, labels = scene(seed, 0.5)
    per_class = []
    for label in labels.unique():
        members = torch.nonzero(labels == label).squeeze(1)
        per_class += members[nms(boxes[members], scores[members], 0.5)].tolist()
    assert_indices(batched_nms(boxes, scores, labels, 0.5), by_score(per_class, scores.tolist()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_what_float32_keeps_up_to_4k_pixels(
    dtype: torch.dtype, backend: str
) -> None:
    generator = torch.Generator().manual_seed(7)
    boxes, scores, _ = clustered_boxes(200, num_objects=6, image_size=4096.0, generator=generator)
    labels = torch.randint(80, (200,), generator=generator)  # offsets of 80 x 4096 overflow fp16
    half_boxes, half_scores = boxes.to(dtype), scores.to(dtype)
    exact_boxes, exact_scores = half_boxes.float(), half_scores.float()  # the same values
    image_index = torch.arange(200) % 3
    for threshold in THRESHOLDS:
        expected = nms(exact_boxes, exact_scores, threshold)
        assert torch.equal(nms(half_boxes, half_scores, threshold), expected)
        expected = batched_nms(exact_boxes, exact_scores, labels, threshold)
        assert torch.equal(batched_nms(half_boxes, half_scores, labels, threshold), expected)
        half = multi_image_nms(
            half_boxes, half_scores, labels, image_index, threshold, num_images=3
        )
        full = multi_image_nms(
            exact_boxes, exact_scores, labels, image_index, threshold, num_images=3
        )
        assert all(torch.equal(a, b) for a, b in zip(half, full, strict=True))


def reference_multi_image_nms(
    boxes,
    scores,
    labels,
    image_index,
    iou_threshold,
    *,
    num_images,
    score_threshold,
    max_det,
    class_agnostic,
) -> list[list[int]]:
    """Per image: drop low scores, NMS per class (or all together), best max_det."""
    results = []
    for image in range(num_images):
        members = [
            i
            for i in range(len(scores))
            if image_index[i] == image and scores[i] >= score_threshold
        ]
        groups = [0 if class_agnostic else int(labels[i]) for i in members]
        kept = [
            members[k]
            for k in reference_grouped_nms(boxes[members], scores[members], groups, iou_threshold)
        ]
        results.append(kept if max_det is None else kept[:max_det])
    return results


@pytest.mark.parametrize(
    "score_threshold, max_det, class_agnostic",
    [(0.0, None, False), (0.5, 5, False), (0.35, 12, True), (0.0, 0, False), (2.0, 100, False)],
)
@pytest.mark.parametrize("seed", range(3))
def test_multi_image_nms_equals_per_image_per_class_reference(
    seed: int, score_threshold: float, max_det: int | None, class_agnostic: bool, backend: str
) -> None:
    parts = [scene(seed * 10 + image, 0.5, num_boxes=50) for image in range(4)]
    boxes, scores, labels = (torch.cat(tensors) for tensors in zip(*parts, strict=True))
    image_index = torch.arange(4).repeat_interleave(60)
    image_index[image_index == 2] = 3  # image 2 has no candidates at all
    options = dict(
        num_images=5,
        score_threshold=score_threshold,
        max_det=max_det,
        class_agnostic=class_agnostic,
    )
    result = multi_image_nms(boxes, scores, labels, image_index, 0.5, **options)
    expected = reference_multi_image_nms(boxes, scores, labels, image_index, 0.5, **options)
    assert len(result) == 5
    for per_image, expected_image in zip(result, expected, strict=True):
        assert_indices(per_image, expected_image)


# --- empty, broken and untouched inputs -------------------------------------------------------


def test_empty_inputs_give_empty_int64(backend: str) -> None:
    boxes, scores, labels = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    assert_indices(nms(boxes, scores, 0.5), [])
    assert_indices(batched_nms(boxes.half(), scores, labels, 0.5), [])
    result = multi_image_nms(boxes, scores, labels, labels, 0.5, num_images=3)
    assert [r.tolist() for r in result] == [[], [], []] and all(
        r.dtype == torch.int64 for r in result
    )
    keep, new_scores = soft_nms(boxes, scores)
    assert keep.dtype == torch.int64 and keep.shape == (0,) and new_scores.shape == (0,)
    low = multi_image_nms(
        torch.ones(2, 4),
        torch.zeros(2),
        labels[:0].new_zeros(2),
        labels[:0].new_zeros(2),
        0.5,
        num_images=1,
        score_threshold=0.5,
    )
    assert low[0].tolist() == []


def test_wrong_inputs_raise_with_a_clear_message() -> None:
    boxes, scores, labels = torch.rand(3, 4), torch.rand(3), torch.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        nms(torch.rand(3, 5), scores, 0.5)
    with pytest.raises(ValueError, match=r"scores must have shape \[3\]"):
        nms(boxes, torch.rand(2), 0.5)
    with pytest.raises(ValueError, match=r"scores must have shape \[3\]"):
        soft_nms(boxes, torch.rand(3, 1))
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        nms(boxes, scores, 1.5)
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        batched_nms(boxes, scores, labels.float(), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \[3\]"):
        batched_nms(boxes, scores, labels[:2], 0.5)
    with pytest.raises(ValueError, match=r"image_index must lie in \[0, 2\)"):
        multi_image_nms(boxes, scores, labels, torch.tensor([0, 1, 2]), 0.5, num_images=2)
    with pytest.raises(ValueError, match="max_det"):
        multi_image_nms(boxes, scores, labels, labels, 0.5, num_images=1, max_det=-1)
    with pytest.raises(ValueError, match="method must be"):
        soft_nms(boxes, scores, method="hard")


def test_inputs_are_not_modified(backend: str) -> None:
    boxes, scores, labels = (t.clone() for t in scene(1, 0.5))
    copies = [t.clone() for t in (boxes, scores, labels)]
    nms(boxes, scores, 0.5)
    batched_nms(boxes, scores, labels, 0.5)
    multi_image_nms(boxes, scores, labels, labels, 0.5, num_images=3, score_threshold=0.2)
    soft_nms(boxes, scores, method="linear")
    assert all(torch.equal(a, b) for a, b in zip((boxes, scores, labels), copies, strict=True))


# --- CUDA ------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    cuda = torch.device("cuda")
    for seed in range(3):
        boxes, scores, labels = scene(seed, 0.5, num_boxes=3000, image_size=2000.0)
        boxes = boxes.to(dtype).float()  # values representable in dtype
        on_gpu = [t.to(cuda) for t in (boxes.to(dtype), scores, labels)]
        result = nms(on_gpu[0], on_gpu[1], 0.5)
        assert result.device.type == "cuda" and result.dtype == torch.int64
        assert torch.equal(result.cpu(), nms(boxes, scores, 0.5))
        assert torch.equal(batched_nms(*on_gpu, 0.5).cpu(), batched_nms(boxes, scores, labels, 0.5))
        image_index = torch.arange(boxes.shape[0]) % 4
        gpu = multi_image_nms(*on_gpu, image_index.to(cuda), 0.5, num_images=4, max_det=50)
        cpu = multi_image_nms(boxes, scores, labels, image_index, 0.5, num_images=4, max_det=50)
        assert all(torch.equal(a.cpu(), b) for a, b in zip(gpu, cpu, strict=True))
    keep, new_scores = soft_nms(on_gpu[0][:200], on_gpu[1][:200], method="gaussian")
    expected_keep, expected_scores = soft_nms(boxes[:200], scores[:200], method="gaussian")
    assert torch.equal(keep.cpu(), expected_keep)
    torch.testing.assert_close(new_scores.cpu(), expected_scores)


# --- property-based: random boxes, degenerate ones included, against the reference loop ---

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Integer coordinates (as float64) keep every area, intersection and union exact, so the
# vectorised IoU and the reference loop agree bit for bit even exactly at a threshold.
COORD = st.integers(-50, 400)
SIDE = st.integers(-20, 200)  # negative: an inverted box; 0: a zero-area one


@st.composite
def scored_boxes(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    count = draw(st.integers(0, 40))
    rows = [
        [x, y, x + w, y + h]
        for x, y, w, h in (draw(st.tuples(COORD, COORD, SIDE, SIDE)) for _ in range(count))
    ]
    if rows and draw(st.booleans()):  # exact duplicates and near-copies, where NMS decides
        rows += [
            list(rows[draw(st.integers(0, len(rows) - 1))]) for _ in range(draw(st.integers(1, 5)))
        ]
    scores = [draw(st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0])) for _ in rows]  # many ties
    labels = [draw(st.integers(0, 2)) for _ in rows]
    return (
        torch.tensor(rows, dtype=torch.float64).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float64),
        torch.tensor(labels, dtype=torch.int64),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=scored_boxes(), iou_threshold=st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]))
def test_nms_matches_the_reference_on_random_and_degenerate_boxes(
    backend: str, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], iou_threshold: float
) -> None:
    boxes, scores, labels = data
    assert_indices(nms(boxes, scores, iou_threshold), reference_nms(boxes, scores, iou_threshold))
    assert_indices(
        batched_nms(boxes, scores, labels, iou_threshold),
        reference_grouped_nms(boxes, scores, labels.tolist(), iou_threshold),
    )
