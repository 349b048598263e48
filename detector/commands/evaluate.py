"""`detector evaluate`: COCO metrics (and VOC AP50) of a checkpoint or of a results file.

    detector evaluate runs/train/exp/weights/best.pt --json runs/eval/metrics.json
    detector evaluate best.pt --data configs/voc.yaml --split val --save-predictions preds.json
    detector evaluate --predictions other_detector.json --data configs/coco.yaml --json m.json
    detector evaluate best.onnx --data configs/voc.yaml     # an exported file, on ONNX Runtime
    detector evaluate best.pt --slice 640                   # sliced inference on the full images

With a checkpoint, the model predicts on the split (config from the checkpoint, or the
`data:` section of `--data`); an exported .onnx/.torchscript file needs `--data` (it
holds no dataset config) and predicts through the same Detector code as detect. With
`--predictions`, a COCO results JSON (a list of {image_id, category_id,
bbox [x, y, w, h], score}, e.g. from `--save-predictions` or another detector) is
scored against the dataset of `--data`. Category ids are the dataset's own for COCO
data and 1..C (in `data.names` order) otherwise. Plots (pr_curves.png,
confusion_matrix.png) go beside the `--json` file, or to `--plots`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from detector.commands.slicing_options import slice_options, slicing_from_cli
from detector.config import VOC_METRICS


def _load_split(cfg: Any, split: str) -> Any:
    """The split's records for scoring a results file; prints its skipped files once."""
    from detector.data.catalog import format_skipped, load_split

    split_records = load_split(cfg.data, split)
    if split_records.skipped:
        click.echo(format_skipped(split_records.skipped, split, limit=5), err=True)
    return split_records


def _with_overrides(cfg: Any, conf: float | None, iou: float | None, max_det: int | None) -> Any:
    """`cfg` with --conf/--iou/--max-det in place of its eval thresholds."""
    if conf is not None:
        cfg.eval.score_threshold = conf
    if iou is not None:
        cfg.eval.iou_threshold = iou
    if max_det is not None:
        cfg.eval.max_det = max_det
    return cfg


def _exported_detector(path: str, cfg: Any, device: str | None, slicing: Any = None) -> Any:
    """The `Detector` of an exported .onnx/.torchscript file at `cfg.eval`'s thresholds."""
    from detector.inference.predictor import Detector

    detector = Detector.from_checkpoint(
        path,
        device=device or "auto",
        score_threshold=cfg.eval.score_threshold,
        iou_threshold=cfg.eval.iou_threshold,
        max_det=cfg.eval.max_det,
        slicing=slicing,
    )
    meta = getattr(detector.backend, "metadata", None)
    baked = meta is not None and meta.nms and not getattr(detector.backend, "selection_inputs", ())
    if baked and meta.score_threshold > detector.score_threshold:
        # An older --nms file's graph already dropped every box under its own threshold:
        # AP is that of the file as deployed, lower than the checkpoint's at the evaluation
        # threshold. (Newer files take the evaluation thresholds as graph inputs.)
        click.echo(
            f"{path}: NMS in the graph keeps scores above {meta.score_threshold:g} only, not "
            f"{detector.score_threshold:g}; AP is that of the file as deployed (export without "
            f"--nms, or with a lower --conf, to compare with the checkpoint)",
            err=True,
        )
    return detector


def _predict_with_model(
    path: str,
    data: str | None,
    split: str,
    device: str | None,
    conf: float | None,
    iou: float | None,
    max_det: int | None,
    slicing: Any = None,
) -> tuple:
    """Predict `split` with a checkpoint or an exported file.

    Returns (cfg, split records, predictions).

    With `slicing` (`SlicingOptions`) the full-resolution images are predicted sliced
    (`evaluation.dataset_predict.predict_records`) instead of the letterboxed loader.

    Both go through the one prediction path (`evaluation.dataset_predict`): a
    checkpoint at its own `train.amp_dtype` precision, the loader's letterbox,
    the `Detector` decode and selection. The loader prints skipped files once.
    """
    from detector.config import load_config
    from detector.evaluation.dataset_predict import evaluation_detector, predict_split
    from detector.inference.exported import is_exported_path

    if is_exported_path(path):
        if data is None:
            raise click.UsageError(
                f"{path}: an exported model holds no dataset config; pass --data CONFIG"
            )
        cfg = _with_overrides(load_config(data), conf, iou, max_det)
        detector = _exported_detector(path, cfg, device, slicing)
    else:
        from detector.checkpoint import load_checkpoint
        from detector.inference.backends import autotune_convolutions, resolve_device
        from detector.model.build import model_from_checkpoint

        ckpt = load_checkpoint(path)
        resolved = resolve_device(device or "auto")
        autotune_convolutions(resolved)  # here, not in evaluation_detector (validation's too)
        model, cfg = model_from_checkpoint(ckpt, resolved)
        if data is not None:
            cfg.data = load_config(data).data
        detector = evaluation_detector(
            model,
            _with_overrides(cfg, conf, iou, max_det),
            list(ckpt["names"]),
            resolved,
            slicing=slicing,
        )
    split_records, predictions = predict_split(detector, cfg, split, progress=True, source=path)
    return cfg, split_records, predictions


@click.command()
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--data",
    "data",
    type=click.Path(dir_okay=False),
    help="Config whose data: section to evaluate on.",
)
@click.option("--split", default="val", show_default=True, type=click.Choice(["val", "train"]))
@click.option(
    "--predictions",
    "predictions_file",
    type=click.Path(dir_okay=False),
    help="Score this COCO results JSON instead of running a checkpoint (needs --data).",
)
@click.option(
    "--json", "json_file", type=click.Path(dir_okay=False), help="Write the metrics here."
)
@click.option(
    "--save-predictions",
    type=click.Path(dir_okay=False),
    help="Write the detections as COCO results JSON.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False),
    help="Folder for the plots (default: beside --json).",
)
@click.option(
    "--device",
    default=None,
    help="auto | cpu | cuda | cuda:N (default: auto; not with --predictions).",
)
@click.option(
    "--conf",
    type=float,
    default=None,
    help="Score threshold (default: eval.score_threshold; not with --predictions).",
)
@click.option(
    "--iou",
    type=float,
    default=None,
    help="NMS IoU threshold (default: eval.iou_threshold; not with --predictions).",
)
@click.option(
    "--max-det",
    type=int,
    default=None,
    help="Detections kept per image (default: eval.max_det; not with --predictions).",
)
@click.option(
    "--voc-metric",
    type=click.Choice(VOC_METRICS),
    default=None,
    help="VOC AP50 definition (default: eval.voc_metric; auto = area for VOC data).",
)
@slice_options
def evaluate(
    checkpoint: str | None,
    data: str | None,
    split: str,
    predictions_file: str | None,
    json_file: str | None,
    save_predictions: str | None,
    plots_dir: str | None,
    device: str | None,
    conf: float | None,
    iou: float | None,
    max_det: int | None,
    voc_metric: str | None,
    **slice_cli: Any,
) -> None:
    """Print COCO AP/AR (and per-class AP) of CHECKPOINT or --predictions FILE on a split."""
    from detector.config import ConfigError, load_config
    from detector.data.catalog import category_ids as dataset_category_ids
    from detector.evaluation.coco_format import (
        CocoFormatError,
        image_id_aliases,
        load_coco_results,
        predictions_to_coco_results,
        save_coco_results,
    )
    from detector.evaluation.evaluator import evaluate_detections, format_table

    if (checkpoint is None) == (predictions_file is None):
        raise click.UsageError("give either CHECKPOINT or --predictions FILE (with --data)")
    if predictions_file is not None and data is None:
        raise click.UsageError("--predictions needs --data CONFIG (the dataset to score against)")
    slicing = slicing_from_cli(**slice_cli)
    if slicing is not None and predictions_file is not None:
        raise click.UsageError("--slice runs a model; --predictions scores a results file")
    try:
        if checkpoint is not None:
            from detector.checkpoint import CheckpointError

            try:
                cfg, split_records, predictions = _predict_with_model(
                    checkpoint, data, split, device, conf, iou, max_det, slicing
                )
            except CheckpointError as exc:
                raise click.ClickException(str(exc)) from None
        else:
            cfg = load_config(data)
            split_records = _load_split(cfg, split)
        names = list(split_records.names)
        category_ids = dataset_category_ids(cfg.data)  # COCO data keeps its own; VOC and YOLO: 1..C
        if predictions_file is not None:
            predictions = load_coco_results(
                predictions_file,
                category_ids,
                image_ids=[r.image_id for r in split_records.records],
                image_aliases=image_id_aliases(split_records.records),
            )
        result = evaluate_detections(
            split_records.records,
            predictions,
            names,
            category_ids=category_ids,
            voc_metric=voc_metric or cfg.eval.voc_metric,
            dataset_format=cfg.data.format,
        )
    except (ConfigError, CocoFormatError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None

    click.echo(
        f"{split}: {result.num_images} images, {result.num_predictions} detections "
        "(COCO counts the top 100 per image and class)"
    )
    click.echo(format_table(result))
    if json_file:
        Path(json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(json_file).write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
        click.echo(f"metrics written to {json_file}")
    if save_predictions:
        save_coco_results(save_predictions, predictions_to_coco_results(predictions, category_ids))
        click.echo(f"predictions written to {save_predictions}")
    plots_dir = plots_dir or (str(Path(json_file).parent) if json_file else None)
    if plots_dir:
        from detector.evaluation.plots import save_eval_plots

        paths = save_eval_plots(
            result, split_records.records, predictions, names, plots_dir, category_ids=category_ids
        )
        click.echo("plots written: " + ", ".join(str(p) for p in paths))
