"""Predict a dataset split with a `Detector`: the one prediction path of validation and evaluation.

    detector = evaluation_detector(model, cfg, names, device)         # a model in memory (training)
    detector = Detector.from_checkpoint(
        "best.onnx", score_threshold=0.001, iou_threshold=0.6, max_det=100
    )
    split_records, predictions = predict_split(detector, cfg, "val")
    predictions[image_id]["boxes"]     # float32 [K, 4] xyxy original-image px
    detector = evaluation_detector(model, cfg, names, device, slicing=SlicingOptions(size=640))
    split_records, predictions = predict_split(detector, cfg, "val")   # sliced, full images

Validation during training, `detector evaluate` (checkpoints and exported files)
and `detector export --verify` all come here, and the `Detector` API runs the
same code: the evaluation loader letterboxes with `detector.data.letterbox`
(the resize and pad value `preprocess_batch` uses), `Detector.predict_letterboxed`
runs the backend's forward under `detector.model.precision.autocast` and the one
decode + selection (`detector.model.decode`), and boxes go back to the original
image with `boxes_to_original`. A detector with `slicing` predicts the full-resolution
images instead (`predict_records`: `Detector.predict_frames`, tiles and merge), since
tiles are cut from the original pixels, not from a letterboxed batch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from detector.defaults import SlicingOptions
from detector.inference.backends import TorchBackend
from detector.inference.predictor import Detector
from detector.model.precision import amp_dtype_for


def evaluation_detector(
    model: torch.nn.Module,
    cfg: Any,
    names: Sequence[str],
    device: torch.device,
    *,
    slicing: SlicingOptions | None = None,
) -> Detector:
    """A `Detector` over `model` with `cfg.eval`'s thresholds at `cfg.train`'s AMP precision.

    Args:
        model: a `YOLODetector` (unwrapped: no DDP), already on `device`; put in eval mode.
        cfg: the run's config (eval.score_threshold/iou_threshold/max_det, train.amp/amp_dtype,
            model.image_size).
        names: class names, index = label.
        device: where the model runs.
        slicing: sliced-inference settings, or None for the letterboxed pass.
    """
    backend = TorchBackend(model, device=device, autocast_dtype=amp_dtype_for(cfg.train, device))
    return Detector(
        backend,
        names=names,
        image_size=cfg.model.image_size,
        score_threshold=cfg.eval.score_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        max_det=cfg.eval.max_det,
        slicing=slicing,
    )


def predict_loader(
    detector: Detector, loader: Iterable[dict[str, Any]], *, progress: bool = False
) -> dict[int, dict[str, np.ndarray]]:
    """image_id -> {boxes float32 [K, 4] original xyxy px, scores [K], labels int64 [K]}.

    Args:
        detector: any backend; its `image_size` must be the loader's.
        loader: batches as `collate_batch` makes them ("images" uint8 [B, 3, S, S], "metas").
        progress: show a tqdm bar.

    Raises:
        ValueError: an image id appears twice (naming it and its file).
    """
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="predict", unit="batch", leave=False)
    predictions: dict[int, dict[str, np.ndarray]] = {}
    for batch in loader:
        metas = batch["metas"]
        results = detector.predict_letterboxed(
            batch["images"], [meta["letterbox"] for meta in metas]
        )
        for result, meta in zip(results, metas, strict=True):
            image_id = int(meta["image_id"])
            if image_id in predictions:
                raise ValueError(
                    f"image id {image_id} ({meta.get('path', '?')}) appears twice in the loader"
                )
            predictions[image_id] = {
                "boxes": result.boxes.reshape(-1, 4),
                "scores": result.scores,
                "labels": result.labels,
            }
    return predictions


def validation_slicing(cfg: Any) -> SlicingOptions | None:
    """The sliced inference that validates a run trained on tiles (`data.slice`), else None.

    Tiles of `data.slice.size` at its overlap, the full-image pass when the training
    epochs hold whole images (`data.slice.full_images`), the default merge: what
    `detector evaluate --slice SIZE --slice-overlap F [--no-slice-full]` runs, so the
    AP training reports is the AP evaluate and the API give.
    """
    tiles = cfg.data.slice
    if tiles is None:
        return None
    return SlicingOptions(
        size=tiles.size, overlap=tiles.overlap, full_image=bool(tiles.full_images)
    )


def predict_records(
    detector: Detector, records: Sequence[Any], *, max_image_pixels: int, progress: bool = False
) -> dict[int, dict[str, np.ndarray]]:
    """Sliced prediction of full-resolution images: image_id -> {boxes, scores, labels}.

    Images are read one at a time and handed over in groups of about one tile batch
    (small images share a forward; a large one streams its own tiles).

    Args:
        detector: a `Detector` with `slicing` set.
        records: `SampleRecord`s (image_path, width, height, image_id).
        max_image_pixels: refuse images whose header claims more pixels.
        progress: show a tqdm bar.

    Raises:
        ValueError: an image that cannot be read (naming it), or an image id twice.
    """
    from detector.data.images import read_image_rgb
    from detector.postprocess import tile_grid

    options = detector.slicing
    if options is None:
        raise ValueError("predict_records needs a Detector with slicing set")
    if progress:
        from tqdm import tqdm

        records = tqdm(records, desc="predict (sliced)", unit="image", leave=False)
    predictions: dict[int, dict[str, np.ndarray]] = {}
    group: list[tuple[Any, np.ndarray]] = []
    tiles = 0

    def flush() -> None:
        results = detector.predict_frames([image for _, image in group], color="rgb")
        for (record, _), result in zip(group, results, strict=True):
            if int(record.image_id) in predictions:
                raise ValueError(f"image id {record.image_id} ({record.image_path}) appears twice")
            predictions[int(record.image_id)] = {
                "boxes": result.boxes.reshape(-1, 4),
                "scores": result.scores,
                "labels": result.labels,
            }
        group.clear()

    for record in records:
        image = read_image_rgb(record.image_path, max_pixels=max_image_pixels)
        group.append((record, image))
        tiles += len(tile_grid(image.shape[1], image.shape[0], options.size, options.overlap))
        if tiles >= detector.slice_batch:
            flush()
            tiles = 0
    if group:
        flush()
    return predictions


def predict_split(
    detector: Detector, cfg: Any, split: str, *, progress: bool = False, source: str = "the model"
) -> tuple[Any, dict[int, dict[str, np.ndarray]]]:
    """Build the evaluation loader of `cfg.data`'s `split` at the detector's size and predict it.

    The loader prints the split's skipped files once (`build_dataloader`).

    Returns:
        (SplitRecords, predictions as `predict_loader` gives them).

    Raises:
        ValueError: the dataset's class names differ from the detector's (both named).
    """
    if detector.slicing is not None:
        from detector.data.catalog import format_skipped, load_split

        split_records = load_split(cfg.data, split)
        if split_records.skipped:
            print(format_skipped(split_records.skipped, split, limit=5), file=sys.stderr)
        _check_names(split_records.names, detector.class_names, source)
        return split_records, predict_records(
            detector,
            split_records.records,
            progress=progress,
            max_image_pixels=cfg.data.max_image_pixels,
        )
    from detector.data.loading.dataset import build_dataloader

    cfg.model.image_size = detector.image_size
    loader, split_records = build_dataloader(cfg, split, train=False)
    _check_names(split_records.names, detector.class_names, source)
    return split_records, predict_loader(detector, loader, progress=progress)


def _check_names(dataset: Sequence[str], model: Sequence[str], source: str) -> None:
    if list(dataset) != list(model):
        raise ValueError(
            f"class names differ: {source} has {list(model)}, the dataset has {list(dataset)}"
        )
