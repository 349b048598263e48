"""`--resume RUN_DIR`: read last.pt, decide the config, refuse what cannot continue.

    cfg, ckpt, changes = prepare_resume("runs/train/exp", overrides=["train.epochs=60"])
    # changes: ["train.epochs: 40 -> 60 (the schedule is re-planned)"]

The run continues with the config stored in its checkpoint, plus `--set`
overrides (or a CONFIG file given alongside). Refused, with the reason: a missing
or corrupt last.pt; other class names, or the same names in another order (the
head's shape or the meaning of every label would change), both lists shown; a
changed model; and a finished run unless `train.epochs` grows past the epochs
done (`--set train.epochs=N`: the run is extended by a new schedule segment, see
trainer.py). A mid-epoch last.pt also needs the batch size, accumulation, seed,
`augment` pipeline, `train.multi_scale`, `train.close_mosaic` and `data.slice` (the
epoch's tiles) it was written with (`EXACT_MID_EPOCH`), since the rest of its epoch
is replayed exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detector.checkpoint import CheckpointError, load_checkpoint
from detector.config import Config, config_from_dict, config_to_dict, load_config


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
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def check_class_names(run_dir: str | Path, trained: list[str], now: list[str]) -> None:
    """Refuse a resume whose class names differ from the checkpoint's, in content or order.

    Raises:
        ResumeError: naming both lists (and saying when only the order differs).
    """
    if list(trained) == list(now):
        return
    how = "the same names in another order" if sorted(trained) == sorted(now) else "other class names"
    raise ResumeError(
        f"cannot resume {run_dir}: it was trained on [{', '.join(trained)}] but the data now has "
        f"[{', '.join(now)}] ({how}); every label would change meaning, so start a new run"
    )


# What the rest of an epoch replays from: its batches (size, accumulation, seed) and each
# sample's augmentation (the pipeline, the input size per batch, the mosaic switch). At a
# mid-epoch checkpoint these must be as stored; any other key may change (stated in the log).
EXACT_MID_EPOCH = ("train.batch_size", "train.accumulate", "train.seed", "augment", "train.multi_scale",
                   "train.close_mosaic", "data.slice")


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
        cfg = config_from_dict(ckpt["config"], source=f"{run_dir}/weights/last.pt", overrides=overrides)
    if ckpt["finished"] and cfg.train.epochs <= ckpt["epoch"]:
        raise ResumeError(
            f"cannot resume {run_dir}: the run finished ({ckpt['epoch']} epochs, best AP {ckpt['best_ap']:.4f}); "
            f"extend it with --set train.epochs=N (N > {ckpt['epoch']}) or start a new run "
            f"(its best weights are {run_dir}/weights/best.pt)"
        )
    if ckpt["finished"] and cfg.train.time_limit is not None:
        raise ResumeError(
            f"cannot extend {run_dir} with train.time_limit={cfg.train.time_limit:g} (its budget is spent); "
            "add --set train.time_limit=null so that train.epochs decides"
        )
    if cfg.data.names is not None:
        check_class_names(run_dir, ckpt["names"], cfg.data.names)
    if (ckpt.get("epoch_progress") or {}).get("batches_done", 0):
        before, after = config_to_dict(stored), config_to_dict(cfg)
        changed = [f"{key}: {_lookup(before, key)!r} -> {_lookup(after, key)!r}"
                   for key in EXACT_MID_EPOCH if _lookup(before, key) != _lookup(after, key)]
        if changed:
            raise ResumeError(f"cannot resume {run_dir} from its mid-epoch checkpoint with {'; '.join(changed)}: "
                              "the rest of the epoch is replayed exactly; keep them as they were")
    changed_model = [line for line in config_changes(stored, cfg) if line.startswith("model.") and not line.startswith("model.pretrained")]
    if changed_model:
        raise ResumeError(f"cannot resume {run_dir}: the model changed ({'; '.join(changed_model)}); start a new run")
    if not ckpt["finished"] and cfg.train.epochs < ckpt["epoch"]:
        raise ResumeError(f"cannot resume {run_dir}: train.epochs={cfg.train.epochs} is below the {ckpt['epoch']} epochs done")
    # The resumed run writes where it was, whatever the config says.
    cfg.train.run_dir = str(run_dir)
    return cfg, ckpt, config_changes(stored, cfg)
