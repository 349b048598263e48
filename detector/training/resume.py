"""What last.pt and best.pt hold of a run, and how `--resume RUN_DIR` continues it.

    cfg, ckpt, changes = prepare_resume("runs/train/exp", overrides=["train.epochs=60"])
    # changes: ["train.epochs: 40 -> 60"]
    progress = restore_run(parts, state, ckpt, cfg, steps_per_epoch=63, changes=changes, log=print)
    restore_rng_state(ckpt["rng"])        # the very last thing before training continues
    save_last(run_dir, parts, state, cfg, names, progress)   # a mid-epoch last.pt
    save_best(run_dir, parts, state, cfg, names)

The file format (keys, types, loading, atomic writes) is `detector.checkpoint`'s;
this module fills it from the run (`inference_checkpoint`, `last_checkpoint`) and
restores the run from it. NaN weights are never written, and a failed write keeps
the previous file (checkpoints are replaced atomically).

The run continues with the config stored in its checkpoint, plus `--set`
overrides (or a CONFIG file given alongside). Refused, with the reason: a missing
or corrupt last.pt; other class names, or the same names in another order (the
head's shape or the meaning of every label would change), both lists shown; a
changed model; and a finished run unless `train.epochs` grows past the epochs
done (`--set train.epochs=N`: the run is extended by a new cosine, `optim.restart`).
Another `train.epochs` for an unfinished run moves the cosine's end
(`optim.move_end`). A mid-epoch last.pt also needs the batch size, accumulation,
seed, `augment` pipeline, `train.multi_scale`, `train.close_mosaic` and `data.slice`
(the epoch's tiles) it was written with (`EXACT_MID_EPOCH`), since the rest of its
epoch is replayed exactly.

Python's `random` state and NumPy's legacy global state are stored as lists and
tensors because `torch.load(weights_only=True)` refuses arbitrary objects.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.checkpoint import (
    CheckpointError,
    load_checkpoint,
    non_finite_tensors,
    save_checkpoint,
)
from detector.config import Config, config_from_dict, config_to_dict, load_config
from detector.training.distributed import unwrap_model
from detector.training.engine import EpochProgress, NonFiniteLossError, TrainParts, TrainState
from detector.training.optim import ModelEMA, move_end, plan_from_dict, plan_to_dict, restart
from detector.training.run_files import writing


class ResumeError(ValueError):
    """A run that cannot be resumed; the message says why."""


def _lookup(tree: dict[str, Any], key: str) -> Any:
    """The value at dotted `key` of a nested dict (a whole section when it is one)."""
    for part in key.split("."):
        tree = tree[part]
    return tree


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_changes(before: Config, after: Config) -> list[str]:
    """Human-readable `key: old -> new` lines for every differing config key."""
    old, new = _flatten(config_to_dict(before)), _flatten(config_to_dict(after))
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def check_class_names(run_dir: str | Path, trained: list[str], now: list[str]) -> None:
    """Refuse a resume whose class names differ from the checkpoint's, in content or order.

    Raises:
        ResumeError: naming both lists (and saying when only the order differs).
    """
    if list(trained) == list(now):
        return
    how = (
        "the same names in another order" if sorted(trained) == sorted(now) else "other class names"
    )
    raise ResumeError(
        f"cannot resume {run_dir}: it was trained on [{', '.join(trained)}] but the data now has "
        f"[{', '.join(now)}] ({how}); every label would change meaning, so start a new run"
    )


# What the rest of an epoch replays from: its batches (size, accumulation, seed) and each
# sample's augmentation (the pipeline, the input size per batch, the mosaic switch). At a
# mid-epoch checkpoint these must be as stored; any other key may change (stated in the log).
EXACT_MID_EPOCH = (
    "train.batch_size",
    "train.accumulate",
    "train.seed",
    "augment",
    "train.multi_scale",
    "train.close_mosaic",
    "data.slice",
    "train.progressive",
)


def prepare_resume(
    run_dir: str | Path,
    *,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
) -> tuple[Config, dict[str, Any], list[str]]:
    """Load RUN_DIR/weights/last.pt and work out the config to continue with.

    Args:
        run_dir: the run to continue.
        config_path: optional CONFIG given with --resume; replaces the stored config.
        overrides: `--set KEY=VALUE` items applied on top.

    Returns:
        (config, last.pt contents, list of changed keys as text).

    Raises:
        ResumeError: no such run, unreadable last.pt, a finished run without more epochs,
            other or reordered class names, a model change that the stored weights cannot
            follow, or a changed `EXACT_MID_EPOCH` key at a mid-epoch checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"{run_dir}: no such run directory")
    try:
        ckpt = load_checkpoint(run_dir / "weights" / "last.pt", require_training_state=True)
    except CheckpointError as exc:
        raise ResumeError(f"cannot resume {run_dir}: {exc}") from exc
    stored = config_from_dict(ckpt["config"], source=f"{run_dir}/weights/last.pt")
    if config_path is not None:
        cfg = load_config(config_path, overrides)
    else:
        cfg = config_from_dict(
            ckpt["config"], source=f"{run_dir}/weights/last.pt", overrides=overrides
        )
    if ckpt["finished"] and cfg.train.epochs <= ckpt["epoch"]:
        raise ResumeError(
            f"cannot resume {run_dir}: the run finished ({ckpt['epoch']} epochs, "
            f"best AP {ckpt['best_ap']:.4f}); "
            f"extend it with --set train.epochs=N (N > {ckpt['epoch']}) or start a new run "
            f"(its best weights are {run_dir}/weights/best.pt)"
        )
    if ckpt["finished"] and cfg.train.time_limit is not None:
        raise ResumeError(
            f"cannot extend {run_dir} with train.time_limit={cfg.train.time_limit:g} "
            "(its budget is spent); "
            "add --set train.time_limit=null so that train.epochs decides"
        )
    if cfg.data.names is not None:
        check_class_names(run_dir, ckpt["names"], cfg.data.names)
    if (ckpt.get("epoch_progress") or {}).get("batches_done", 0):
        before, after = config_to_dict(stored), config_to_dict(cfg)
        changed = [
            f"{key}: {_lookup(before, key)!r} -> {_lookup(after, key)!r}"
            for key in EXACT_MID_EPOCH
            if _lookup(before, key) != _lookup(after, key)
        ]
        if changed:
            raise ResumeError(
                f"cannot resume {run_dir} from its mid-epoch checkpoint with {'; '.join(changed)}: "
                "the rest of the epoch is replayed exactly; keep them as they were"
            )
    changed_model = [
        line
        for line in config_changes(stored, cfg)
        if line.startswith("model.") and not line.startswith("model.pretrained")
    ]
    if changed_model:
        raise ResumeError(
            f"cannot resume {run_dir}: the model changed ({'; '.join(changed_model)}); "
            "start a new run"
        )
    if not ckpt["finished"] and cfg.train.epochs < ckpt["epoch"]:
        raise ResumeError(
            f"cannot resume {run_dir}: train.epochs={cfg.train.epochs} is below the "
            f"{ckpt['epoch']} epochs done"
        )
    # The resumed run writes where it was, whatever the config says.
    cfg.train.run_dir = str(run_dir)
    return cfg, ckpt, config_changes(stored, cfg)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels.

    Args:
        seed: the run's seed (`train.seed`).
        deterministic: use only deterministic algorithms (slower on GPU; an op
            without a deterministic implementation raises instead of silently varying).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy, torch CPU and every CUDA device.

    Returns:
        {"python": [version, list[int], gauss_next], "numpy": {...}, "torch": uint8 Tensor,
         "cuda": list of uint8 Tensors (empty without CUDA)}.
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    return {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),  # uint32 values fit in int64
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the states from `capture_rng_state` (CUDA ones only where devices match)."""
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    # A run resumed on a machine with a different GPU count cannot restore these exactly.
    if torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def inference_checkpoint(
    parts: TrainParts, state: TrainState, cfg: Config, names: list[str]
) -> dict[str, Any]:
    """best.pt: what inference needs (`checkpoint.INFERENCE_TYPES`), EMA weights when EMA is on."""
    return {
        "model": parts.eval_model.state_dict(),
        "config": config_to_dict(cfg),
        "names": list(names),
        "image_size": cfg.model.image_size,
        "mean": list(cfg.model.mean),
        "std": list(cfg.model.std),
        "epoch": state.epoch,
        "best_ap": state.best_ap,
    }


def last_checkpoint(
    parts: TrainParts,
    state: TrainState,
    cfg: Config,
    names: list[str],
    progress: EpochProgress | None = None,
) -> dict[str, Any]:
    """last.pt: `inference_checkpoint` plus everything an exact resume needs.

    `progress`: the current epoch's, for a checkpoint written inside an epoch
    (`epoch_progress` key; 0 batches at an epoch end).
    """
    ckpt = inference_checkpoint(parts, state, cfg, names)
    ckpt.update(
        train_model=unwrap_model(parts.model).state_dict(),
        optimizer=parts.optimizer.state_dict(),
        scheduler=plan_to_dict(parts.plan),
        scaler=parts.scaler.state_dict(),
        ema=parts.ema.state_dict() if parts.ema is not None else {},
        rng=capture_rng_state(),
        finished=state.finished,
        step=state.step,
        train_state=asdict(state),
        epoch_progress=asdict(progress if progress is not None else EpochProgress()),
    )
    return ckpt


def restore_from_checkpoint(
    parts: TrainParts, state: TrainState, ckpt: dict[str, Any]
) -> EpochProgress:
    """Load model, optimizer, schedule, scaler, EMA and counters from last.pt; return the progress.

    The progress is empty for an epoch-end checkpoint or an older file. The RNG
    states are restored separately (`restore_rng_state`), as the very last
    thing before training continues, so nothing built after this draws from them.
    """
    unwrap_model(parts.model).load_state_dict(ckpt["train_model"])
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    parts.plan = plan_from_dict(ckpt["scheduler"])
    if ckpt["scaler"]:
        parts.scaler.load_state_dict(ckpt["scaler"])
    if parts.ema is not None:
        if ckpt["ema"]:
            # `model` holds the EMA weights
            parts.ema.load_state_dict(ckpt["ema"], weights=ckpt["model"])
        else:  # EMA switched on at resume: start the average from the current weights
            parts.ema = ModelEMA(unwrap_model(parts.model), decay=parts.ema.decay)
    saved = ckpt["train_state"]
    for item in fields(TrainState):
        # Fields beyond checkpoint.TRAIN_STATE_KEYS are optional in a file: their default then.
        setattr(state, item.name, saved.get(item.name, item.default))
    progress = ckpt.get("epoch_progress") or {}
    known = {item.name for item in fields(EpochProgress)}
    return EpochProgress(**{key: value for key, value in progress.items() if key in known})


def check_finite_before_save(model: nn.Module, where: str) -> None:
    """Raise NonFiniteLossError instead of saving weights that hold NaN/inf."""
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise NonFiniteLossError(
            f"weights hold NaN/inf {where} ({', '.join(bad[:3])}...); not saving them "
            "(the previous last.pt is kept)"
        )


def check_weights_finite(parts: TrainParts, where: str) -> None:
    """`check_finite_before_save` on the trained and the evaluated (EMA) weights."""
    check_finite_before_save(parts.model, where)
    check_finite_before_save(parts.eval_model, where)


def save_best(
    run_dir: Path, parts: TrainParts, state: TrainState, cfg: Config, names: list[str]
) -> None:
    """RUN/weights/best.pt: `inference_checkpoint`."""
    path = run_dir / "weights" / "best.pt"
    with writing(path):
        save_checkpoint(inference_checkpoint(parts, state, cfg, names), path)


def save_last(
    run_dir: Path,
    parts: TrainParts,
    state: TrainState,
    cfg: Config,
    names: list[str],
    progress: EpochProgress | None = None,
) -> None:
    """RUN/weights/last.pt: `last_checkpoint`; with `progress`, a mid-epoch one that `--resume`
    continues after `progress.batches_done` batches of the epoch (weights checked finite first)."""
    if progress is not None:
        check_weights_finite(parts, f"at epoch {state.epoch + 1}, batch {progress.batches_done}")
    path = run_dir / "weights" / "last.pt"
    with writing(path):
        save_checkpoint(last_checkpoint(parts, state, cfg, names, progress), path)


def restore_run(
    parts: TrainParts,
    state: TrainState,
    ckpt: dict[str, Any],
    cfg: Config,
    *,
    steps_per_epoch: int,
    changes: list[str],
    log: Callable[[str], None],
) -> EpochProgress:
    """Load last.pt into parts and state, move the plan to a changed `train.epochs` (or extend
    a finished run with a new cosine), log what happens; return the epoch's progress."""
    progress = restore_from_checkpoint(parts, state, ckpt)
    for line in changes:
        log(f"resume: {line}")
    if progress.batches_done:
        log(
            f"resume: continuing epoch {state.epoch + 1} after its first {progress.batches_done} "
            f"batches (step {state.step}), with the same samples and augmentation an "
            "uninterrupted run would see"
        )
    total = cfg.train.epochs * steps_per_epoch
    if state.finished:
        start_lr, end_lr = cfg.train.lr, cfg.train.lr * cfg.train.final_lr_fraction
        log(
            f"resume: the run had finished after {state.epoch} epochs (step {state.step}); "
            f"extending it to {cfg.train.epochs} epochs with a new schedule segment: cosine "
            f"from lr {start_lr:.3g} to {end_lr:.3g} "
            f"over steps {state.step}..{total}, no warmup; the early-stopping count starts again"
        )
        parts.plan = restart(
            parts.plan, step=state.step, total_steps=total, start_lr=start_lr, end_lr=end_lr
        )
        state.planned_epochs, state.finished = cfg.train.epochs, False
        state.epochs_without_improvement = 0
        state.mosaic_closed = False  # a new cosine: train.close_mosaic closes its own last epochs
    elif cfg.train.time_limit is None and cfg.train.epochs != state.planned_epochs:
        log(
            f"resume: re-planning the schedule from {state.planned_epochs} to "
            f"{cfg.train.epochs} epochs "
            f"(the cosine keeps its progress at step {state.step} and ends at step {total})"
        )
        state.planned_epochs = cfg.train.epochs
        parts.plan = move_end(parts.plan, step=state.step, total_steps=total)
    return progress
