"""SimOTA assignment: hand-built cases and a slow per-box reference over random inputs.

Run:

    .venv/bin/python -m pytest tests/model/test_assigner.py -q
"""

from __future__ import annotations

import math

import torch

from detector.model.assigner import assign_targets
from detector.model.head import make_grid

STRIDES = (8, 16, 32)
FAR_BOX = torch.tensor([200.0, 200.0, 201.0, 201.0])  # overlaps nothing in a 64 px image


def _setup(num_classes: int = 2):
    centers, strides = make_grid(64, 64, STRIDES)
    num_anchors = centers.shape[0]
    pred_boxes = FAR_BOX.repeat(1, num_anchors, 1)  # [1, A, 4]
    pred_scores = torch.full((1, num_anchors, num_classes), 0.5)
    return centers, strides, pred_boxes, pred_scores


def _cell(centers: torch.Tensor, strides: torch.Tensor, x: float, y: float, stride: int) -> int:
    match = (centers[:, 0] == x) & (centers[:, 1] == y) & (strides == stride)
    return int(match.nonzero()[0, 0])


def test_single_box_takes_its_dynamic_k_best_cells() -> None:
    centers, strides, pred_boxes, pred_scores = _setup()
    gt = torch.tensor([16.0, 16.0, 48.0, 48.0])
    a, b = _cell(centers, strides, 28, 28, 8), _cell(centers, strides, 36, 36, 8)
    outside = _cell(
        centers, strides, 60, 60, 8
    )  # not in the box, 28 px from its centre > 2.5 strides
    pred_boxes[0, [a, b, outside]] = (
        gt  # IoU 1: dynamic k = 1 + 1 = 2 (the outside cell is no candidate)
    )
    kwargs = dict(
        pred_boxes=pred_boxes,
        pred_scores=pred_scores,
        centers=centers,
        anchor_strides=strides,
        gt_boxes=gt.view(1, 1, 4),
        gt_labels=torch.tensor([[1]]),
        gt_valid=torch.tensor([[True]]),
    )
    result = assign_targets(**kwargs, min_positives=1)
    assert result.fg_mask[0].nonzero().flatten().tolist() == sorted([a, b])
    assert result.matched_gt[0, [a, b]].tolist() == [0, 0]
    torch.testing.assert_close(result.matched_iou[0, [a, b]], torch.ones(2))
    assert result.matched_iou[0].sum() == 2
    # the default floor of 3 adds one more candidate (IoU 0), never the outside cell
    default = assign_targets(**kwargs)
    assert (
        default.fg_mask[0].sum() == 3
        and default.fg_mask[0, [a, b]].all()
        and not default.fg_mask[0, outside]
    )


def test_tiny_box_still_gets_cells_and_padding_gets_none() -> None:
    centers, strides, pred_boxes, pred_scores = _setup()
    pred_boxes = pred_boxes.repeat(2, 1, 1)
    pred_scores = pred_scores.repeat(2, 1, 1)
    gt = torch.tensor(
        [[[30.0, 30.0, 31.0, 31.0], [0.0, 0.0, 64.0, 64.0]], [[0.0, 0.0, 64.0, 64.0]] * 2]
    )
    valid = torch.tensor([[True, False], [False, False]])
    result = assign_targets(
        pred_boxes=pred_boxes,
        pred_scores=pred_scores,
        centers=centers,
        anchor_strides=strides,
        gt_boxes=gt,
        gt_labels=torch.zeros(2, 2, dtype=torch.long),
        gt_valid=valid,
    )
    # No cell centre lies inside the 1 px box, but the centre prior gives it cells.
    assert result.fg_mask[0].sum() == 3 and result.matched_gt[0][result.fg_mask[0]].tolist() == [
        0,
        0,
        0,
    ]
    assert not result.fg_mask[1].any()


def test_contested_cell_goes_to_the_cheaper_box() -> None:
    centers, strides, pred_boxes, pred_scores = _setup()
    gts = torch.tensor([[[16.0, 16.0, 48.0, 48.0], [20.0, 20.0, 52.0, 52.0]]])
    cell = _cell(centers, strides, 36, 36, 8)
    pred_boxes[0, cell] = gts[0, 1]  # exact for box 1, IoU 0.6 with box 0
    result = assign_targets(
        pred_boxes=pred_boxes,
        pred_scores=pred_scores,
        centers=centers,
        anchor_strides=strides,
        gt_boxes=gts,
        gt_labels=torch.tensor([[0, 0]]),
        gt_valid=torch.tensor([[True, True]]),
        min_positives=1,
    )
    assert result.fg_mask[0].nonzero().flatten().tolist() == [cell]  # both boxes pick it (k = 1)
    assert result.matched_gt[0, cell] == 1


def _reference_assign(
    pred_boxes, pred_scores, centers, strides, gt_boxes, gt_labels, gt_valid, min_positives
):
    """Slow SimOTA: loops over images, boxes and cells with plain Python floats."""
    batch, num_anchors, num_classes = pred_scores.shape
    fg = torch.zeros(batch, num_anchors, dtype=torch.bool)
    matched = torch.zeros(batch, num_anchors, dtype=torch.long)
    for b in range(batch):
        claims: dict[int, list[tuple[float, int]]] = {}
        for m in range(gt_boxes.shape[1]):
            if not gt_valid[b, m]:
                continue
            x1, y1, x2, y2 = gt_boxes[b, m].tolist()
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            costs, ious = [], []
            for a in range(num_anchors):
                px, py = centers[a].tolist()
                r = 2.5 * float(strides[a])
                in_box = x1 < px < x2 and y1 < py < y2
                in_center = abs(px - cx) < r and abs(py - cy) < r
                if not (in_box or in_center):
                    continue
                q = pred_boxes[b, a].tolist()
                inter = max(0.0, min(x2, q[2]) - max(x1, q[0])) * max(
                    0.0, min(y2, q[3]) - max(y1, q[1])
                )
                union = (x2 - x1) * (y2 - y1) + (q[2] - q[0]) * (q[3] - q[1]) - inter
                iou = inter / union
                p = [min(max(float(v), 1e-6), 1 - 1e-6) for v in pred_scores[b, a]]
                label = int(gt_labels[b, m])
                cls_cost = sum(
                    -math.log(1 - pj) for j, pj in enumerate(p) if j != label
                ) - math.log(p[label])
                cost = (
                    cls_cost + 3.0 * -math.log(iou + 1e-8) + (0.0 if in_box and in_center else 1e5)
                )
                costs.append((cost, a))
                ious.append(iou)
            k = max(min_positives, int(sum(sorted(ious, reverse=True)[:10])))
            for cost, a in sorted(costs)[:k]:
                claims.setdefault(a, []).append((cost, m))
        for a, options in claims.items():
            fg[b, a] = True
            matched[b, a] = min(options)[1]
    return fg, matched


def test_matches_slow_reference_on_random_batches() -> None:
    generator = torch.Generator().manual_seed(0)
    centers, strides = make_grid(64, 64, STRIDES)
    num_anchors = centers.shape[0]
    for trial in range(10):
        min_positives = 1 + trial % 3
        batch, num_gt, num_classes = 3, 4, 3
        xy = torch.rand(batch, num_gt, 2, generator=generator) * 48
        wh = torch.rand(batch, num_gt, 2, generator=generator) * 30 + 2
        gt_boxes = torch.cat([xy, xy + wh], dim=-1)
        gt_labels = torch.randint(0, num_classes, (batch, num_gt), generator=generator)
        gt_valid = torch.rand(batch, num_gt, generator=generator) > 0.25
        # predictions scattered around the cell centres with random sizes
        centre = centers + torch.randn(batch, num_anchors, 2, generator=generator) * 6
        size = torch.rand(batch, num_anchors, 2, generator=generator) * 40 + 4
        pred_boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
        pred_scores = torch.rand(batch, num_anchors, num_classes, generator=generator)
        result = assign_targets(
            pred_boxes=pred_boxes,
            pred_scores=pred_scores,
            centers=centers,
            anchor_strides=strides,
            gt_boxes=gt_boxes,
            gt_labels=gt_labels,
            gt_valid=gt_valid,
            min_positives=min_positives,
        )
        fg, matched = _reference_assign(
            pred_boxes, pred_scores, centers, strides, gt_boxes, gt_labels, gt_valid, min_positives
        )
        assert torch.equal(result.fg_mask, fg)
        assert torch.equal(result.matched_gt[fg], matched[fg])
        assert fg.sum() >= gt_valid.sum()  # every valid box got at least one cell here
