"""What rank 0 writes during a run: the epoch's row, checkpoints (also mid-epoch), the step log.

    write_epoch(run_dir, parts, state, cfg, names, stats, metrics, improved=True, train_s=12.0)
    save_progress(run_dir, parts, state, cfg, names, progress)   # a mid-epoch last.pt
    log_step(run_dir, epoch=1, batch=4, step=4, loss=2.31, lr=1e-3)

Every write goes through `failures.writing`, so a full disk ends the run with the
file named (and the previous last.pt intact: checkpoints are replaced atomically).
NaN weights are never written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from detector.checkpoint import non_finite_tensors, save_checkpoint
from detector.config import Config
from detector.training.epoch import NonFiniteLossError
from detector.training.failures import writing
from detector.training.plots import plot_training_curves
from detector.training.run_dir import append_result, append_step
from detector.training.state import (
    EpochProgress,
    TrainParts,
    TrainState,
    inference_checkpoint,
    last_checkpoint,
)


def check_finite_before_save(model: nn.Module, where: str) -> None:
    """Raise NonFiniteLossError instead of saving weights that hold NaN/inf."""
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise NonFiniteLossError(
            f"weights hold NaN/inf {where} ({', '.join(bad[:3])}...); not saving them "
            "(the previous last.pt is kept)"
        )


def summary_line(epoch: int, planned: int, stats: dict[str, Any], metrics: dict[str, float], best_ap: float,
                 seconds: float) -> str:
    """The one line printed after every epoch."""
    terms = " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in stats.items() if k.startswith("loss_"))
    ap = f"AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} (best AP {best_ap:.4f})" if metrics else "not validated"
    return (f"epoch {epoch}/{planned}  loss {stats.get('loss', math.nan):.4f} ({terms})  lr {stats['lr']:.2e}  "
            f"{ap}  {stats['images_per_s']:.1f} img/s  {seconds:.1f}s")


def _save(state: dict[str, Any], path: Path) -> None:
    with writing(path):
        save_checkpoint(state, path)


def write_epoch(run_dir: Path, parts: TrainParts, state: TrainState, cfg: Config, names: list[str],
                stats: dict[str, Any], metrics: dict[str, float], *, improved: bool, train_s: float) -> None:
    """results.csv row, best.pt (if improved), last.pt, plots, after epoch `state.epoch`."""
    weights = run_dir / "weights"
    check_finite_before_save(parts.model, f"after epoch {state.epoch}")
    check_finite_before_save(parts.eval_model, f"after epoch {state.epoch}")
    row = {"epoch": state.epoch, **{key: stats[key] for key in stats if key.startswith("loss")},
           "lr": stats["lr"], "AP": metrics.get("AP", math.nan), "AP50": metrics.get("AP50", math.nan),
           "train_s": train_s, "images_per_s": stats["images_per_s"],
           "data_wait_fraction": stats["data_wait_fraction"], "skipped_steps": stats["skipped_steps"]}
    with writing(run_dir / "results.csv"):
        append_result(run_dir / "results.csv", row)
    # best.pt exists from the first validation on, even when AP is undefined (-1: no ground truth).
    if improved or (metrics and not (weights / "best.pt").exists()):
        _save(inference_checkpoint(parts, state, cfg, names), weights / "best.pt")
    _save(last_checkpoint(parts, state, cfg, names), weights / "last.pt")
    with writing(run_dir / "plots"):
        plot_training_curves(run_dir / "results.csv", run_dir / "plots")


def save_progress(run_dir: Path, parts: TrainParts, state: TrainState, cfg: Config, names: list[str],
                  progress: EpochProgress) -> None:
    """A mid-epoch last.pt: `--resume` continues after `progress.batches_done` batches of this epoch."""
    where = f"at epoch {state.epoch + 1}, batch {progress.batches_done}"
    check_finite_before_save(parts.model, where)
    check_finite_before_save(parts.eval_model, where)
    _save(last_checkpoint(parts, state, cfg, names, progress), run_dir / "weights" / "last.pt")


def log_step(run_dir: Path, *, epoch: int, batch: int, step: int, loss: float, lr: float) -> None:
    """One row of RUN/steps.csv (epoch 1-based, batch = micro-batches done in the epoch)."""
    with writing(run_dir / "steps.csv"):
        append_step(run_dir / "steps.csv", epoch=epoch, batch=batch, step=step, loss=loss, lr=lr)
