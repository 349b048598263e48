"""Run a model over a dataset and collect per-image detections in original-image pixels.

    from detector.evaluation.predict import predict_dataset
    loader, split = build_dataloader(cfg, "val", train=False)
    predictions = predict_dataset(model, loader, device="cuda", score_threshold=0.001,
                                  iou_threshold=0.6, max_det=100, amp=True)
    predictions[image_id]["boxes"]   # float32 [K, 4] xyxy in the original image

The model's `decode` returns boxes in network-input (letterboxed) pixels; each is
mapped back with the image's own letterbox geometry from the batch metas.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from detector.data.letterbox import boxes_to_original


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked (fp16 where bf16 is unsupported); nothing otherwise."""
    if not amp or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


@torch.no_grad()
def predict_dataset(
    model: torch.nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    device: str | torch.device,
    score_threshold: float,
    iou_threshold: float,
    max_det: int,
    amp: bool = False,
    progress: bool = False,
) -> dict[int, dict[str, np.ndarray]]:
    """Detections for every image of `loader`.

    Args:
        model: has `model(images) -> raw` and `model.decode(raw, score_threshold=...,
            iou_threshold=..., max_det=...) -> list of {boxes [K, 4] network-input xyxy,
            scores [K], labels [K]}` (a DDP wrapper's `.module` is used for decode).
        loader: batches as `collate_batch` makes them: {"images" uint8 [B, 3, S, S],
            "metas": [{"image_id", "letterbox", ...}], ...}.
        device: where the model runs.
        score_threshold, iou_threshold, max_det: passed to decode.
        amp: autocast the forward pass (CUDA only; decode runs in float32).
        progress: show a tqdm bar.

    Returns:
        image_id -> {"boxes": float32 [K, 4] xyxy original-image px (clipped to the
        image), "scores": float32 [K], "labels": int64 [K]}.
    """
    device = torch.device(device)
    network = getattr(model, "module", model)
    was_training = network.training
    network.eval()
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="predict", unit="batch", leave=False)
    predictions: dict[int, dict[str, np.ndarray]] = {}
    try:
        for batch in loader:
            images = batch["images"].to(device, non_blocking=True)
            with _autocast(device, amp):
                raw = model(images)
            detections = network.decode(
                raw.float(), score_threshold=score_threshold, iou_threshold=iou_threshold, max_det=max_det
            )
            if len(detections) != len(batch["metas"]):
                raise ValueError(f"decode returned {len(detections)} results for {len(batch['metas'])} images")
            for det, meta in zip(detections, batch["metas"], strict=True):
                image_id = int(meta["image_id"])
                if image_id in predictions:
                    raise ValueError(f"image id {image_id} ({meta.get('path', '?')}) appears twice in the loader")
                boxes = boxes_to_original(det["boxes"].detach().float().cpu(), meta["letterbox"])
                predictions[image_id] = {
                    "boxes": boxes.numpy().astype(np.float32).reshape(-1, 4),
                    "scores": det["scores"].detach().float().cpu().numpy().reshape(-1),
                    "labels": det["labels"].detach().cpu().numpy().astype(np.int64).reshape(-1),
                }
    finally:
        network.train(was_training)
    return predictions
