"""A light FPN + PAN neck: fuse C3, C4, C5 top-down then bottom-up.

    neck = PANNeck(in_channels=(128, 256, 512), channels=128)
    p3, p4, p5 = neck((c3, c4, c5))   # each [B, 128, H/s, W/s] for s = 8, 16, 32

Top-down (FPN) brings context from the coarse levels to the fine one; bottom-up
(PAN) brings localisation detail back to the coarse levels. Each fusion is a sum
followed by one 3x3 conv, which keeps the neck a small share of the compute on a
CPU while giving every level both kinds of information.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(inplace=True),
        )


class DepthwiseConvNormAct(nn.Sequential):
    """Depthwise 3x3 (+ norm, act) then pointwise 1x1 (+ norm, act): a 3x3 conv's
    receptive field at about (9 + C_out) / (9 C_out) of its multiply-adds."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.SiLU(inplace=True),
            ConvNormAct(in_channels, out_channels, 1),
        )


class PANNeck(nn.Module):
    """FPN top-down + PAN bottom-up over three levels, all at `channels` wide.

    Args:
        in_channels: channels of (C3, C4, C5).
        channels: output channels of every level.
    """

    def __init__(self, *, in_channels: tuple[int, int, int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvNormAct(c, channels, 1) for c in in_channels)
        self.top_down = nn.ModuleList(ConvNormAct(channels, channels) for _ in range(2))  # P4, P3
        self.down = nn.ModuleList(
            ConvNormAct(channels, channels, 3, 2) for _ in range(2)
        )  # N3->, N4->
        self.bottom_up = nn.ModuleList(ConvNormAct(channels, channels) for _ in range(2))  # N4, N5
        self.out_channels = channels

    def forward(
        self, features: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: (C3, C4, C5) at strides 8, 16, 32. Returns (N3, N4, N5),
        same sizes, `channels` wide."""
        l3, l4, l5 = (lateral(f) for lateral, f in zip(self.lateral, features, strict=True))
        # nearest upsampling to the exact target size also covers odd grid sizes
        p4 = self.top_down[0](l4 + F.interpolate(l5, size=l4.shape[-2:], mode="nearest"))
        p3 = self.top_down[1](l3 + F.interpolate(p4, size=l3.shape[-2:], mode="nearest"))
        n4 = self.bottom_up[0](p4 + self.down[0](p3))
        n5 = self.bottom_up[1](l5 + self.down[1](n4))
        return p3, n4, n5
