"""Fold BatchNorm into the convolution before it, for inference.

    fast = fold_batchnorm(model)   # a copy; `model` itself is untouched

In eval mode a BatchNorm is a fixed per-channel scale and shift, so it can be
folded into the preceding convolution's weights and bias: the network computes
the same function (to float rounding) with one op fewer per conv. ONNX Runtime
does this at graph optimisation; PyTorch eager does not, and on a CPU the
separate BN pass costs a full read and write of every activation.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from detector.model.backbone import FrozenBatchNorm2d

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> bool:
    conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
    if not (isinstance(conv, nn.Conv2d) and isinstance(norm, _NORMS)):
        return False
    fused = fuse_conv_bn_eval(conv, norm)
    # Keep the weight's memory format (channels_last models stay channels_last).
    if conv.weight.is_contiguous(memory_format=torch.channels_last):
        fused = fused.to(memory_format=torch.channels_last)
    setattr(parent, conv_name, fused)
    setattr(parent, norm_name, nn.Identity())
    return True


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every Conv2d -> BatchNorm pair folded.

    Pairs are the consecutive children of an `nn.Sequential` (conv, norm, act) and
    the ``convN`` / ``bnN`` attributes of ResNet blocks and the stem. The folded
    copy is for inference only: its BN statistics are baked in.

    Args:
        model: any module; it is not modified.

    Returns:
        The folded copy, in eval mode.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for conv_name, norm_name in itertools.pairwise(names):
                _fold_pair(module, conv_name, norm_name)
        for index in (1, 2, 3):
            if hasattr(module, f"conv{index}") and hasattr(module, f"bn{index}"):
                _fold_pair(module, f"conv{index}", f"bn{index}")
    return folded


def count_batchnorms(model: nn.Module) -> int:
    """How many BatchNorm modules (trained or frozen) `model` still has."""
    return sum(isinstance(m, _NORMS) for m in model.modules())
