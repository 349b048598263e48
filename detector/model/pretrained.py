"""Load a torchvision ResNet ImageNet state dict from a local file, strictly.

    backbone = ResNetBackbone(depth=50)
    load_resnet_weights(backbone, "weights/resnet50-0676ba61.pth")

The file must be a plain state dict with torchvision's key names (what
`torchvision.models.resnet50(weights=...).state_dict()` saves and what the
download URLs serve). The classifier (``fc.*``) is dropped. Every other key must
match the backbone in name and shape; ``*.num_batches_tracked`` may be missing
(older torchvision files lack it; the model's own counter is kept). Anything
else raises `PretrainedWeightsError` naming the file and the first mismatches.
`model.pretrained: imagenet` names such a file instead of a path: `detector.model.imagenet`
fetches it into torch's cache and `build_model` loads it from there with this function.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

_SHOWN = 5  # mismatching keys listed in an error


class PretrainedWeightsError(ValueError):
    """A weight file that is missing, unreadable, or does not fit the backbone."""


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: pretrained weight file not found (model.pretrained)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with code, truncated file ...
        raise PretrainedWeightsError(f"{path}: cannot read as a torch state dict ({exc})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise PretrainedWeightsError(
            f"{path}: expected a plain state dict (str -> Tensor) with torchvision ResNet keys"
        )
    return state


def _describe_mismatch(
    path: Path,
    model_name: str,
    file_state: dict[str, torch.Tensor],
    model_state: dict[str, torch.Tensor],
) -> str | None:
    """A one-paragraph description of what does not match, or None when all fits."""
    missing = [
        k for k in model_state if k not in file_state and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in file_state if k not in model_state]
    shapes = [
        f"{k} file {list(file_state[k].shape)} vs model {list(model_state[k].shape)}"
        for k in model_state
        if k in file_state and file_state[k].shape != model_state[k].shape
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOWN])}{more}")
    return f"{path}: does not match {model_name}: " + "; ".join(parts)


def load_resnet_weights(backbone: nn.Module, path: str | Path) -> None:
    """Copy a torchvision ResNet state dict into `backbone` (in place).

    Args:
        backbone: a `ResNetBackbone` (its `depth` names it in errors).
        path: local file written by `torch.save(state_dict)`.

    Raises:
        PretrainedWeightsError: file missing or unreadable, or keys/shapes that do
            not match (the message names the file and the first mismatches).
    """
    path = Path(path)
    file_state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    model_state = backbone.state_dict()
    model_name = f"resnet{getattr(backbone, 'depth', '?')}"
    problem = _describe_mismatch(path, model_name, file_state, model_state)
    if problem:
        raise PretrainedWeightsError(problem)
    for key, value in model_state.items():
        file_state.setdefault(key, value)  # only num_batches_tracked can be absent here
    backbone.load_state_dict(file_state, strict=True)
