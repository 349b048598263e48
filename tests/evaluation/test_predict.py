"""predict_loader and evaluation_detector: the one prediction path, on a backend of known boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.config import Config
from detector.data.letterbox import boxes_to_input, compute_letterbox
from detector.evaluation.dataset_predict import evaluation_detector, predict_loader
from detector.inference.backends import NMSOutput
from detector.inference.predictor import Detector
from detector.model.build import build_model

SIZE = 64
# original (height, width) and the boxes we want back in original pixels
IMAGES = {
    11: ((100, 200), np.array([[10, 20, 60, 90], [150, 0, 200, 100]], np.float32)),
    12: ((300, 150), np.array([[0, 0, 150, 300]], np.float32)),
    13: ((64, 64), np.zeros((0, 4), np.float32)),  # no detections
}


class KnownBoxesBackend:
    """forward reads each image's id from a pixel and returns its known boxes in input pixels."""

    device = torch.device("cpu")
    fixed_size = None

    def forward(self, batch: torch.Tensor, selection: object = None) -> NMSOutput:
        rows = torch.zeros(len(batch), 3, 6)
        counts = []
        for index, image_id in enumerate(batch[:, 0, 0, 0].round().long().tolist()):
            (height, width), boxes = IMAGES[image_id]
            k = len(boxes)
            rows[index, :k, :4] = torch.from_numpy(
                boxes_to_input(boxes, compute_letterbox(height, width, SIZE))
            )
            rows[index, :k, 4] = torch.linspace(0.9, 0.5, k)
            rows[index, :k, 5] = torch.arange(k).float()
            counts.append(k)
        return NMSOutput(rows, torch.tensor(counts))


def make_loader(ids_per_batch: list[list[int]]) -> list[dict]:
    batches = []
    for ids in ids_per_batch:
        images = torch.zeros(len(ids), 3, SIZE, SIZE, dtype=torch.uint8)
        images[:, 0, 0, 0] = torch.tensor(ids, dtype=torch.uint8)
        metas = [
            {"image_id": i, "path": f"{i}.jpg", "letterbox": compute_letterbox(*IMAGES[i][0], SIZE)}
            for i in ids
        ]
        batches.append({"images": images, "targets": [], "metas": metas})
    return batches


def known_detector(score_threshold: float = 0.25, max_det: int = 7) -> Detector:
    return Detector(
        KnownBoxesBackend(),
        names=["a", "b"],
        image_size=SIZE,
        score_threshold=score_threshold,
        iou_threshold=0.6,
        max_det=max_det,
    )


def test_boxes_come_back_in_original_pixels() -> None:
    predictions = predict_loader(known_detector(), make_loader([[11, 12], [13]]))
    assert set(predictions) == {11, 12, 13}
    for image_id, (_, boxes) in IMAGES.items():
        pred = predictions[image_id]
        np.testing.assert_allclose(pred["boxes"], boxes, atol=1e-3)
        assert pred["boxes"].dtype == np.float32 and pred["boxes"].shape == (len(boxes), 4)
        assert pred["labels"].dtype == np.int64 and pred["scores"].shape == (len(boxes),)
    np.testing.assert_allclose(predictions[11]["scores"], [0.9, 0.5])
    assert predictions[11]["labels"].tolist() == [0, 1]


def test_detector_thresholds_apply() -> None:
    predictions = predict_loader(
        known_detector(score_threshold=0.6, max_det=1), make_loader([[11]])
    )
    np.testing.assert_allclose(predictions[11]["scores"], [0.9])  # 0.5 under the threshold


def test_duplicate_image_ids_raise() -> None:
    with pytest.raises(ValueError, match=r"image id 11 \(11.jpg\)"):
        predict_loader(known_detector(), make_loader([[11], [11]]))


def test_empty_loader_gives_no_predictions() -> None:
    assert predict_loader(known_detector(), []) == {}


def test_evaluation_detector_takes_eval_thresholds_and_amp_dtype() -> None:
    cfg = Config()
    cfg.model.backbone, cfg.model.pretrained, cfg.model.image_size = "resnet18", False, SIZE
    cfg.eval.score_threshold, cfg.eval.iou_threshold, cfg.eval.max_det = 0.05, 0.55, 17
    cfg.train.amp, cfg.train.amp_dtype = True, "fp16"
    model = build_model(cfg.model, num_classes=2).train()
    detector = evaluation_detector(model, cfg, ["a", "b"], torch.device("cpu"))
    assert (detector.score_threshold, detector.iou_threshold, detector.max_det) == (0.05, 0.55, 17)
    assert detector.image_size == SIZE and detector.class_names == ["a", "b"]
    assert detector.autocast_dtype is None  # AMP is CUDA only
    assert not model.training  # the backend scores in eval mode


@pytest.mark.cuda
def test_evaluation_detector_on_cuda_autocasts_at_train_amp_dtype() -> None:
    cfg = Config()
    cfg.model.backbone, cfg.model.pretrained, cfg.model.image_size = "resnet18", False, SIZE
    cfg.train.amp, cfg.train.amp_dtype = True, "fp16"
    detector = evaluation_detector(
        build_model(cfg.model, num_classes=2).cuda(), cfg, ["a", "b"], torch.device("cuda")
    )
    assert detector.autocast_dtype == torch.float16
    cfg.train.amp_dtype = "bf16"
    detector = evaluation_detector(
        build_model(cfg.model, num_classes=2).cuda(), cfg, ["a", "b"], torch.device("cuda")
    )
    assert detector.autocast_dtype == torch.bfloat16


class _NoWeights(torch.nn.Module):
    """A model without parameters: `.to("cuda")` moves nothing, so no GPU is needed."""

    strides = (8, 16, 32)


def test_validation_leaves_the_cudnn_flags_training_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """With train.deterministic, validation on CUDA must not switch cudnn autotuning on for good."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cfg = Config()
    evaluation_detector(_NoWeights(), cfg, ["a"], torch.device("cuda"))  # what validation builds
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("deterministic", [False, True])
def test_inference_commands_autotune_unless_deterministic(
    monkeypatch: pytest.MonkeyPatch, deterministic: bool
) -> None:
    from detector.inference.backends import autotune_convolutions

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    autotune_convolutions(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False  # nothing to tune off CUDA
    autotune_convolutions(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is (not deterministic)
