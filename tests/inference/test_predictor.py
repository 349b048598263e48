"""The Detector API: input kinds and colour orders agree, batches equal singles,
boxes land in original-image pixels, thresholds and class filters hold."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.data.letterbox import boxes_to_original, letterbox_image
from detector.inference.predictor import Detections, Detector
from detector.inference.synthetic import synthetic_frame
from detector.model.head import encode_boxes, make_grid


@pytest.fixture(scope="module")
def detector(checkpoint_path: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint_path, device="cpu", score_threshold=0.25)


def assert_same(a: Detections, b: Detections, atol: float = 0.0) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol)
    np.testing.assert_allclose(a.scores, b.scores, atol=atol)
    assert np.array_equal(a.labels, b.labels) and a.names == b.names


def test_lazy_reexport() -> None:
    import detector

    assert detector.Detector is Detector


def test_path_bgr_and_rgb_inputs_agree(detector: Detector, tmp_path: Path) -> None:
    bgr = synthetic_frame(5, (80, 60))
    path = tmp_path / "frame.png"  # lossless, so the file holds exactly these pixels
    cv2.imwrite(str(path), bgr)
    from_path = detector(path)
    from_bgr = detector(bgr)
    from_rgb = detector(np.ascontiguousarray(bgr[:, :, ::-1]), color="rgb")
    assert from_path.path == str(path) and from_bgr.path is None
    assert (from_path.width, from_path.height) == (80, 60)
    assert_same(from_path, from_bgr)
    assert_same(from_bgr, from_rgb)
    assert from_bgr.boxes.dtype == np.float32 and from_bgr.labels.dtype == np.int64
    assert np.all(np.diff(from_bgr.scores) <= 0) and from_bgr.scores.min() >= 0.25


def test_batch_equals_singles(detector: Detector) -> None:
    same_size = np.stack([synthetic_frame(i, (64, 48)) for i in (0, 7, 20)])
    batched = detector(same_size)
    assert isinstance(batched, list) and len(batched) == 3
    for image, result in zip(same_size, batched, strict=True):
        assert_same(result, detector(image), atol=1e-3)
    mixed = [synthetic_frame(3, (64, 48)), synthetic_frame(3, (50, 90))]
    for image, result in zip(mixed, detector(mixed), strict=True):
        assert_same(result, detector(image), atol=1e-3)
        assert (result.width, result.height) == (image.shape[1], image.shape[0])


def test_boxes_in_original_pixels_match_the_letterbox_reference(detector: Detector) -> None:
    # 64x40 needs no resize (scale 1, 12 px padding above and below), so the CPU
    # letterbox_image path feeds the model exactly the same pixels.
    bgr = synthetic_frame(9, (64, 40))
    ours = detector(bgr)
    letterboxed, lb = letterbox_image(np.ascontiguousarray(bgr[:, :, ::-1]), 64)
    with torch.inference_mode():
        raw = detector.model(torch.from_numpy(letterboxed).permute(2, 0, 1)[None].float())
        (dets,) = detector.model.decode(raw, score_threshold=0.25, iou_threshold=0.45, max_det=300)
    reference = boxes_to_original(dets["boxes"].numpy(), lb)
    np.testing.assert_allclose(ours.boxes, reference, atol=1e-4)
    np.testing.assert_allclose(ours.scores, dets["scores"].numpy(), atol=1e-5)
    assert (
        (ours.boxes[:, [0, 2]] <= 64).all()
        and (ours.boxes[:, [1, 3]] <= 40).all()
        and (ours.boxes >= 0).all()
    )


class FixedBoxModel(torch.nn.Module):
    """Raw output that decodes to the same input-space detections for every image.

    Three cells carry the encoded boxes (hand-computed mapping below) with
    objectness ~1 and one class probability each; every other cell scores ~0.
    """

    strides = (8, 16, 32)
    boxes = torch.tensor([[16.0, 0.0, 48.0, 64.0], [24.0, 32.0, 32.0, 48.0], [0.0, 0.0, 8.0, 8.0]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.last_input = images
        centers, strides = make_grid(*images.shape[-2:], self.strides)
        raw = torch.full((images.shape[0], len(centers), 4 + 1 + 2), -30.0)
        cells = torch.tensor([10, 20, 30])
        raw[:, cells, :4] = encode_boxes(self.boxes, centers[cells], strides[cells])
        raw[:, cells, 4] = 30.0
        raw[:, cells, 5 + self.labels] = torch.logit(self.scores)
        return raw


def test_hand_computed_mapping_filter_and_max_det() -> None:
    model = FixedBoxModel()
    det = Detector(model, names=["a", "b"], image_size=64, device="cpu")
    # A 100 (h) x 50 (w) image in 64: scale 0.64, 32 px wide, 16 px padding on the left.
    result = det(np.zeros((100, 50, 3), np.uint8))
    expected = np.array([[0, 0, 50, 100], [12.5, 50, 25, 75], [0, 0, 0, 12.5]], np.float32)
    np.testing.assert_allclose(result.boxes, expected, atol=1e-4)  # the last box is clipped at x=0
    assert (
        result.label_names == ["a", "b", "b"] and result.names == result.label_names
    )  # public alias
    assert model.last_input.shape == (1, 3, 64, 64)
    only_b = Detector(model, names=["a", "b"], image_size=64, classes=["b"], max_det=1)(
        np.zeros((100, 50, 3), np.uint8)
    )
    assert only_b.labels.tolist() == [1] and only_b.scores.tolist() == pytest.approx([0.8])
    by_index = Detector(model, names=["a", "b"], image_size=64, classes=[0])(
        np.zeros((64, 64, 3), np.uint8)
    )
    assert by_index.names == ["a"]


def test_thresholds_and_class_filter(checkpoint_path: Path) -> None:
    image = synthetic_frame(12, (64, 48))
    everything = Detector.from_checkpoint(checkpoint_path, device="cpu", score_threshold=0.2)(image)
    assert len(everything) > 2 and len(set(everything.labels.tolist())) > 1
    strict = Detector.from_checkpoint(checkpoint_path, device="cpu", score_threshold=0.5)(image)
    assert len(strict) < len(everything) and (strict.scores > 0.5).all()
    capped = Detector.from_checkpoint(
        checkpoint_path, device="cpu", score_threshold=0.2, max_det=2
    )(image)
    assert_same(
        capped,
        Detections(
            everything.boxes[:2],
            everything.scores[:2],
            everything.labels[:2],
            everything.names[:2],
            64,
            48,
        ),
    )
    squares = Detector.from_checkpoint(
        checkpoint_path, device="cpu", score_threshold=0.2, classes=["square"]
    )(image)
    keep = everything.labels == 1
    np.testing.assert_allclose(squares.boxes, everything.boxes[keep], atol=1e-5)
    assert set(squares.names) == {"square"}


def test_to_dict_is_json_ready(detector: Detector) -> None:
    record = json.loads(json.dumps(detector(synthetic_frame(1, (64, 48))).to_dict()))
    assert record["width"] == 64 and record["height"] == 48 and record["detections"]
    first = record["detections"][0]
    assert set(first) == {"box", "score", "label", "name"} and len(first["box"]) == 4


def test_inputs_and_options_that_must_raise(
    detector: Detector, checkpoint_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="uint8"):
        detector(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        detector(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ValueError, match="unknown class 'dog'"):
        Detector.from_checkpoint(checkpoint_path, device="cpu", classes=["dog"])
    with pytest.raises(ValueError, match="score_threshold"):
        Detector.from_checkpoint(checkpoint_path, device="cpu", score_threshold=1.5)
    missing = tmp_path / "nope.png"
    with pytest.raises(ValueError, match="nope.png"):
        detector(missing)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Detector.from_checkpoint(checkpoint_path, device="cuda")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    from detector.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="broken.pt"):
        Detector.from_checkpoint(broken, device="cpu")
    grey = detector(np.full((48, 64), 90, np.uint8))  # grey images are accepted
    assert (grey.width, grey.height) == (64, 48)
    assert detector([]) == []


@pytest.mark.cuda
def test_cuda_half_matches_fp32(checkpoint_path: Path) -> None:
    image = synthetic_frame(4, (640, 480))
    fp32 = Detector.from_checkpoint(checkpoint_path, device="cuda")(image)
    for half in (True, "bf16"):
        low = Detector.from_checkpoint(checkpoint_path, device="cuda", half=half)(image)
        assert len(low) > 0
        # Near-tied scores may swap order in low precision: match each top fp32 box to any box.
        for box in fp32.boxes[:3]:
            assert np.abs(low.boxes - box).max(axis=1).min() < 4.0
    cpu = Detector.from_checkpoint(checkpoint_path, device="cpu")(image)
    np.testing.assert_allclose(fp32.boxes, cpu.boxes, atol=0.1)
