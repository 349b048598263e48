"""predict_dataset with a fake model whose decode returns known network-input boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from detector.data.letterbox import boxes_to_input, compute_letterbox
from detector.evaluation.predict import predict_dataset

SIZE = 64
# original (height, width) and the boxes we want back in original pixels
IMAGES = {
    11: ((100, 200), np.array([[10, 20, 60, 90], [150, 0, 200, 100]], np.float32)),
    12: ((300, 150), np.array([[0, 0, 150, 300]], np.float32)),
    13: ((64, 64), np.zeros((0, 4), np.float32)),  # no detections
}


class FakeDetector(nn.Module):
    """forward: one number per image (its id, read from a pixel); decode: known boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.decode_calls: list[dict] = []
        self.mode_seen: list[bool] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.mode_seen.append(self.training)
        return images[:, 0, 0, 0].float() * self.scale  # [B]: the image id

    def decode(self, raw: torch.Tensor, *, score_threshold: float, iou_threshold: float, max_det: int) -> list[dict]:
        self.decode_calls.append({"score_threshold": score_threshold, "iou_threshold": iou_threshold,
                                  "max_det": max_det, "dtype": raw.dtype})
        out = []
        for image_id in raw.round().long().tolist():
            (height, width), boxes = IMAGES[image_id]
            network_boxes = boxes_to_input(boxes, compute_letterbox(height, width, SIZE))
            k = len(boxes)
            out.append({"boxes": torch.from_numpy(network_boxes), "scores": torch.linspace(0.9, 0.5, k),
                        "labels": torch.arange(k)})
        return out


def make_loader(ids_per_batch: list[list[int]]) -> list[dict]:
    batches = []
    for ids in ids_per_batch:
        images = torch.zeros(len(ids), 3, SIZE, SIZE, dtype=torch.uint8)
        images[:, 0, 0, 0] = torch.tensor(ids, dtype=torch.uint8)
        metas = [{"image_id": i, "path": f"{i}.jpg", "letterbox": compute_letterbox(*IMAGES[i][0], SIZE)} for i in ids]
        batches.append({"images": images, "targets": [], "metas": metas})
    return batches


def test_boxes_come_back_in_original_pixels():
    model = FakeDetector().train()
    predictions = predict_dataset(model, make_loader([[11, 12], [13]]), device="cpu",
                                  score_threshold=0.25, iou_threshold=0.6, max_det=7)
    assert set(predictions) == {11, 12, 13}
    for image_id, (_, boxes) in IMAGES.items():
        pred = predictions[image_id]
        np.testing.assert_allclose(pred["boxes"], boxes, atol=1e-3)
        assert pred["boxes"].dtype == np.float32 and pred["boxes"].shape == (len(boxes), 4)
        assert pred["labels"].dtype == np.int64 and pred["scores"].shape == (len(boxes),)
    np.testing.assert_allclose(predictions[11]["scores"], [0.9, 0.5])
    assert model.decode_calls[0] == {"score_threshold": 0.25, "iou_threshold": 0.6, "max_det": 7,
                                     "dtype": torch.float32}
    assert model.mode_seen == [False, False]  # eval mode while predicting
    assert model.training  # and restored afterwards


def test_duplicate_image_ids_raise():
    with pytest.raises(ValueError, match="image id 11"):
        predict_dataset(FakeDetector(), make_loader([[11], [11]]), device="cpu",
                        score_threshold=0.1, iou_threshold=0.5, max_det=10)


def test_amp_on_cpu_is_plain_fp32():
    predictions = predict_dataset(FakeDetector(), make_loader([[12]]), device="cpu", score_threshold=0.1,
                                  iou_threshold=0.5, max_det=10, amp=True)
    np.testing.assert_allclose(predictions[12]["boxes"], IMAGES[12][1], atol=1e-3)


@pytest.mark.cuda
def test_cuda_with_amp_matches_cpu():
    model = FakeDetector()
    loader = make_loader([[11, 12, 13]])
    on_cpu = predict_dataset(model, loader, device="cpu", score_threshold=0.1, iou_threshold=0.5, max_det=10)
    on_gpu = predict_dataset(model.cuda(), loader, device="cuda", score_threshold=0.1, iou_threshold=0.5,
                             max_det=10, amp=True)
    for image_id in IMAGES:
        np.testing.assert_allclose(on_gpu[image_id]["boxes"], on_cpu[image_id]["boxes"], atol=1e-3)
