"""decode_detections: the class filter acts before top-k, NMS and max_det."""

from __future__ import annotations

import pytest
import torch

from detector.model.decode import decode_detections

STRIDES = (8, 16, 32)


def _raw(seed: int, num_classes: int = 3, side: int = 64, batch: int = 2) -> torch.Tensor:
    cells = sum((side // s) ** 2 for s in STRIDES)
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(batch, cells, 5 + num_classes, generator=generator)
    raw[..., 2:4] = raw[..., 2:4].clamp(-1, 1)  # moderate box sizes
    return raw


def _decode(raw: torch.Tensor, **kwargs) -> list[dict[str, torch.Tensor]]:
    return decode_detections(raw, strides=STRIDES, input_size=(64, 64), iou_threshold=0.5, **kwargs)


@pytest.mark.parametrize("seed", range(5))
def test_class_filter_equals_filtering_afterwards_when_nothing_is_cut(seed: int) -> None:
    raw = _raw(seed)
    everything = _decode(raw, score_threshold=0.05, max_det=10_000, pre_nms_topk=10_000)
    only = _decode(raw, score_threshold=0.05, max_det=10_000, pre_nms_topk=10_000, classes=[2, 0])
    for all_dets, dets in zip(everything, only, strict=True):
        keep = torch.isin(all_dets["labels"], torch.tensor([0, 2]))
        assert keep.any() and not keep.all()
        assert torch.equal(dets["boxes"], all_dets["boxes"][keep])
        assert torch.equal(dets["labels"], all_dets["labels"][keep])
        # The same sigmoid over a narrower tensor may round the last bit differently.
        torch.testing.assert_close(dets["scores"], all_dets["scores"][keep], rtol=1e-6, atol=0)


def test_other_classes_do_not_take_the_max_det_places() -> None:
    raw = _raw(0, num_classes=2)
    raw[..., 5] = 8.0  # class 0 scores high everywhere
    raw[..., 6] = -1.0  # class 1 lower, but above the threshold
    unfiltered = _decode(raw, score_threshold=0.01, max_det=5)
    assert all((dets["labels"] == 0).all() for dets in unfiltered)
    filtered = _decode(raw, score_threshold=0.01, max_det=5, classes=[1])
    for dets in filtered:
        assert len(dets["labels"]) == 5 and (dets["labels"] == 1).all()


def test_empty_and_bad_class_lists() -> None:
    raw = _raw(1)
    assert all(len(dets["boxes"]) == 0 for dets in _decode(raw, score_threshold=0.0, classes=[]))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        _decode(raw, classes=[3])
    with pytest.raises(ValueError, match=r"0\.\.2"):
        _decode(raw, classes=[-1])
