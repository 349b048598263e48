"""The model ladder (`model.width`) and BatchNorm folding.

Run:

    .venv/bin/python -m pytest tests/model/test_ladder.py -q
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detector.config import ConfigError, ModelConfig, config_from_dict
from detector.model.backbone import ResNetBackbone, scaled_channels
from detector.model.build import build_model, neck_and_head_channels
from detector.model.fuse import count_batchnorms, fold_batchnorm
from detector.model.pretrained import PretrainedWeightsError, load_resnet_weights


@pytest.mark.parametrize(
    "channels,width,expected",
    [(64, 1.0, 64), (64, 0.5, 32), (64, 0.25, 16), (128, 0.75, 96), (64, 0.1, 8), (512, 0.3, 152)],
)
def test_scaled_channels_round_to_multiples_of_eight(
    channels: int, width: float, expected: int
) -> None:
    assert scaled_channels(channels, width) == expected


@pytest.mark.parametrize(
    "depth,width,expected",
    [
        (18, 1.0, (128, 256, 512)),
        (18, 0.5, (64, 128, 256)),
        (18, 0.25, (32, 64, 128)),
        (50, 0.5, (256, 512, 1024)),
        (34, 0.75, (96, 192, 384)),
    ],
)
def test_backbone_width_scales_every_stage(
    depth: int, width: float, expected: tuple[int, ...]
) -> None:
    backbone = ResNetBackbone(depth=depth, width=width).eval()
    assert backbone.out_channels == expected
    assert backbone.conv1.out_channels == scaled_channels(64, width)
    with torch.no_grad():
        c3, c4, c5 = backbone(torch.zeros(1, 3, 64, 64))
    assert (c3.shape[1], c4.shape[1], c5.shape[1]) == expected


def test_width_one_keeps_torchvision_keys_and_shapes() -> None:
    full = ResNetBackbone(depth=18).state_dict()
    assert ResNetBackbone(depth=18, width=1.0).state_dict().keys() == full.keys()
    assert full["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)


def test_imagenet_weights_refused_below_width_one(tmp_path) -> None:
    weights = tmp_path / "resnet18.pth"
    torch.save(ResNetBackbone(depth=18).state_dict(), weights)
    with pytest.raises(ConfigError, match="model.width.*width 1.0 only"):
        config_from_dict({}, overrides=["model.width=0.5", f"model.pretrained={weights}"])
    with pytest.raises(ValueError, match="width 1.0 only"):
        build_model(ModelConfig(width=0.5, pretrained=str(weights)), 3)
    # And the weight loader itself names the mismatch if a narrow backbone meets the file.
    with pytest.raises(PretrainedWeightsError, match="shape mismatches"):
        load_resnet_weights(ResNetBackbone(depth=18, width=0.5), weights)
    build_model(ModelConfig(width=1.0, pretrained=str(weights)), 3)  # width 1.0 loads


def test_neck_and_head_follow_width_unless_set() -> None:
    assert neck_and_head_channels(ModelConfig(width=1.0)) == (128, 128)
    assert neck_and_head_channels(ModelConfig(width=0.5)) == (64, 64)
    assert neck_and_head_channels(ModelConfig(width=0.25)) == (32, 32)
    assert neck_and_head_channels(ModelConfig(width=0.25, neck_channels=48, head_channels=40)) == (
        48,
        40,
    )
    model = build_model(ModelConfig(width=0.25), 4)
    assert model.neck.out_channels == 32
    assert model.head.levels[0].cls_convs[0][0].out_channels == 32


def test_width_out_of_range_is_a_config_error() -> None:
    for bad in ("0", "-0.5", "8"):
        with pytest.raises(ConfigError, match="model.width"):
            config_from_dict({}, overrides=[f"model.width={bad}"])


def test_depthwise_head_has_the_same_output_and_fewer_parameters() -> None:
    plain = build_model(ModelConfig(width=0.5), 5).eval()
    light = build_model(ModelConfig(width=0.5, head_depthwise=True), 5).eval()
    images = torch.randint(0, 256, (2, 3, 96, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert light(images).shape == plain(images).shape
    head_params = lambda m: sum(p.numel() for p in m.head.parameters())  # noqa: E731
    assert head_params(light) < head_params(plain) / 3


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) * 2 - 1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) - 0.5)


@pytest.mark.parametrize(
    "width,depthwise,frozen", [(1.0, False, False), (0.25, True, False), (0.5, False, True)]
)
def test_folded_model_computes_the_same_function(
    width: float, depthwise: bool, frozen: bool
) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=width, head_depthwise=depthwise, freeze_bn=frozen), 3)
    _randomise_batchnorms(model)
    model.eval()
    folded = fold_batchnorm(model)
    assert count_batchnorms(model) > 0 and count_batchnorms(folded) == 0
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        expected, actual = model(images), folded(images)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    # The original is untouched: its norms still there, still trainable.
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (
        model.state_dict().keys()
        == build_model(ModelConfig(width=width, head_depthwise=depthwise, freeze_bn=frozen), 3)
        .state_dict()
        .keys()
    )


def test_folding_keeps_channels_last_weights() -> None:
    folded = fold_batchnorm(build_model(ModelConfig(width=0.25), 3).eval())
    conv = folded.backbone.layer1[0].conv1
    assert conv.bias is not None and conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_detector_runs_the_folded_network_and_finds_the_same_boxes() -> None:
    import numpy as np

    from detector.inference.backends import TorchBackend
    from detector.inference.predictor import Detector

    torch.manual_seed(0)
    model = build_model(ModelConfig(width=0.25), 3)
    _randomise_batchnorms(model)
    with torch.no_grad():  # raise the priors so that random weights give detections to compare
        for name, parameter in model.named_parameters():
            if name.endswith(("obj_pred.bias", "cls_pred.bias")):
                parameter.fill_(2.0)
    model.eval()
    folded = Detector(model, names=["a", "b", "c"], image_size=64, score_threshold=0.05)
    plain = Detector(
        TorchBackend(model, device=torch.device("cpu"), fold_bn=False),
        names=["a", "b", "c"],
        image_size=64,
        score_threshold=0.05,
    )
    assert (
        count_batchnorms(folded.backend._forward) == 0
        and count_batchnorms(plain.backend._forward) > 0
    )
    assert folded.model is model  # the caller's module, with its norms, stays what Detector exposes
    frame = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    a, b = folded(frame), plain(frame)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_train_compile_falls_back_to_eager_without_a_compiler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    from detector.training.engine import compile_for_training, compiler_missing

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in compiler_missing(torch.device("cpu"))
    lines: list[str] = []
    assert compile_for_training(nn.Linear(2, 2), torch.device("cpu"), lines.append) is None
    assert lines == [
        "train.compile: off, no C++ compiler (g++, c++, clang++ or $CXX) on PATH; "
        "training runs eager"
    ]
