"""YOLODetector end to end: shapes, batch = one by one, config mapping, a tiny overfit.

Run:

    .venv/bin/python -m pytest tests/model/test_model.py -q
"""

from __future__ import annotations

import pytest
import torch

from detector.config import ModelConfig
from detector.model import YOLODetector, build_loss, build_model
from detector.model.backbone import ResNetBackbone
from detector.postprocess import box_iou


def _small_model(num_classes: int = 3) -> YOLODetector:
    cfg = ModelConfig(
        backbone="resnet18", image_size=64, neck_channels=32, head_channels=32, head_convs=1
    )
    return build_model(cfg, num_classes)


@pytest.mark.parametrize("height,width", [(64, 64), (96, 64), (32, 128)])
def test_raw_shape_for_several_sizes(height: int, width: int) -> None:
    model = _small_model().eval()
    with torch.no_grad():
        raw = model(torch.zeros(2, 3, height, width, dtype=torch.uint8))
    cells = sum((height // s) * (width // s) for s in (8, 16, 32))
    assert raw.shape == (2, cells, 5 + 3) and raw.dtype == torch.float32
    centers, strides = model.grid(height, width)
    assert centers.shape == (cells, 2) and strides.shape == (cells,)
    model.train()
    assert model(torch.zeros(2, 3, height, width)).shape == raw.shape  # same type in train mode


def test_batch_equals_images_one_by_one_and_uint8_equals_float() -> None:
    torch.manual_seed(0)
    model = _small_model().eval()
    images = torch.randint(0, 256, (3, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        batched = model(images)
        single = torch.cat([model(image[None]) for image in images])
        as_float = model(images.float())
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, as_float, atol=0, rtol=0)
    dets = model.decode(batched, input_size=(64, 96), score_threshold=0.0)
    dets_single = [
        model.decode(raw[None], input_size=(64, 96), score_threshold=0.0)[0] for raw in batched
    ]
    for d, s in zip(dets, dets_single, strict=True):
        assert torch.equal(d["boxes"], s["boxes"]) and torch.equal(d["labels"], s["labels"])


def test_normalisation_uses_configured_mean_and_std() -> None:
    model = YOLODetector(
        backbone=ResNetBackbone(depth=18), num_classes=1, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0]
    )
    torch.testing.assert_close(model.mean.flatten(), torch.full((3,), 127.5))
    torch.testing.assert_close(model.std.flatten(), torch.tensor([63.75, 127.5, 255.0]))
    assert {"mean", "std"} <= set(model.state_dict())


def test_bad_inputs_and_config_raise() -> None:
    model = _small_model().eval()
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.zeros(1, 3, 64, 48))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="model.backbone"):
        build_model(ModelConfig(backbone="vgg16"), 3)


def test_tiny_overfit_recovers_the_boxes() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone="resnet18", image_size=64, neck_channels=32, head_channels=32, head_convs=1
    )
    model, loss_fn = build_model(cfg, 2), build_loss(cfg, 2)
    images = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    images[0, :, 4:28, 6:40] = 255  # a white box, class 0
    images[0, 0, 34:60, 36:58] = 200  # a red box, class 1
    gt_boxes = torch.tensor([[6.0, 4.0, 40.0, 28.0], [36.0, 34.0, 58.0, 60.0]])
    targets = [
        {
            "boxes": gt_boxes,
            "labels": torch.tensor([0, 1]),
            "ignore": torch.zeros(2, dtype=torch.bool),
        }
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(50):
        terms = loss_fn(model(images), targets)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < losses[0] / 4
    model.eval()
    with torch.no_grad():
        (dets,) = model.decode(model(images), score_threshold=0.3)
    assert set(dets["labels"][:2].tolist()) == {0, 1}  # the two best detections, one per class
    for label in (0, 1):
        best = dets["boxes"][dets["labels"] == label][:1]  # dets are sorted by score
        assert box_iou(best, gt_boxes[label : label + 1]).item() > 0.7
