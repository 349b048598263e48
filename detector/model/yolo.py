"""YOLODetector: ResNet backbone -> PAN neck -> decoupled grid head.

    model = YOLODetector(backbone=ResNetBackbone(depth=18), num_classes=5)
    raw = model(images)  # images uint8/float 0..255 RGB [B, 3, H, W] -> [B, A, 4 + 1 + C]
    dets = model.decode(raw, score_threshold=0.25, iou_threshold=0.6, max_det=100)

Usually built from a config with `detector.model.build.build_model`. `forward`
returns the same raw tensor in train and eval mode and records no state, so the
grid for any input size (a multiple of the largest stride) is recomputed on
demand by `grid(height, width)`; `decode` infers a square input size from the
number of cells or takes `input_size=(height, width)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from detector.model.backbone import ResNetBackbone
from detector.model.decode import decode_detections
from detector.model.head import GridHead, make_grid
from detector.model.neck import PANNeck

STRIDES = (8, 16, 32)  # the levels fed by C3, C4, C5


class YOLODetector(nn.Module):
    """Grid detector on a ResNet.

    Args:
        backbone: a `ResNetBackbone` (C3, C4, C5 at strides 8, 16, 32).
        num_classes: C.
        neck_channels: width of every neck level.
        head_channels: width of the head's convolutions.
        head_convs: 3x3 convs per head branch.
        head_depthwise: depthwise-separable 3x3 convs in the head branches.
        mean, std: RGB normalisation in 0..1 units (ImageNet by default); stored
            as buffers scaled to 0..255 so the model takes raw pixel values.
    """

    def __init__(
        self,
        *,
        backbone: ResNetBackbone,
        num_classes: int,
        neck_channels: int = 128,
        head_channels: int = 128,
        head_convs: int = 2,
        head_depthwise: bool = False,
        mean: tuple[float, float, float] | list[float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] | list[float] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(
                f"mean and std need 3 values each with std > 0, got {list(mean)}, {list(std)}"
            )
        self.num_classes = num_classes
        self.strides = STRIDES
        self.backbone = backbone
        self.neck = PANNeck(in_channels=backbone.out_channels, channels=neck_channels)
        self.head = GridHead(
            in_channels=neck_channels,
            channels=head_channels,
            num_classes=num_classes,
            num_levels=len(STRIDES),
            num_convs=head_convs,
            depthwise=head_depthwise,
        )
        # NHWC activations (build_model stores the weights channels_last too); False
        # keeps torch's default NCHW, for measuring the difference (tools/benchmark.py ladder).
        self.channels_last = True
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images uint8 or float, 0..255 RGB [B, 3, H, W], H and W multiples of 32.

        Returns: raw [B, A, 4 + 1 + C] (cell encoding in detector/model/head.py),
        A = sum over strides s of (H/s) * (W/s).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
        height, width = images.shape[-2:]
        largest = max(self.strides)
        if height % largest or width % largest:
            raise ValueError(f"image size {height}x{width} must be a multiple of {largest}")
        x = (images.to(self.mean.dtype) - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.neck(self.backbone(x)))

    def grid(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres [A, 2] (x, y input px) and strides [A] for an input of height x width."""
        return make_grid(height, width, self.strides, device=self.mean.device)

    @torch.no_grad()
    def decode(
        self,
        raw: torch.Tensor,
        *,
        score_threshold: float = 0.001,
        iou_threshold: float = 0.6,
        max_det: int = 100,
        class_agnostic: bool = False,
        input_size: tuple[int, int] | None = None,
        classes: Sequence[int] | torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Raw output -> B dicts {boxes float32 [K, 4] xyxy input px, scores [K], labels int64 [K]}.

        See `detector.model.decode.decode_detections`; `input_size` is (height, width)
        and may be omitted for square inputs; `classes` keeps only those class indices
        (before NMS and `max_det`).
        """
        return decode_detections(
            raw,
            strides=self.strides,
            input_size=input_size,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_det=max_det,
            class_agnostic=class_agnostic,
            classes=classes,
        )
