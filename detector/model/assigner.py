"""SimOTA-style dynamic target assignment, vectorised over the whole batch.

    assignment = assign_targets(
        pred_boxes=boxes, pred_scores=scores, centers=centers, anchor_strides=strides,
        gt_boxes=gt_boxes, gt_labels=gt_labels, gt_valid=gt_valid,
    )
    assignment.fg_mask      # [B, A] bool: cells that learn a box and a class
    assignment.matched_gt   # [B, A] int64: index into the padded ground truth

What `YOLOLoss` (model/loss.py) passes: the decoded boxes, detached; as scores
sqrt(sigmoid(objectness) * sigmoid(class logit)) per class, the geometric mean,
no gradient; `gt_valid` False for padding and also for ignored (VOC difficult,
COCO crowd) and zero-size boxes, which are therefore never assigned.

For every valid ground-truth box (padded to M per image):

1. Candidates: cells whose centre lies inside the box, or within
   `center_radius` strides of the box centre (so small boxes always get cells).
2. Cost of (box, cell) = classification BCE of the cell's predicted scores
   against the box's one-hot label + `iou_weight` * -log(IoU of the cell's
   predicted box); cells that are not both inside the box and near its centre
   rank after all cells that are.
3. Dynamic k: each box takes its k cheapest candidates, where k = the sum of its
   `topk_candidates` best IoUs rounded down, at least `min_positives` -
   well-predicted boxes get more positives as training goes on, poorly
   predicted ones stay focused.
4. A cell claimed by several boxes goes to the cheapest one.

There is no loop over images, boxes or cells: everything is [B, M, A] tensors,
and IoUs are computed only for candidate pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from detector.postprocess import box_iou_aligned

_NOT_CANDIDATE_COST = 1e9  # never selected


@dataclass
class Assignment:
    """Result of `assign_targets` for a batch.

    Attributes:
        fg_mask: [B, A] bool, positive cells.
        matched_gt: [B, A] int64, index of the assigned box in the padded [B, M] targets
            (0 where not positive).
        matched_iou: [B, A] float, IoU of the cell's predicted box with its box
            (0 where not positive).
    """

    fg_mask: torch.Tensor
    matched_gt: torch.Tensor
    matched_iou: torch.Tensor


def candidate_mask(
    centers: torch.Tensor,
    anchor_strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    center_radius: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which cells are candidates for which boxes.

    Args:
        centers: [A, 2] cell centres (x, y); anchor_strides: [A].
        gt_boxes: [B, M, 4] xyxy.
        center_radius: half-side of the centre region, in strides.

    Returns:
        in_box_or_center: [B, M, A] bool, cells considered at all.
        in_box_and_center: [B, M, A] bool, the preferred cells (no cost penalty).
    """
    x = centers[:, 0].view(1, 1, -1)
    y = centers[:, 1].view(1, 1, -1)
    x1, y1, x2, y2 = (gt_boxes[..., i : i + 1] for i in range(4))  # [B, M, 1]
    in_box = (x > x1) & (x < x2) & (y > y1) & (y < y2)
    radius = center_radius * anchor_strides.view(1, 1, -1)
    center_x, center_y = (x1 + x2) / 2, (y1 + y2) / 2
    in_center = ((x - center_x).abs() < radius) & ((y - center_y).abs() < radius)
    return in_box | in_center, in_box & in_center


@torch.no_grad()
def assign_targets(
    *,
    pred_boxes: torch.Tensor,
    pred_scores: torch.Tensor,
    centers: torch.Tensor,
    anchor_strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_valid: torch.Tensor,
    center_radius: float = 2.5,
    topk_candidates: int = 10,
    iou_weight: float = 3.0,
    min_positives: int = 3,
) -> Assignment:
    """Assign ground-truth boxes to grid cells (SimOTA with a centre prior).

    Args:
        pred_boxes: [B, A, 4] predicted xyxy boxes in input pixels (the loss passes
            them detached).
        pred_scores: [B, A, C] probabilities in (0, 1) for the class cost; the loss
            passes sqrt(sigmoid(objectness) * sigmoid(class logit)).
        centers: [A, 2] cell centres; anchor_strides: [A].
        gt_boxes: [B, M, 4] xyxy, padded; gt_labels: [B, M] int64; gt_valid: [B, M] bool
            (False rows are never assigned: padding, and from the loss also
            ignored and zero-size boxes).
        center_radius: centre-region half-side in strides.
        topk_candidates: IoUs summed for the dynamic k.
        iou_weight: weight of -log(IoU) against the class cost.
        min_positives: lower bound of the dynamic k (YOLOX uses 1; 3 learns faster
            early on, when predicted IoUs are still near 0).

    Returns:
        Assignment with [B, A] tensors.
    """
    batch, num_anchors, num_classes = pred_scores.shape
    num_gt = gt_boxes.shape[1]
    device = pred_boxes.device
    empty = Assignment(
        fg_mask=torch.zeros(batch, num_anchors, dtype=torch.bool, device=device),
        matched_gt=torch.zeros(batch, num_anchors, dtype=torch.long, device=device),
        matched_iou=torch.zeros(batch, num_anchors, dtype=pred_boxes.dtype, device=device),
    )
    if num_gt == 0 or num_anchors == 0:
        return empty

    candidates, preferred = candidate_mask(centers, anchor_strides, gt_boxes, center_radius)
    candidates &= gt_valid.unsqueeze(-1)  # [B, M, A]

    # IoU only where it matters: candidate pairs (a small fraction of B*M*A).
    ious = torch.zeros(batch, num_gt, num_anchors, dtype=pred_boxes.dtype, device=device)
    b_index, m_index, a_index = candidates.nonzero(as_tuple=True)
    ious[b_index, m_index, a_index] = box_iou_aligned(
        gt_boxes[b_index, m_index], pred_boxes[b_index, a_index]
    ).to(ious.dtype)

    # Class cost: BCE of the predicted class vector against the box's one-hot label,
    # summed over classes = sum_j -log(1 - p_j) + log(1 - p_c) - log(p_c).
    probs = pred_scores.float().clamp(1e-6, 1 - 1e-6)  # [B, A, C]
    negative_log = -torch.log1p(-probs)  # [B, A, C]
    label_index = (
        gt_labels.clamp(0, num_classes - 1).unsqueeze(1).expand(batch, num_anchors, num_gt)
    )
    p_label = probs.gather(2, label_index).transpose(1, 2)  # [B, M, A]
    cls_cost = negative_log.sum(-1).unsqueeze(1) + torch.log1p(-p_label) - torch.log(p_label)

    cost = cls_cost + iou_weight * -torch.log(ious + 1e-8)  # [B, M, A]
    # Candidates outside the box-and-centre region rank after every preferred one:
    # offset them by more than the largest candidate cost. (A fixed 1e5 would cost
    # float32 its resolution: near 1e5 it is ~0.01, enough to reorder close costs.)
    outside_offset = cost.masked_fill(~candidates, 0).amax() + 1
    cost = cost + outside_offset * (~preferred).float()
    cost = torch.where(candidates, cost, torch.full_like(cost, _NOT_CANDIDATE_COST))

    # Dynamic k per box from its best candidate IoUs.
    k_max = min(topk_candidates, num_anchors)
    dynamic_k = ious.topk(k_max, dim=-1).values.sum(-1).int().clamp(min=min_positives)  # [B, M]
    cheapest_cost, cheapest = cost.topk(k_max, dim=-1, largest=False)  # [B, M, k_max]
    rank = torch.arange(k_max, device=device).view(1, 1, -1)
    take = (rank < dynamic_k.unsqueeze(-1)) & (cheapest_cost < _NOT_CANDIDATE_COST)
    matching = torch.zeros(batch, num_gt, num_anchors, dtype=torch.bool, device=device)
    matching.scatter_(2, cheapest, take)  # positions with take=False write False: harmless

    # Cells claimed by several boxes keep only the cheapest.
    fg_mask = matching.any(1)  # [B, A]
    cheapest_gt = torch.where(matching, cost, torch.full_like(cost, float("inf"))).argmin(
        1
    )  # [B, A]
    matched_gt = torch.where(fg_mask, cheapest_gt, torch.zeros_like(cheapest_gt))
    matched_iou = ious.gather(1, matched_gt.unsqueeze(1)).squeeze(1) * fg_mask
    return Assignment(fg_mask=fg_mask, matched_gt=matched_gt, matched_iou=matched_iou)
