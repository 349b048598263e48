"""YOLO loss: SimOTA assignment, CIoU box loss, objectness and classification BCE.

    loss_fn = YOLOLoss(num_classes=5, strides=(8, 16, 32))
    terms = loss_fn(raw, targets)        # raw [B, A, 4+1+C] from YOLODetector
    terms["loss"].backward()

`targets` is the batch's list of dicts ``{boxes float32 [N, 4] xyxy input px,
labels int64 [N], ignore bool [N]}``. The terms, each already multiplied by its
weight and divided by the number of positive cells (at least 1):

    loss_box  box_weight * sum(1 - CIoU(pred, gt))                 over positives
    loss_obj  obj_weight * sum(BCE(objectness, positive))          over all cells but ignored ones
    loss_cls  cls_weight * sum(BCE(class logits, one_hot * IoU))   over positives
    loss_l1   l1_weight  * sum(|raw box - encoded gt|)             over positives (0 by default)
    loss      their sum; num_fg: the number of positives (not differentiable)

Ignored boxes (VOC difficult, COCO crowd) are not assigned; cells whose centre lies
inside one and that are not positive for another box are left out of the
objectness term (neither positive nor negative). Boxes with zero width or height
cannot be regressed and are treated as absent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detector.model.assigner import assign_targets
from detector.model.head import decode_boxes, encode_boxes, make_grid, square_size_from_anchors
from detector.postprocess import complete_box_iou_aligned


def pad_targets(
    targets: list[dict[str, torch.Tensor]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack per-image targets into padded tensors.

    Args:
        targets: B dicts with boxes [N_i, 4], labels [N_i] and optional ignore [N_i].

    Returns:
        boxes [B, M, 4] float32, labels [B, M] int64, valid [B, M] bool (a real,
        non-ignored box with positive size), ignored [B, M] bool (an ignored box);
        M = max N_i (0 when every image is empty).
    """
    num_max = max((len(t["labels"]) for t in targets), default=0)
    batch = len(targets)
    boxes = torch.zeros(batch, num_max, 4, device=device)
    labels = torch.zeros(batch, num_max, dtype=torch.long, device=device)
    present = torch.zeros(batch, num_max, dtype=torch.bool, device=device)
    ignore = torch.zeros(batch, num_max, dtype=torch.bool, device=device)
    for i, target in enumerate(targets):  # B small copies; the heavy work is batched
        count = len(target["labels"])
        if count == 0:
            continue
        boxes[i, :count] = target["boxes"].to(device=device, dtype=torch.float32).reshape(count, 4)
        labels[i, :count] = target["labels"].to(device)
        present[i, :count] = True
        if target.get("ignore") is not None:
            ignore[i, :count] = target["ignore"].to(device=device, dtype=torch.bool)
    has_size = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    return boxes, labels, present & ~ignore & has_size, present & ignore & has_size


class YOLOLoss(nn.Module):
    """Assignment + weighted loss terms for `YOLODetector`'s raw output.

    Args:
        num_classes: C.
        strides: the model's strides (same order as its raw cells).
        box_weight, obj_weight, cls_weight, l1_weight: term weights.
        center_radius, topk_candidates, iou_weight, min_positives: assignment settings
            (see assigner.py).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        strides: tuple[int, ...] | list[int],
        box_weight: float = 5.0,
        obj_weight: float = 1.0,
        cls_weight: float = 1.0,
        l1_weight: float = 0.0,
        center_radius: float = 2.5,
        topk_candidates: int = 10,
        iou_weight: float = 3.0,
        min_positives: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.box_weight, self.obj_weight = box_weight, obj_weight
        self.cls_weight, self.l1_weight = cls_weight, l1_weight
        self.center_radius, self.topk_candidates, self.iou_weight = (
            center_radius,
            topk_candidates,
            iou_weight,
        )
        self.min_positives = min_positives

    def forward(
        self,
        raw: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        input_size: tuple[int, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute the loss terms.

        Args:
            raw: [B, A, 4 + 1 + C] model output (any float dtype; computed in float32).
            targets: B dicts {boxes [N, 4] xyxy input px, labels [N] int64, ignore [N] bool}.
            input_size: (height, width) of the network input; inferred from A for square inputs.

        Returns:
            {"loss", "loss_box", "loss_obj", "loss_cls", "loss_l1", "num_fg"}: scalar tensors.
        """
        if raw.dim() != 3 or raw.shape[-1] != 5 + self.num_classes:
            raise ValueError(f"raw must be [B, A, {5 + self.num_classes}], got {list(raw.shape)}")
        if len(targets) != raw.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {raw.shape[0]} images")
        if input_size is None:
            side = square_size_from_anchors(raw.shape[1], self.strides)
            input_size = (side, side)
        raw = raw.float()
        centers, anchor_strides = make_grid(*input_size, self.strides, device=raw.device)
        pred_boxes = decode_boxes(raw[..., :4], centers, anchor_strides)  # [B, A, 4]
        obj_logits, cls_logits = raw[..., 4], raw[..., 5:]

        gt_boxes, gt_labels, gt_valid, gt_ignored = pad_targets(targets, raw.device)
        valid_labels = gt_labels[gt_valid]
        if valid_labels.numel() and (
            valid_labels.min() < 0 or valid_labels.max() >= self.num_classes
        ):
            raise ValueError(f"target labels must be in [0, {self.num_classes - 1}]")
        with torch.no_grad():
            scores = (cls_logits.sigmoid() * obj_logits.sigmoid().unsqueeze(-1)).sqrt()
        assignment = assign_targets(
            pred_boxes=pred_boxes.detach(),
            pred_scores=scores,
            centers=centers,
            anchor_strides=anchor_strides,
            gt_boxes=gt_boxes,
            gt_labels=gt_labels,
            gt_valid=gt_valid,
            center_radius=self.center_radius,
            topk_candidates=self.topk_candidates,
            iou_weight=self.iou_weight,
            min_positives=self.min_positives,
        )
        fg = assignment.fg_mask  # [B, A]
        num_fg = fg.sum()
        normaliser = num_fg.clamp(min=1).float()

        # Objectness over every cell, except non-positive cells inside ignored boxes.
        obj_weight = torch.ones_like(obj_logits)
        if gt_ignored.any():
            x, y = centers[:, 0].view(1, 1, -1), centers[:, 1].view(1, 1, -1)
            b = gt_boxes
            inside = (x > b[..., 0:1]) & (x < b[..., 2:3]) & (y > b[..., 1:2]) & (y < b[..., 3:4])
            in_ignored = (inside & gt_ignored.unsqueeze(-1)).any(1)  # [B, A]
            obj_weight = obj_weight.masked_fill(in_ignored & ~fg, 0.0)
        loss_obj = (
            F.binary_cross_entropy_with_logits(
                obj_logits, fg.float(), weight=obj_weight, reduction="sum"
            )
            / normaliser
        )

        batch_index, anchor_index = fg.nonzero(as_tuple=True)
        gt_index = assignment.matched_gt[batch_index, anchor_index]
        matched_boxes = gt_boxes[batch_index, gt_index]  # [F, 4]
        # `* 0` terms keep every output in the graph when there are no positives,
        # so backward() and DDP's gradient sync behave the same on empty batches.
        zero = (
            (raw[..., :4].sum() + raw[..., 5:].sum()).mul(0.0).abs()
        )  # abs: +0.0, not -0.0, in logs
        ciou = complete_box_iou_aligned(pred_boxes[batch_index, anchor_index], matched_boxes)
        loss_box = (1.0 - ciou).sum() / normaliser + zero

        cls_target = F.one_hot(gt_labels[batch_index, gt_index], self.num_classes).float()
        cls_target = cls_target * assignment.matched_iou[batch_index, anchor_index].unsqueeze(-1)
        loss_cls = (
            F.binary_cross_entropy_with_logits(
                cls_logits[batch_index, anchor_index], cls_target, reduction="sum"
            )
            / normaliser
            + zero
        )

        loss_l1 = zero
        if self.l1_weight > 0:
            encoded = encode_boxes(
                matched_boxes, centers[anchor_index], anchor_strides[anchor_index]
            )
            loss_l1 = (raw[batch_index, anchor_index, :4] - encoded).abs().sum() / normaliser + zero

        terms = {
            "loss_box": self.box_weight * loss_box,
            "loss_obj": self.obj_weight * loss_obj,
            "loss_cls": self.cls_weight * loss_cls,
            "loss_l1": self.l1_weight * loss_l1,
        }
        terms["loss"] = terms["loss_box"] + terms["loss_obj"] + terms["loss_cls"] + terms["loss_l1"]
        terms["num_fg"] = num_fg.detach().float()
        return terms
