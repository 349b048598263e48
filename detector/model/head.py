"""Anchor-free decoupled grid head, the grid itself, and the private box encoding.

    head = GridHead(in_channels=128, channels=128, num_classes=20, num_levels=3)
    raw = head([p3, p4, p5])                     # [B, A, 4 + 1 + C]
    centers, strides = make_grid(192, 192, (8, 16, 32))   # [A, 2], [A]
    boxes_xyxy = decode_boxes(raw[..., :4], centers, strides)

Every grid cell of every level is one prediction ("anchor point"). Its channels:

    raw[..., 0:2]  centre offset from the cell centre, in stride units
    raw[..., 2:4]  log of width and height, in stride units
    raw[..., 4]    objectness logit
    raw[..., 5:]   class logits (sigmoid each; multi-label)

Cells are ordered level by level (stride 8 first), each level row-major (y, then
x), so ``A = sum_s (H/s) * (W/s)``. This encoding is private to the model: the
public output of `decode_boxes` is xyxy in network-input pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from detector.model.neck import ConvNormAct, DepthwiseConvNormAct

PRIOR_PROBABILITY = 0.01  # initial objectness / class probability (RetinaNet's focal prior)
MAX_LOG_SIZE = (
    10.0  # clamp of log(w/stride): exp(10) * 32 ~ 7e5 px, finite in fp32 and far past any image
)


def make_grid(
    height: int,
    width: int,
    strides: tuple[int, ...] | list[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres and strides of all levels for an input of `height` x `width` pixels.

    Args:
        height, width: network input size; multiples of the largest stride.
        strides: one per level, e.g. (8, 16, 32).

    Returns:
        centers: [A, 2] (x, y) of each cell centre in input pixels, ``(index + 0.5) * stride``.
        anchor_strides: [A] stride of each cell's level.
    """
    largest = max(strides)
    if height <= 0 or width <= 0 or height % largest or width % largest:
        raise ValueError(
            f"input size {height}x{width} must be a positive multiple of the largest stride "
            f"{largest}"
        )
    centers, anchor_strides = [], []
    for stride in strides:
        ys = (torch.arange(height // stride, device=device, dtype=dtype) + 0.5) * stride
        xs = (torch.arange(width // stride, device=device, dtype=dtype) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        centers.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1))
        anchor_strides.append(
            torch.full((grid_x.numel(),), float(stride), device=device, dtype=dtype)
        )
    return torch.cat(centers), torch.cat(anchor_strides)


def square_size_from_anchors(num_anchors: int, strides: tuple[int, ...] | list[int]) -> int:
    """The side S of a square input that gives `num_anchors` cells; ValueError if none does.

    ``A = S^2 * sum_s 1/s^2``, so S is recovered exactly; a non-square input must
    pass its size explicitly instead.
    """
    side = round(math.sqrt(num_anchors / sum(1.0 / s**2 for s in strides)))
    if side <= 0 or side % max(strides) or sum((side // s) ** 2 for s in strides) != num_anchors:
        raise ValueError(
            f"{num_anchors} grid cells do not come from a square input with strides "
            f"{list(strides)}; "
            "pass input_size=(height, width)"
        )
    return side


def decode_boxes(
    box_raw: torch.Tensor, centers: torch.Tensor, anchor_strides: torch.Tensor
) -> torch.Tensor:
    """Grid encoding -> xyxy boxes in input pixels.

    Args:
        box_raw: [..., A, 4] (dx, dy, log w, log h) in stride units.
        centers: [A, 2] cell centres; anchor_strides: [A].

    Returns:
        [..., A, 4] xyxy, always ``x1 <= x2`` and ``y1 <= y2``.
    """
    stride = anchor_strides.unsqueeze(-1)  # [A, 1]
    center = centers + box_raw[..., :2] * stride
    size = box_raw[..., 2:4].clamp(max=MAX_LOG_SIZE).exp() * stride
    return torch.cat((center - size / 2, center + size / 2), dim=-1)


def encode_boxes(
    boxes: torch.Tensor, centers: torch.Tensor, anchor_strides: torch.Tensor
) -> torch.Tensor:
    """Inverse of `decode_boxes` for boxes with positive width and height:
    xyxy [..., 4] -> raw [..., 4]."""
    stride = anchor_strides.unsqueeze(-1)
    center = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)
    return torch.cat(((center - centers) / stride, torch.log(size / stride)), dim=-1)


class _LevelHead(nn.Module):
    """Decoupled head for one level: a classification branch and a box + objectness branch."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, num_convs: int, depthwise: bool
    ) -> None:
        super().__init__()
        conv = DepthwiseConvNormAct if depthwise else ConvNormAct
        self.stem = ConvNormAct(in_channels, channels, 1)
        self.cls_convs = nn.Sequential(*(conv(channels, channels) for _ in range(num_convs)))
        self.reg_convs = nn.Sequential(*(conv(channels, channels) for _ in range(num_convs)))
        self.cls_pred = nn.Conv2d(channels, num_classes, 1)
        self.box_pred = nn.Conv2d(channels, 4, 1)
        self.obj_pred = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        reg = self.reg_convs(x)
        out = torch.cat(
            (self.box_pred(reg), self.obj_pred(reg), self.cls_pred(self.cls_convs(x))), dim=1
        )
        return out.flatten(2).transpose(1, 2)  # [B, H*W, 5 + C], row-major cells


class GridHead(nn.Module):
    """Per-level decoupled heads (YOLOX-style), concatenated into one raw tensor.

    Args:
        in_channels: channels of each neck level.
        channels: width of the head's convolutions.
        num_classes: C.
        num_levels: number of strides.
        num_convs: 3x3 convs in each branch.
        depthwise: each 3x3 conv is depthwise 3x3 + pointwise 1x1 (YOLOX-nano's
            head): about 1/8 of the multiply-adds at 64 channels.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        num_classes: int,
        num_levels: int,
        num_convs: int = 2,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.levels = nn.ModuleList(
            _LevelHead(in_channels, channels, num_classes, num_convs, depthwise)
            for _ in range(num_levels)
        )
        self._init_biases()

    def _init_biases(self) -> None:
        # Start every cell at probability 0.01 for objectness and classes: with
        # thousands of background cells, a 0.5 start would swamp the first steps
        # with large negative gradients.
        prior_bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        for level in self.levels:
            nn.init.constant_(level.cls_pred.bias, prior_bias)
            nn.init.constant_(level.obj_pred.bias, prior_bias)
            # Boxes start as one-stride squares at the cell centres.
            nn.init.zeros_(level.box_pred.bias)
            nn.init.normal_(level.box_pred.weight, std=0.01)

    def forward(self, features: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Args: per-level features [B, in_channels, H/s, W/s]. Returns raw [B, A, 4 + 1 + C]."""
        if len(features) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} feature levels, got {len(features)}")
        return torch.cat([level(f) for level, f in zip(self.levels, features, strict=True)], dim=1)
