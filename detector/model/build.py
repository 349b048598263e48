"""The one place where the `model:` config becomes a model and a loss.

Usage:

    from detector.config import load_config
    from detector.model.build import build_model, build_loss
    cfg = load_config("configs/shapes.yaml")
    model = build_model(cfg.model, num_classes=5)
    loss_fn = build_loss(cfg.model, num_classes=5)

    from detector.checkpoint import load_checkpoint
    model, cfg = model_from_checkpoint(load_checkpoint("best.pt"), device="cpu")  # eval mode
"""

from __future__ import annotations

from typing import Any

import torch

from detector.checkpoint import CheckpointError
from detector.config import Config, ModelConfig, config_from_dict
from detector.model.backbone import BACKBONES, ResNetBackbone, scaled_channels
from detector.model.imagenet import pretrained_path
from detector.model.loss import YOLOLoss
from detector.model.pretrained import load_resnet_weights
from detector.model.yolo import STRIDES, YOLODetector

BASE_NECK_CHANNELS = 128  # neck and head width at model.width 1.0


def neck_and_head_channels(model_cfg: ModelConfig) -> tuple[int, int]:
    """(neck, head) channels: the configured values, or 128 scaled by `model.width`."""
    follow = scaled_channels(BASE_NECK_CHANNELS, model_cfg.width)
    neck = model_cfg.neck_channels if model_cfg.neck_channels is not None else follow
    head = model_cfg.head_channels if model_cfg.head_channels is not None else follow
    return neck, head


def build_model(model_cfg: ModelConfig, num_classes: int) -> YOLODetector:
    """Build a `YOLODetector` and load `model.pretrained` into its backbone if set.

    `model.pretrained: imagenet` (or `imagenet-v2`) takes torchvision's file from torch's
    cache, downloading it there first if absent (`detector.model.imagenet`); a path loads
    that file.

    Args:
        model_cfg: the `model:` config section.
        num_classes: number of classes C.

    Returns:
        The detector in train mode, on CPU.

    Raises:
        ValueError: unknown backbone, or ImageNet weights asked for at a width other than 1.0.
        PretrainedWeightsError: the weight file is missing or does not fit, or a named
            file could not be downloaded (one line naming the URL and the cache path).
    """
    if model_cfg.backbone not in BACKBONES:
        raise ValueError(
            f"model.backbone: {model_cfg.backbone!r} is not one of {sorted(BACKBONES)}"
        )
    if model_cfg.pretrained and model_cfg.width != 1.0:
        raise ValueError(
            f"model.width={model_cfg.width:g} with model.pretrained: "
            "ImageNet ResNet weights exist at width 1.0 only"
        )
    backbone = ResNetBackbone(
        depth=BACKBONES[model_cfg.backbone],
        frozen_stages=model_cfg.frozen_stages,
        freeze_bn=model_cfg.freeze_bn,
        width=model_cfg.width,
    )
    if model_cfg.pretrained:
        load_resnet_weights(backbone, pretrained_path(model_cfg.pretrained, model_cfg.backbone))
    neck_channels, head_channels = neck_and_head_channels(model_cfg)
    model = YOLODetector(
        backbone=backbone,
        num_classes=num_classes,
        neck_channels=neck_channels,
        head_channels=head_channels,
        head_convs=model_cfg.head_convs,
        head_depthwise=model_cfg.head_depthwise,
        mean=model_cfg.mean,
        std=model_cfg.std,
    )
    # channels_last (NHWC): oneDNN on CPU and tensor cores on CUDA run these convolutions
    # faster (+10% measured at 160-192 px on CPU); values and state-dict keys are unchanged.
    return model.to(memory_format=torch.channels_last)


def build_loss(model_cfg: ModelConfig, num_classes: int) -> YOLOLoss:
    """Build the `YOLOLoss` matching `build_model(model_cfg, num_classes)`."""
    return YOLOLoss(num_classes=num_classes, strides=STRIDES)


def model_from_checkpoint(
    ckpt: dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[YOLODetector, Config]:
    """Build the model a checkpoint describes and load its inference weights.

    Needs nothing but the checkpoint: the backbone's `model.pretrained` path is
    ignored (the checkpoint already holds every weight), and the class count
    comes from the stored `names`.

    Args:
        ckpt: a dict from `detector.checkpoint.load_checkpoint`.
        device: where to put the model.

    Returns:
        (model in eval mode on `device`, the resolved Config stored in the checkpoint).

    Raises:
        CheckpointError: the stored config is invalid or the weights do not fit the model.
    """
    try:
        cfg = config_from_dict(ckpt["config"], source="checkpoint config")
    except ValueError as exc:
        raise CheckpointError(f"checkpoint holds an invalid config ({exc})") from exc
    names = list(ckpt["names"])
    build_cfg = config_from_dict(
        ckpt["config"], source="checkpoint config", overrides=["model.pretrained=null"]
    )
    model = build_model(build_cfg.model, len(names))
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint weights do not fit the {cfg.model.backbone} model ({exc})"
        ) from exc
    return model.to(device).eval(), cfg
