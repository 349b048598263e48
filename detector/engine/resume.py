"""`--resume RUN_DIR`: read last.pt, decide the config, refuse what cannot continue.

    cfg, ckpt, changes = prepare_resume("runs/train/exp", overrides=["train.epochs=60"])
    # changes: ["train.epochs: 40 -> 60 (the schedule is re-planned)"]

The run continues with the config stored in its checkpoint, plus `--set`
overrides (or a CONFIG file given alongside). Refused, with the reason:
a run that already finished, a missing or corrupt last.pt, and a different
number of classes (the head's shape and the meaning of every label would change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detector.config import Config, config_from_dict, config_to_dict, load_config
from detector.engine.checkpoint import CheckpointError, load_checkpoint


class ResumeError(ValueError):
    """A run that cannot be resumed; the message says why."""


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
        ResumeError: no such run, unreadable last.pt, run finished, class count changed,
            or a model change that the stored weights cannot follow.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"{run_dir}: no such run directory")
    try:
        ckpt = load_checkpoint(run_dir / "weights" / "last.pt", require_training_state=True)
    except CheckpointError as exc:
        raise ResumeError(f"cannot resume {run_dir}: {exc}") from exc
    stored = config_from_dict(ckpt["config"], source=f"{run_dir}/weights/last.pt")
    if ckpt["finished"]:
        raise ResumeError(
            f"cannot resume {run_dir}: the run finished ({ckpt['epoch']} epochs, best AP {ckpt['best_ap']:.4f}); "
            f"start a new run instead (its best weights are {run_dir}/weights/best.pt)"
        )
    if config_path is not None:
        cfg = load_config(config_path, overrides)
    else:
        cfg = config_from_dict(ckpt["config"], source=f"{run_dir}/weights/last.pt", overrides=overrides)
    names = cfg.data.names
    if names is not None and len(names) != len(ckpt["names"]):
        raise ResumeError(
            f"cannot resume {run_dir}: it was trained on {len(ckpt['names'])} classes "
            f"({', '.join(ckpt['names'])}) but the config has {len(names)}; start a new run"
        )
    changed_model = [line for line in config_changes(stored, cfg) if line.startswith("model.") and not line.startswith("model.pretrained")]
    if changed_model:
        raise ResumeError(f"cannot resume {run_dir}: the model changed ({'; '.join(changed_model)}); start a new run")
    if cfg.train.epochs < ckpt["epoch"]:
        raise ResumeError(f"cannot resume {run_dir}: train.epochs={cfg.train.epochs} is below the {ckpt['epoch']} epochs done")
    # The resumed run writes where it was, whatever the config says.
    cfg.train.run_dir = str(run_dir)
    return cfg, ckpt, config_changes(stored, cfg)
