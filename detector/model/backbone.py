"""ResNet-18/34/50/101 backbone with torchvision's state-dict key names.

The module tree mirrors torchvision's `ResNet` (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0`` ...), without the classifier, so a torchvision ImageNet
weight file loads strictly (see `detector.model.pretrained`). The forward pass
returns the C3, C4, C5 feature maps (strides 8, 16, 32).

    backbone = ResNetBackbone(depth=50, frozen_stages=1, freeze_bn=True)
    c3, c4, c5 = backbone(torch.zeros(1, 3, 224, 224))   # [1,512,28,28] [1,1024,14,14] [1,2048,7,7]
    small = ResNetBackbone(depth=18, width=0.5)          # C3..C5: 64, 128, 256 channels

`width` scales every convolution's channels (stem and the four stages) by the
same factor, rounded to a multiple of 8 (SIMD-friendly on CPU and tensor cores);
the compute falls with about its square. Depth and width make the model ladder
(docs/architecture.md); torchvision's ImageNet files fit width 1.0 only.
"""

from __future__ import annotations

import torch
from torch import nn

from detector.config import FROZEN_STAGES

# The `model.backbone` choices (config checks and build_model read them here): name -> depth.
BACKBONES: dict[str, int] = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
STAGE_CHANNELS = (64, 128, 256, 512)  # ResNet's stage widths at width 1.0; the stem has 64 too


def scaled_channels(channels: int, width: float) -> int:
    """`channels * width` rounded to the nearest multiple of 8, at least 8."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(8, int(round(channels * width / 8)) * 8)


# depth -> (block type, blocks per stage)
_ARCHITECTURES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters.

    All five tensors are buffers under BatchNorm2d's names (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``num_batches_tracked``), so state dicts
    move between the two freely; nothing here is trained or updated in train mode.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused multiply-add: y = x * scale + shift, computed in x's dtype.
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.to(x.dtype).view(1, -1, 1, 1) + shift.to(x.dtype).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _norm(num_features: int, frozen: bool) -> nn.Module:
    return FrozenBatchNorm2d(num_features) if frozen else nn.BatchNorm2d(num_features)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, frozen_bn: bool) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = _norm(channels, frozen_bn)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = _norm(channels, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride, frozen_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's v1.5), 1x1 expand."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, frozen_bn: bool) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = _norm(channels, frozen_bn)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = _norm(channels, frozen_bn)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = _norm(out_channels, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride, frozen_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(
    in_channels: int, out_channels: int, stride: int, frozen_bn: bool
) -> nn.Module | None:
    """Projection shortcut (``downsample.0`` conv, ``downsample.1`` norm) when shapes change."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(out_channels, frozen_bn)
    )


class ResNetBackbone(nn.Module):
    """ResNet trunk returning C3, C4, C5.

    Args:
        depth: 18, 34, 50 or 101.
        frozen_stages: 0 trains everything; 1 freezes the stem (conv1, bn1);
            k > 1 freezes the stem and layer1..layer(k-1). Frozen parameters get
            ``requires_grad=False`` and the frozen modules stay in eval mode, so
            their BatchNorm statistics never change.
        freeze_bn: replace every BatchNorm2d by `FrozenBatchNorm2d` (for small
            batches, typically with ImageNet weights).
        width: channel multiplier of every convolution (1.0 is torchvision's ResNet).

    Attributes:
        out_channels: channels of (C3, C4, C5), e.g. (128, 256, 512) for ResNet-18.
    """

    def __init__(
        self, *, depth: int, frozen_stages: int = 0, freeze_bn: bool = False, width: float = 1.0
    ) -> None:
        super().__init__()
        if depth not in _ARCHITECTURES:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(_ARCHITECTURES)}")
        if not 0 <= frozen_stages <= FROZEN_STAGES:
            raise ValueError(f"frozen_stages={frozen_stages} must be in 0..5 (stem + 4 stages)")
        self.depth = depth
        self.width = width
        self.frozen_stages = frozen_stages
        kind, blocks = _ARCHITECTURES[depth]
        block = BasicBlock if kind == "basic" else Bottleneck

        stage_channels = tuple(scaled_channels(c, width) for c in STAGE_CHANNELS)
        in_channels = stage_channels[0]
        self.conv1 = nn.Conv2d(3, in_channels, 7, 2, 3, bias=False)
        self.bn1 = _norm(in_channels, freeze_bn)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for index, (num_blocks, channels) in enumerate(
            zip(blocks, stage_channels, strict=True), start=1
        ):
            stride = 1 if index == 1 else 2
            layers = []
            for block_index in range(num_blocks):
                layers.append(
                    block(in_channels, channels, stride if block_index == 0 else 1, freeze_bn)
                )
                in_channels = channels * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.out_channels = tuple(c * block.expansion for c in stage_channels[1:])
        self._init_weights()
        self._freeze()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last norm of each residual branch so every block starts as the
        # identity: trains noticeably faster from scratch, and ImageNet weights
        # overwrite it anyway. Only where that norm will be trained: a frozen zero
        # would switch the branch off for good.
        frozen = {id(m) for top in self.frozen_modules() for m in top.modules()}
        for module in self.modules():
            if isinstance(module, (BasicBlock, Bottleneck)) and id(module) not in frozen:
                last = module.bn2 if isinstance(module, BasicBlock) else module.bn3
                if isinstance(last, nn.BatchNorm2d):
                    nn.init.zeros_(last.weight)

    def frozen_modules(self) -> list[nn.Module]:
        """The modules frozen by `frozen_stages`, stem first."""
        modules: list[nn.Module] = [self.conv1, self.bn1] if self.frozen_stages >= 1 else []
        modules += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages)]
        return modules

    def _freeze(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetBackbone:
        """Set train/eval mode, keeping frozen stages in eval mode (fixed BN statistics)."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: x float [B, 3, H, W], normalised.
        Returns C3 [B, c3, H/8, W/8], C4 (/16), C5 (/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5
