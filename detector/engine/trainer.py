"""The training run, top to bottom: set up, then train / validate / checkpoint per epoch.

    from detector.config import load_config
    from detector.engine.trainer import fit
    run_dir = fit(load_config("configs/shapes.yaml", ["train.epochs=5"]))

    # continue an interrupted run exactly (the CLI does this for --resume):
    cfg, ckpt, changes = prepare_resume("runs/train/exp")
    fit(cfg, resume_checkpoint=ckpt, changes=changes)

Under torchrun every rank runs `fit`; rank 0 alone validates, prints and writes
files, and broadcasts its decisions (planned epochs, stop) so the ranks stay in step.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.config import Config
from detector.data.record import SplitRecords
from detector.engine import distributed as ddp
from detector.engine.checkpoint import CheckpointError, non_finite_tensors, save_checkpoint
from detector.engine.rng import restore_rng_state, seed_everything
from detector.engine.run_dir import (
    append_result,
    create_run_dir,
    truncate_results,
    write_config_yaml,
)
from detector.engine.time_budget import TimeBudget
from detector.engine.train_epoch import NanGuard, NonFiniteLossError, train_one_epoch, validate
from detector.engine.train_plots import plot_training_curves
from detector.engine.train_state import (
    TrainParts,
    TrainState,
    build_train_parts,
    inference_checkpoint,
    is_better,
    last_checkpoint,
    restore_from_checkpoint,
)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _start_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Make the epoch's order and augmentation a function of (train.seed, rank, epoch).

    The loader's `SeededSampler` derives both from them (detector/data/sampling.py), so
    a resumed run replays exactly the batches the uninterrupted run would have seen,
    for any number of workers, without saving the data pipeline's generators.
    """
    loader.sampler.set_epoch(epoch)


def _check_finite_before_save(model: nn.Module, epoch: int) -> None:
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise NonFiniteLossError(
            f"weights hold NaN/inf after epoch {epoch} ({', '.join(bad[:3])}...); not saving them "
            "(the previous last.pt is kept)"
        )


def _summary_line(epoch: int, planned: int, stats: dict[str, Any], metrics: dict[str, float], best_ap: float, seconds: float) -> str:
    terms = " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in stats.items() if k.startswith("loss_"))
    ap = f"AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} (best AP {best_ap:.4f})" if metrics else "not validated"
    return (f"epoch {epoch}/{planned}  loss {stats.get('loss', math.nan):.4f} ({terms})  lr {stats['lr']:.2e}  "
            f"{ap}  {stats['images_per_s']:.1f} img/s  {seconds:.1f}s")


@dataclass
class _Run:
    """Everything one training run holds (built by `_set_up`)."""

    cfg: Config
    dist: ddp.DistInfo
    device: torch.device
    run_dir: Path | None  # None on ranks other than 0 for a new run
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None  # rank 0 only
    val_split: SplitRecords | None
    names: list[str]
    parts: TrainParts
    state: TrainState
    budget: TimeBudget | None
    log: Callable[[str], None]


def _set_up(cfg: Config, resume_checkpoint: dict[str, Any] | None, changes: list[str],
            log: Callable[[str], None], clock: Callable[[], float]) -> _Run:
    """Seeds, run directory, data, model, optimizer; the saved state when resuming."""
    from detector.data.dataset import build_dataloader
    from detector.model.build import build_loss, build_model

    start = clock()  # the time budget counts set-up (data, model) too
    device = ddp.local_device(cfg.train.device)
    dist = ddp.setup_distributed(device)
    log = log if dist.is_main else (lambda message: None)
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    resuming = resume_checkpoint is not None
    run_dir = Path(cfg.train.run_dir) if resuming else None
    # Rank 0 first: it may generate the synthetic dataset that the others then read.
    val_loader = val_split = None
    if dist.is_main:
        train_loader, train_split = build_dataloader(cfg, "train", train=True, distributed=dist.distributed)
        val_loader, val_split = build_dataloader(cfg, "val", train=False)
    ddp.barrier(dist)
    if not dist.is_main:
        train_loader, train_split = build_dataloader(cfg, "train", train=True, distributed=True)
    names = list(train_split.names)
    if resuming and len(names) != len(resume_checkpoint["names"]):
        raise CheckpointError(f"cannot resume {run_dir}: it was trained on {len(resume_checkpoint['names'])} "
                              f"classes, the data now has {len(names)}; start a new run")

    model = build_model(cfg.model, len(names)).to(device)
    loss_fn = build_loss(cfg.model, len(names)).to(device)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.train.accumulate)
    parts = build_train_parts(model, loss_fn, cfg.train, device=device, steps_per_epoch=steps_per_epoch)
    state = TrainState(planned_epochs=cfg.train.epochs)
    if dist.is_main and not resuming:
        # Only now, once data and model are known good: a bad config leaves no empty run dir.
        run_dir = create_run_dir(cfg.train.run_dir, exist_ok=cfg.train.exist_ok)
        cfg.train.run_dir = str(run_dir)
    if resuming:
        restore_from_checkpoint(parts, state, resume_checkpoint)
        for line in changes:
            log(f"resume: {line}")
        if cfg.train.time_limit is None and cfg.train.epochs != state.planned_epochs:
            log(f"resume: re-planning the schedule from {state.planned_epochs} to {cfg.train.epochs} epochs "
                f"(cosine continues from step {state.step} to {cfg.train.epochs * steps_per_epoch})")
            state.planned_epochs = cfg.train.epochs
            parts.schedule.replan(current_step=state.step, total_steps=cfg.train.epochs * steps_per_epoch)
        # Last, so that building the model above does not consume the restored streams.
        restore_rng_state(resume_checkpoint["rng"])
        if dist.is_main:
            truncate_results(run_dir / "results.csv", state.epoch)
    if dist.distributed:
        parts.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if dist.is_main:
        write_config_yaml(cfg, run_dir)
        log(f"{'resuming' if resuming else 'training'} in {run_dir}: {len(train_split.records)} train / "
            f"{len(val_split.records)} val images, {len(names)} classes, {cfg.model.backbone} "
            f"{cfg.model.image_size}px on {device} x{dist.world_size}, epoch {state.epoch + 1}/{state.planned_epochs}")
    budget = None
    if cfg.train.time_limit is not None:
        budget = TimeBudget(cfg.train.time_limit, clock=clock, elapsed_before_s=state.elapsed_s + clock() - start)
    return _Run(cfg, dist, device, run_dir, train_loader, val_loader, val_split, names, parts, state, budget, log)


MAX_WARMUP_FRACTION = 0.2  # a time budget shorter than the warmup caps it at this share


def _plan_budget(run: _Run, *, broadcast: bool) -> None:
    """Re-plan the run's length from the measured speed: schedule end and epoch count.

    In a single process this runs after every optimizer step; under DDP only at
    epoch ends (`broadcast`), where rank 0 decides and every rank follows.
    """
    state, budget, spe = run.state, run.budget, run.parts.steps_per_epoch
    total = run.parts.schedule.total_steps
    if run.dist.is_main:
        seconds_per_step = budget.seconds_per_step(state.step) or 0.0
        # Until a validation was timed: inference is ~3x cheaper per image than training.
        estimate = seconds_per_step / run.cfg.train.batch_size * len(run.val_split.records) / 3
        total = budget.plan_steps(current_step=state.step, steps_per_epoch=spe,
                                  eval_interval=run.cfg.train.eval_interval, validation_estimate_s=estimate) or total
    if broadcast:
        (total,) = ddp.broadcast_numbers([total], run.dist, run.device)
    total = max(int(total), state.step)
    if total != run.parts.schedule.total_steps:
        run.parts.schedule.replan(current_step=state.step, total_steps=total, max_warmup_fraction=MAX_WARMUP_FRACTION)
        state.planned_epochs = max(math.ceil(total / spe), state.epoch)


def _budget_poll(run: _Run) -> Callable[[], bool]:
    """After each optimizer step (single process): re-plan; True when the planned steps are done."""

    def poll() -> bool:
        _plan_budget(run, broadcast=False)
        return run.state.step >= run.parts.schedule.total_steps

    return poll


def _validate_and_track_best(run: _Run, progress: bool) -> tuple[dict[str, float], bool]:
    """Rank 0: AP of the EMA weights; update best AP and the early-stopping count."""
    state = run.state
    metrics = validate(run.parts.eval_model, run.val_loader, run.val_split, run.cfg, device=run.device,
                       amp=run.parts.amp_dtype is not None, progress=progress)
    improved = is_better(metrics["AP"], state.best_ap)
    if improved:
        state.best_ap, state.best_epoch, state.epochs_without_improvement = metrics["AP"], state.epoch, 0
    else:
        state.epochs_without_improvement += run.cfg.train.eval_interval
    return metrics, improved


def _write_epoch(run: _Run, stats: dict[str, Any], metrics: dict[str, float], improved: bool, train_s: float) -> None:
    """Rank 0: results.csv row, best.pt (if improved), last.pt, plots. Never writes NaN weights."""
    state, parts, weights = run.state, run.parts, run.run_dir / "weights"
    _check_finite_before_save(parts.model, state.epoch)
    _check_finite_before_save(parts.eval_model, state.epoch)
    row = {"epoch": state.epoch, **{key: stats[key] for key in stats if key.startswith("loss")},
           "lr": stats["lr"], "AP": metrics.get("AP", math.nan), "AP50": metrics.get("AP50", math.nan),
           "train_s": train_s, "images_per_s": stats["images_per_s"],
           "data_wait_fraction": stats["data_wait_fraction"], "skipped_steps": stats["skipped_steps"]}
    append_result(run.run_dir / "results.csv", row)
    # best.pt exists from the first validation on, even when AP is undefined (-1: no ground truth).
    if improved or (metrics and not (weights / "best.pt").exists()):
        save_checkpoint(inference_checkpoint(parts, state, run.cfg, run.names), weights / "best.pt")
    save_checkpoint(last_checkpoint(parts, state, run.cfg, run.names), weights / "last.pt")
    plot_training_curves(run.run_dir / "results.csv", run.run_dir / "plots")


def fit(
    cfg: Config,
    *,
    resume_checkpoint: dict[str, Any] | None = None,
    changes: list[str] | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = _stderr,
    clock: Callable[[], float] = time.monotonic,
) -> Path | None:
    """Train a detector as `cfg` says and return the run directory.

    Args:
        cfg: the resolved config (for a resume, from `resume.prepare_resume`).
        resume_checkpoint: last.pt of the run to continue, or None for a new run.
        changes: config keys that differ from the stored run (printed; more epochs re-plan).
        show_progress: tqdm bars (rank 0 only).
        log: where one-line messages go (rank 0 only).
        clock: monotonic seconds (injectable for time-budget tests).

    Returns:
        The run directory (RUN/config.yaml, results.csv, weights/{last,best}.pt, plots/);
        None on ranks other than 0.

    Raises:
        NonFiniteLossError: the NaN guard stopped training (last.pt holds the last good epoch).
    """
    try:
        run = _set_up(cfg, resume_checkpoint, changes or [], log, clock)
        state, dist = run.state, run.dist
        nan_guard = NanGuard(cfg.train.nan_policy, cfg.train.max_nan_skips)
        # Mid-epoch stops only in a single process: ranks would disagree on the step.
        should_stop = _budget_poll(run) if run.budget is not None and not dist.distributed else None
        try:
            while state.epoch < state.planned_epochs and not state.finished:
                epoch_start = clock()
                planned_before = state.planned_epochs
                if run.budget is not None:
                    run.budget.start_epoch(state.step)
                _start_epoch(run.train_loader, state.epoch)
                stats = train_one_epoch(run.parts, run.train_loader, state, cfg.train, epoch=state.epoch,
                                        planned_epochs=state.planned_epochs, nan_guard=nan_guard, dist=dist,
                                        show_progress=show_progress, should_stop=should_stop)
                state.epoch += 1
                train_s = clock() - epoch_start
                if run.budget is not None:
                    run.budget.end_epoch(state.step)
                    _plan_budget(run, broadcast=True)
                    if state.planned_epochs != planned_before:
                        run.log(f"time budget: {planned_before} -> {state.planned_epochs} epochs "
                                f"({run.parts.schedule.total_steps} steps, schedule re-planned; "
                                f"{run.budget.elapsed() / 60:.1f} of {cfg.train.time_limit} min used)")
                done_steps = run.budget is not None and state.step >= run.parts.schedule.total_steps
                last_epoch = state.epoch >= state.planned_epochs or stats["stopped_early"] or done_steps
                metrics, improved = {}, False
                if dist.is_main and (last_epoch or state.epoch % cfg.train.eval_interval == 0):
                    metrics, improved = _validate_and_track_best(run, show_progress)
                patience = cfg.train.early_stop_patience
                stop = dist.is_main and patience > 0 and state.epochs_without_improvement >= patience
                (stop,) = ddp.broadcast_numbers([float(stop)], dist, run.device)  # rank 0 decides
                if stop:
                    run.log(f"early stop: no AP improvement for {state.epochs_without_improvement} epochs "
                            f"(best AP {state.best_ap:.4f} at epoch {state.best_epoch})")
                state.finished = last_epoch or bool(stop)
                if run.budget is not None:
                    state.elapsed_s = run.budget.elapsed()
                if dist.is_main:
                    _write_epoch(run, stats, metrics, improved, train_s)
                    run.log(_summary_line(state.epoch, state.planned_epochs, stats, metrics, state.best_ap,
                                          clock() - epoch_start))
                if run.budget is not None:
                    run.budget.record_overhead(clock() - epoch_start - train_s)
                ddp.barrier(dist)  # nobody starts the next epoch before the checkpoint is on disk
        except KeyboardInterrupt:
            run.log(f"interrupted; continue with: detector train --resume {run.run_dir}")
            raise
        run.log(f"done: best AP {state.best_ap:.4f} at epoch {state.best_epoch}; weights in {run.run_dir}/weights")
        return run.run_dir
    finally:
        ddp.cleanup_distributed()


__all__ = ["fit", "NonFiniteLossError"]
