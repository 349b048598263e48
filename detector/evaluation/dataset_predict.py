"""Predict a dataset split with a `Detector` (checkpoint or exported file), for evaluation.

    detector = Detector.from_checkpoint("best.onnx", score_threshold=0.001, iou_threshold=0.6, max_det=100)
    split_records, predictions = predict_split(detector, cfg, "val")
    predictions[image_id]["boxes"]     # float32 [K, 4] xyxy original-image px

The loader is the evaluation loader `detector evaluate` uses for checkpoints
(the same letterbox), run at the detector's input size; the detections go
through `Detector.predict_letterboxed`, the selection every backend shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.inference.predictor import Detector


def predict_loader(detector: Detector, loader: Any, *, progress: bool = False) -> dict[int, dict[str, np.ndarray]]:
    """image_id -> {boxes float32 [K, 4] original xyxy px, scores [K], labels int64 [K]}.

    Args:
        detector: any backend; its `image_size` must be the loader's.
        loader: batches as `collate_batch` makes them ("images" uint8 [B, 3, S, S], "metas").
        progress: show a tqdm bar.
    """
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="predict", unit="batch", leave=False)
    predictions: dict[int, dict[str, np.ndarray]] = {}
    for batch in loader:
        metas = batch["metas"]
        results = detector.predict_letterboxed(batch["images"], [meta["letterbox"] for meta in metas])
        for result, meta in zip(results, metas, strict=True):
            image_id = int(meta["image_id"])
            if image_id in predictions:
                raise ValueError(f"image id {image_id} ({meta.get('path', '?')}) appears twice in the loader")
            predictions[image_id] = {"boxes": result.boxes.reshape(-1, 4), "scores": result.scores,
                                     "labels": result.labels}
    return predictions


def predict_split(detector: Detector, cfg: Any, split: str, *, progress: bool = False,
                  source: str = "the model") -> tuple[Any, dict[int, dict[str, np.ndarray]]]:
    """Build the evaluation loader of `cfg.data`'s `split` at the detector's size and predict it.

    Returns:
        (SplitRecords, predictions as `predict_loader` gives them).

    Raises:
        ValueError: the dataset's class names differ from the detector's (both named).
    """
    from detector.data.loading.dataset import build_dataloader

    cfg.model.image_size = detector.image_size
    loader, split_records = build_dataloader(cfg, split, train=False)
    if list(split_records.names) != list(detector.names):
        raise ValueError(f"class names differ: {source} has {list(detector.names)}, "
                         f"the dataset has {list(split_records.names)}")
    return split_records, predict_loader(detector, loader, progress=progress)
