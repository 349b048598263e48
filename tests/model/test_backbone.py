"""ResNet backbone: torchvision key names and shapes, strict loading, freezing.

Run:

    .venv/bin/python -m pytest tests/model/test_backbone.py -q
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detector.config import ModelConfig
from detector.model.backbone import FrozenBatchNorm2d, ResNetBackbone
from detector.model.build import build_model
from detector.model.pretrained import PretrainedWeightsError, load_resnet_weights

# torchvision's published ResNet tables: (block, blocks per stage, expansion).
_TORCHVISION = {
    "resnet18": ("basic", (2, 2, 2, 2), 1),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 4),
}


def _bn(prefix: str, channels: int) -> dict[str, list[int]]:
    table = {
        f"{prefix}.{name}": [channels] for name in ("weight", "bias", "running_mean", "running_var")
    }
    table[f"{prefix}.num_batches_tracked"] = []
    return table


def torchvision_resnet_shapes(name: str) -> dict[str, list[int]]:
    """Key -> shape of torchvision's `resnetNN().state_dict()`,
    written out from the paper's table."""
    kind, blocks, expansion = _TORCHVISION[name]
    table = {"conv1.weight": [64, 3, 7, 7], **_bn("bn1", 64)}
    in_channels = 64
    for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True), start=1):
        for index in range(count):
            p = f"layer{stage}.{index}"
            if kind == "basic":
                table[f"{p}.conv1.weight"] = [width, in_channels, 3, 3]
                table.update(_bn(f"{p}.bn1", width))
                table[f"{p}.conv2.weight"] = [width, width, 3, 3]
                table.update(_bn(f"{p}.bn2", width))
            else:
                table[f"{p}.conv1.weight"] = [width, in_channels, 1, 1]
                table.update(_bn(f"{p}.bn1", width))
                table[f"{p}.conv2.weight"] = [width, width, 3, 3]
                table.update(_bn(f"{p}.bn2", width))
                table[f"{p}.conv3.weight"] = [width * expansion, width, 1, 1]
                table.update(_bn(f"{p}.bn3", width * expansion))
            if index == 0 and (stage > 1 or in_channels != width * expansion):
                table[f"{p}.downsample.0.weight"] = [width * expansion, in_channels, 1, 1]
                table.update(_bn(f"{p}.downsample.1", width * expansion))
            in_channels = width * expansion
    table["fc.weight"] = [1000, 512 * expansion]
    table["fc.bias"] = [1000]
    return table


def fake_torchvision_file(
    name: str, path, *, drop_batches_tracked: bool = False
) -> dict[str, torch.Tensor]:
    """Write a state dict with torchvision's keys and shapes; each tensor a distinct constant."""
    state = {}
    for index, (key, shape) in enumerate(torchvision_resnet_shapes(name).items()):
        if key.endswith("num_batches_tracked"):
            if drop_batches_tracked:
                continue
            state[key] = torch.tensor(index, dtype=torch.long)
        else:
            state[key] = torch.full(shape, 0.001 * (index + 1))
    torch.save(state, path)
    return state


def test_hand_written_tables_pin_known_shapes() -> None:
    r18, r50 = torchvision_resnet_shapes("resnet18"), torchvision_resnet_shapes("resnet50")
    assert r18["layer1.0.conv1.weight"] == [64, 64, 3, 3]
    assert "layer1.0.downsample.0.weight" not in r18
    assert r18["layer2.0.downsample.0.weight"] == [128, 64, 1, 1]
    assert r50["layer1.0.conv3.weight"] == [256, 64, 1, 1]
    assert r50["layer1.0.downsample.0.weight"] == [256, 64, 1, 1]
    assert r50["layer4.2.conv2.weight"] == [512, 512, 3, 3]
    assert r50["fc.weight"] == [1000, 2048]
    assert len([k for k in r18 if k.endswith(".weight")]) == 41  # 20 convs + 20 norms + fc


@pytest.mark.parametrize("name,depth", [("resnet18", 18), ("resnet50", 50)])
@pytest.mark.parametrize("freeze_bn", [False, True])
def test_backbone_keys_and_shapes_match_torchvision(name: str, depth: int, freeze_bn: bool) -> None:
    expected = {k: v for k, v in torchvision_resnet_shapes(name).items() if not k.startswith("fc.")}
    state = ResNetBackbone(depth=depth, freeze_bn=freeze_bn).state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == expected


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_file_loads_strictly_through_config(name: str, tmp_path) -> None:
    path = tmp_path / f"{name}.pth"
    saved = fake_torchvision_file(name, path)
    model = build_model(ModelConfig(backbone=name, pretrained=str(path)), num_classes=3)
    loaded = model.backbone.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key
    assert not any(k.startswith("fc.") for k in loaded)


def test_file_without_num_batches_tracked_loads(tmp_path) -> None:
    path = tmp_path / "old.pth"
    saved = fake_torchvision_file("resnet18", path, drop_batches_tracked=True)
    backbone = ResNetBackbone(depth=18)
    load_resnet_weights(backbone, path)
    assert torch.equal(backbone.layer3[1].conv2.weight, saved["layer3.1.conv2.weight"])
    assert int(backbone.layer3[1].bn2.num_batches_tracked) == 0  # kept from the model


def test_wrong_shapes_and_missing_keys_name_file_and_keys(tmp_path) -> None:
    path = tmp_path / "r18.pth"
    fake_torchvision_file("resnet18", path)
    with pytest.raises(PretrainedWeightsError) as info:
        load_resnet_weights(ResNetBackbone(depth=50), path)  # resnet18 file into resnet50
    message = str(info.value)
    assert str(path) in message and "resnet50" in message
    assert "layer1.0.conv1.weight file [64, 64, 3, 3] vs model [64, 64, 1, 1]" in message
    assert "missing keys: layer1.0.conv3.weight" in message

    state = torch.load(path, weights_only=True)
    del state["layer4.1.bn2.running_var"]
    state["head.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError) as info:
        load_resnet_weights(ResNetBackbone(depth=18), path)
    message = str(info.value)
    assert "1 missing keys: layer4.1.bn2.running_var" in message
    assert "1 unexpected keys: head.weight" in message
    assert "shape mismatches" not in message


def test_missing_unreadable_and_wrong_content_files(tmp_path) -> None:
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_resnet_weights(ResNetBackbone(depth=18), tmp_path / "nope.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match="cannot read"):
        load_resnet_weights(ResNetBackbone(depth=18), broken)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, wrapped)
    with pytest.raises(PretrainedWeightsError, match="plain state dict"):
        load_resnet_weights(ResNetBackbone(depth=18), wrapped)


def test_frozen_stages_have_no_grad_and_fixed_statistics() -> None:
    backbone = ResNetBackbone(depth=18, frozen_stages=2).train()
    frozen = [backbone.conv1, backbone.bn1, backbone.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert not backbone.layer1.training and backbone.layer2.training
    before = backbone.layer1[0].bn1.running_mean.clone()
    before_trained = backbone.layer2[0].bn1.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    assert torch.equal(backbone.layer1[0].bn1.running_mean, before)
    assert not torch.equal(backbone.layer2[0].bn1.running_mean, before_trained)
    with pytest.raises(ValueError, match="frozen_stages"):
        ResNetBackbone(depth=18, frozen_stages=6)


def test_frozen_batchnorm_matches_batchnorm_eval_and_never_updates() -> None:
    batch_norm = nn.BatchNorm2d(8)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean"):
            getattr(batch_norm, name).normal_()
        batch_norm.running_var.uniform_(0.5, 2.0)
    frozen = FrozenBatchNorm2d(8)
    frozen.load_state_dict(batch_norm.state_dict(), strict=True)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(frozen.train()(x), batch_norm.eval()(x))
    backbone = ResNetBackbone(depth=18, freeze_bn=True).train()
    stats = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(v, stats[k]) for k, v in backbone.state_dict().items())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())


@pytest.mark.parametrize("depth,channels", [(18, (128, 256, 512)), (50, (512, 1024, 2048))])
def test_feature_shapes_and_strides(depth: int, channels: tuple[int, int, int]) -> None:
    backbone = ResNetBackbone(depth=depth).eval()
    assert backbone.out_channels == channels
    with torch.no_grad():
        c3, c4, c5 = backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(c.shape) for c in (c3, c4, c5)] == [
        (1, channels[0], 8, 12),
        (1, channels[1], 4, 6),
        (1, channels[2], 2, 3),
    ]


def test_residual_branches_start_at_zero_only_where_trained() -> None:
    trained = ResNetBackbone(depth=18, frozen_stages=2)
    assert (trained.layer2[0].bn2.weight == 0).all() and (trained.layer4[1].bn2.weight == 0).all()
    assert (trained.layer1[0].bn2.weight == 1).all()  # frozen: a zero would stay zero
    frozen_norms = ResNetBackbone(depth=50, freeze_bn=True)
    assert (frozen_norms.layer3[0].bn3.weight == 1).all()


def test_the_config_backbone_names_are_the_depth_map() -> None:
    """`model.backbone`'s choice set (config) and the depths the model builds agree, in order."""
    from detector.config import BACKBONE_NAMES, FROZEN_STAGES
    from detector.model.backbone import BACKBONES

    assert BACKBONE_NAMES == tuple(BACKBONES)
    assert FROZEN_STAGES == 1 + 4  # the stem and layer1..layer4, what frozen_stages can freeze
