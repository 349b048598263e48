"""The training run, top to bottom: build the run, then per epoch train, validate, save.

    from detector.config import load_config
    from detector.training.trainer import fit
    run_dir = fit(load_config("configs/shapes.yaml", ["train.epochs=5"]))

    # continue an interrupted run exactly (the CLI does this for --resume):
    cfg, ckpt, changes = prepare_resume("runs/train/exp")      # training/resume.py
    fit(cfg, resume_checkpoint=ckpt, changes=changes)

`fit` is the algorithm and reads top to bottom over one `Run`: start the epoch,
train it (`engine.TrainingEpoch`, acting between its optimizer steps), validate
(`engine.validate`), keep the best AP and count towards the early stop, save.
What else acts on the run is one object each, called by name where it matters:
`TimeBudget` (time_budget.py), `StopSignals`, `PeriodicSave` and `CloseMosaic`
(run_controls.py). What is written: run_files.py (run dir, results.csv,
steps.csv, plots) and resume.py (last.pt, best.pt; the format: detector/checkpoint.py).

Under torchrun every rank runs `fit`; rank 0 alone validates, prints and writes
files, and broadcasts its decisions (planned epochs, stop) so the ranks stay in step.

Stopping: SIGTERM or SIGINT finishes the current optimizer step, writes a
mid-epoch last.pt and raises `TrainingInterrupted` (exit code 128 + signal in
the CLI); under DDP the ranks agree on the step with an all-reduce after every
step. A signal during validation stops it at the next batch and saves the epoch
as trained but not validated (the resume validates it): a long validation must
not outlast the grace before SIGKILL. `train.save_period` writes the same
mid-epoch last.pt periodically. Under `train.time_limit` the run's length is
planned in steps from the measured speed. Known causes that end a run (a dead or
hung DataLoader worker, undecodable images, a full disk) raise `TrainingError`
with one line and the resume hint.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from detector.config import Config, parse_save_period
from detector.data.record import SplitRecords
from detector.training import distributed as ddp
from detector.training.engine import (
    EpochProgress,
    NanGuard,
    NonFiniteLossError,
    TrainingEpoch,
    TrainParts,
    TrainState,
    ValidationStopped,
    build_train_parts,
    compile_for_training,
    validate,
)
from detector.training.failures import (
    TrainingError,
    describe_failure,
    resume_hint,
    shut_down_workers,
)
from detector.training.optim import LrPlan
from detector.training.resume import (
    check_class_names,
    check_weights_finite,
    restore_rng_state,
    restore_run,
    save_best,
    save_last,
    seed_everything,
)
from detector.training.run_controls import (
    CloseMosaic,
    ImmediateStop,
    PeriodicSave,
    ProgressiveSizes,
    StopSignals,
    TrainingInterrupted,
    signal_name,
)
from detector.training.run_files import (
    append_result,
    append_step,
    create_run_dir,
    epoch_row,
    plot_training_curves,
    truncate_results,
    truncate_steps,
    write_config_yaml,
)
from detector.training.time_budget import TimeBudget


def _stderr(message: str) -> None:
    # Through tqdm: a message printed while a bar is drawn (a signal's) gets its own line.
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


@dataclass(kw_only=True)
class Run(TrainParts):
    """One training run: the objects a step touches (`TrainParts`) and everything around them.

    Built once by `build_run`; `fit` advances `state` and `progress` and replaces
    `plan` when the time budget moves its end.
    """

    cfg: Config
    dist: ddp.DistInfo
    run_dir: Path | None  # None on ranks other than 0 for a new run
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None  # rank 0 only
    val_split: SplitRecords | None
    names: list[str]
    state: TrainState  # the counters last.pt saves
    progress: EpochProgress = field(default_factory=EpochProgress)  # of the current epoch
    budget: TimeBudget | None  # train.time_limit
    saves: PeriodicSave  # train.save_period, and which position last.pt holds
    close_mosaic: CloseMosaic  # train.close_mosaic
    sizes: ProgressiveSizes  # train.progressive: each epoch's input side
    log: Callable[[str], None]

    def follow(self, plan: LrPlan) -> None:
        """Train to `plan` from here on (the time budget's); the planned epochs follow it."""
        self.plan = plan
        self.state.planned_epochs = self.budget.planned_epochs(plan, self.state.epoch)

    def save_last(self, progress: EpochProgress | None = None) -> None:
        """Rank 0: last.pt at the current step (`progress`: inside an epoch)."""
        if self.budget is not None:
            self.state.elapsed_s = self.budget.elapsed()  # a resume gets only the time that is left
        save_last(self.run_dir, self, self.state, self.cfg, self.names, progress)
        batches = progress.batches_done if progress is not None else 0
        self.saves.record(self.state.step, epoch=self.state.epoch, batches_done=batches)

    def resume_hint(self) -> str:
        """The resume hint (rank 0 knows the run directory; the others say who saved)."""
        if self.dist.is_main:
            return resume_hint(self.run_dir)
        return f"rank 0 saved last.pt (this is rank {self.dist.rank})"


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
        The run directory (RUN/config.yaml, results.csv, steps.csv, weights/{last,best}.pt,
        plots/); None on ranks other than 0.

    Raises:
        NonFiniteLossError: the NaN guard stopped training (last.pt holds the last good state).
        TrainingInterrupted: SIGTERM/SIGINT; last.pt holds the step it finished
            (`exit_code` is 128 + signal number).
        TrainingError: a known cause ended the run (one line, with the resume hint).
    """
    with StopSignals(log) as signals, _KnownFailures() as failures:
        run = failures.run = build_run(cfg, resume_checkpoint, changes or [], log, clock)
        state, dist, budget = run.state, run.dist, run.budget
        nan_guard = NanGuard(cfg.train.nan_policy, cfg.train.max_nan_skips)
        nan_guard.consecutive = run.progress.nan_streak
        previous_side = None
        while state.epoch < state.planned_epochs and not state.finished:
            # Start of the epoch. The sampler makes its order and augmentation a function of
            # (train.seed, rank, epoch) (data/loading/sampling.py), so a resumed run replays
            # exactly the batches the uninterrupted one would have seen; a mid-epoch resume
            # skips the samples its checkpoint already trained on.
            epoch_start, planned_before = clock(), state.planned_epochs
            sampler = run.train_loader.sampler
            sampler.set_epoch(state.epoch, start=run.progress.batches_done * cfg.train.batch_size)
            state.mosaic_closed = run.close_mosaic.start_epoch(
                sampler, state.epoch, state.planned_epochs, closed=state.mosaic_closed
            )
            side, state.full_size_reached = run.sizes.start_epoch(
                sampler, state.epoch, state.planned_epochs, reached=state.full_size_reached
            )
            if run.sizes.sides and side != previous_side:
                run.log(f"epoch {state.epoch + 1}: input side {side} px (train.progressive)")
            previous_side = side
            if budget is not None:
                # From this step: a resumed epoch's steps before the resume took no time in this
                # session, and counting them would read a too-fast speed and stretch the plan.
                budget.start_epoch(state.step, step_cost=run.sizes.step_cost(side))
            epoch_batches = run.progress.batches_done + len(run.train_loader)

            # Train one epoch, acting after every optimizer step: the step log, a stop
            # signal, the time budget, the periodic save.
            epoch = TrainingEpoch(
                run,
                run.train_loader,
                state,
                cfg.train,
                epoch=state.epoch,
                planned_epochs=state.planned_epochs,
                nan_guard=nan_guard,
                dist=dist,
                show_progress=show_progress,
                progress=run.progress,
            )
            stop_signum = 0
            for step_loss in epoch:
                if dist.is_main:
                    append_step(
                        run.run_dir / "steps.csv",
                        epoch=state.epoch + 1,
                        batch=run.progress.batches_done,
                        step=state.step,
                        loss=step_loss,
                        lr=run.optimizer.param_groups[0]["lr"],
                    )
                stop_signum = signals.agreed(dist, run.device)
                if stop_signum:
                    break
                if budget is not None:
                    plan, budget_stop = budget.after_step(state.step, run.plan)
                    run.follow(plan)
                    if budget_stop:
                        break
                if dist.is_main and run.saves.due(state.step):
                    run.save_last(run.progress)
            stats = epoch.stats()
            if stop_signum:
                raise _interrupted(run, stop_signum, epoch_batches)
            state.epoch += 1
            # `trained`: the epoch as trained, for a stop during its validation.
            trained, run.progress = run.progress, EpochProgress()
            train_s = clock() - epoch_start
            if budget is not None:  # correct the plan with this epoch's speed
                run.follow(budget.end_epoch(state.step, run.plan))
                if state.planned_epochs != planned_before:
                    run.log(
                        f"time budget: {planned_before} -> {state.planned_epochs} epochs "
                        f"({run.plan.total_steps} steps, cosine end moved; "
                        f"{budget.elapsed() / 60:.1f} of {cfg.train.time_limit} min used)"
                    )
            budget_spent = budget is not None and state.step >= run.plan.total_steps
            last_epoch = (
                state.epoch >= state.planned_epochs or stats["stopped_early"] or budget_spent
            )

            # Validate (rank 0): AP of the EMA weights.
            metrics, stopped = {}, False
            if dist.is_main and (last_epoch or state.epoch % cfg.train.eval_interval == 0):
                try:
                    metrics = validate(
                        run.eval_model,
                        run.val_loader,
                        run.val_split,
                        cfg,
                        device=run.device,
                        progress=show_progress,
                        should_stop=lambda: signals.signum is not None,
                    )
                except ValidationStopped:
                    stopped = True

            # Best AP and the early-stopping count (rank 0 decides; every rank follows).
            improved = (
                bool(metrics) and not math.isnan(metrics["AP"]) and metrics["AP"] > state.best_ap
            )
            if improved:
                state.best_ap, state.best_epoch = metrics["AP"], state.epoch
                state.epochs_without_improvement = 0
            elif metrics:
                state.epochs_without_improvement += cfg.train.eval_interval
            patience = cfg.train.early_stop_patience
            early = dist.is_main and patience > 0 and state.epochs_without_improvement >= patience
            early, stopped = ddp.broadcast_numbers([float(early), float(stopped)], dist, run.device)
            if stopped:  # a signal during validation: save the epoch as trained, validate on resume
                state.epoch, run.progress = state.epoch - 1, trained
                raise _interrupted(run, signals.agreed(dist, run.device), epoch_batches)
            if early:
                run.log(
                    f"early stop: no AP improvement for {state.epochs_without_improvement} epochs "
                    f"(best AP {state.best_ap:.4f} at epoch {state.best_epoch})"
                )
            state.finished = last_epoch or bool(early)

            # Save (rank 0): results.csv row, best.pt when improved, last.pt, plots.
            if dist.is_main:
                _save_epoch(run, stats, metrics, improved=improved, train_s=train_s)
                run.log(
                    summary_line(
                        state.epoch,
                        state.planned_epochs,
                        stats,
                        metrics,
                        state.best_ap,
                        clock() - epoch_start,
                    )
                )
            elif budget is not None:
                state.elapsed_s = budget.elapsed()
            if budget is not None:  # still this epoch's end: correct with the validation just timed
                run.follow(
                    budget.after_validation(
                        clock() - epoch_start - train_s,
                        state.step,
                        run.plan,
                        finished=state.finished,
                    )
                )
            ddp.barrier(dist)  # nobody starts the next epoch before the checkpoint is on disk
            signum = signals.agreed(dist, run.device)  # a signal during validation or the writes
            if signum and not state.finished:
                raise TrainingInterrupted(
                    signum,
                    f"{signal_name(signum)}: stopped after epoch {state.epoch} "
                    f"(step {state.step}); last.pt saved; {run.resume_hint()}",
                )
        run.log(
            f"done: best AP {state.best_ap:.4f} at epoch {state.best_epoch}; "
            f"weights in {run.run_dir}/weights"
        )
        return run.run_dir


def _save_epoch(
    run: Run, stats: dict[str, Any], metrics: dict[str, float], *, improved: bool, train_s: float
) -> None:
    """Rank 0, after epoch `run.state.epoch`: results.csv row, best.pt if improved, last.pt,
    plots."""
    state, run_dir = run.state, run.run_dir
    check_weights_finite(run, f"after epoch {state.epoch}")
    append_result(run_dir / "results.csv", epoch_row(state.epoch, stats, metrics, train_s=train_s))
    # best.pt exists from the first validation on, even when AP is undefined (-1: no ground truth).
    if improved or (metrics and not (run_dir / "weights" / "best.pt").exists()):
        save_best(run_dir, run, state, run.cfg, run.names)
    run.save_last()
    plot_training_curves(run_dir / "results.csv", run_dir / "plots")


def summary_line(
    epoch: int,
    planned: int,
    stats: dict[str, Any],
    metrics: dict[str, float],
    best_ap: float,
    seconds: float,
) -> str:
    """The one line printed after every epoch."""
    terms = " ".join(
        f"{k.removeprefix('loss_')} {v:.3f}" for k, v in stats.items() if k.startswith("loss_")
    )
    ap = (
        f"AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} (best AP {best_ap:.4f})"
        if metrics
        else "not validated"
    )
    return (
        f"epoch {epoch}/{planned}  loss {stats.get('loss', math.nan):.4f} ({terms})  "
        f"lr {stats['lr']:.2e}  "
        f"{ap}  {stats['images_per_s']:.1f} img/s  {seconds:.1f}s"
    )


def _interrupted(run: Run, signum: int, epoch_batches: int) -> TrainingInterrupted:
    """Rank 0 saves the mid-epoch state (unless last.pt already holds this step); returns
    the exception to raise."""
    state, progress = run.state, run.progress
    if run.dist.is_main and not run.saves.holds(state.epoch, progress.batches_done):
        run.save_last(progress)
    ddp.barrier(run.dist)  # the others wait until last.pt is on disk
    where = f"epoch {state.epoch + 1}, batch {progress.batches_done}/{epoch_batches}"
    return TrainingInterrupted(
        signum,
        f"{signal_name(signum)}: stopped after step "
        f"{state.step} ({where}); last.pt saved; {run.resume_hint()}",
    )


def build_datasets(
    cfg: Config, dist: ddp.DistInfo, *, resuming: bool = False
) -> tuple[Any, Any, SplitRecords, SplitRecords | None]:
    """The training and validation loaders and splits: the one place training builds its data.

    Rank 0 first: it may generate the synthetic dataset that the others then read, and
    fetches `model.pretrained: imagenet` into the cache before they look there (a new run
    only). The validation loader and split are rank 0's only (None elsewhere).

    Returns:
        (train_loader, val_loader, train_split, val_split).
    """
    from detector.data.loading.dataset import build_dataloader
    from detector.model.imagenet import pretrained_path

    val_loader = val_split = None
    if dist.is_main:
        train_loader, train_split = build_dataloader(
            cfg, "train", train=True, distributed=dist.distributed
        )
        val_loader, val_split = build_dataloader(cfg, "val", train=False)
        if cfg.model.pretrained and not resuming:
            pretrained_path(cfg.model.pretrained, cfg.model.backbone)
    ddp.barrier(dist)
    if not dist.is_main:
        train_loader, train_split = build_dataloader(cfg, "train", train=True, distributed=True)
    return train_loader, val_loader, train_split, val_split


def build_run(
    cfg: Config,
    resume_checkpoint: dict[str, Any] | None,
    changes: list[str],
    log: Callable[[str], None],
    clock: Callable[[], float],
) -> Run:
    """Seeds, data, model, optimizer, run directory; for a resume, the state saved in last.pt.

    Resuming restores the model, optimizer, lr plan, counters, the epoch's progress
    (a mid-epoch checkpoint) and, last, the RNG states. A finished run given more
    `train.epochs` is extended with a new cosine, stated in the log.
    """
    from detector.model.build import build_loss, build_model

    start = clock()  # the time budget counts set-up (data, model) too
    save_period = parse_save_period(
        cfg.train.save_period
    )  # a bad value fails before any run dir exists
    device = ddp.local_device(cfg.train.device)
    dist = ddp.setup_distributed(device)
    log = log if dist.is_main else (lambda message: None)
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    resuming = resume_checkpoint is not None
    run_dir = Path(cfg.train.run_dir) if resuming else None
    train_loader, val_loader, train_split, val_split = build_datasets(cfg, dist, resuming=resuming)
    names = list(train_split.names)
    if resuming:
        check_class_names(run_dir, list(resume_checkpoint["names"]), names)

    # A resumed run takes every weight from its checkpoint: no ImageNet file is read or fetched.
    model_cfg = dataclasses.replace(cfg.model, pretrained=None) if resuming else cfg.model
    model = build_model(model_cfg, len(names)).to(device)
    loss_fn = build_loss(cfg.model, len(names)).to(device)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.train.accumulate)
    parts = build_train_parts(
        model, loss_fn, cfg.train, device=device, steps_per_epoch=steps_per_epoch
    )
    state = TrainState(planned_epochs=cfg.train.epochs)
    progress = EpochProgress()
    if dist.is_main and not resuming:
        # Only now, once data and model are known good: a bad config leaves no empty run dir.
        run_dir = create_run_dir(cfg.train.run_dir, exist_ok=cfg.train.exist_ok)
        cfg.train.run_dir = str(run_dir)
    if resuming:
        progress = restore_run(
            parts,
            state,
            resume_checkpoint,
            cfg,
            steps_per_epoch=steps_per_epoch,
            changes=changes,
            log=log,
        )
        # Last, so that building the model above does not consume the restored streams.
        restore_rng_state(resume_checkpoint["rng"])
        if dist.is_main:
            truncate_results(run_dir / "results.csv", state.epoch)
            truncate_steps(
                run_dir / "steps.csv", epochs_done=state.epoch, batches_done=progress.batches_done
            )
    if dist.distributed:
        parts.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.train.compile:
        parts.compiled = compile_for_training(parts.model, device, log)
    if dist.is_main:
        write_config_yaml(cfg, run_dir)
        log(
            f"{'resuming' if resuming else 'training'} in {run_dir}: "
            f"{len(train_split.records)} train / "
            f"{len(val_split.records)} val images, {len(names)} classes, {cfg.model.backbone} "
            f"width {cfg.model.width:g} "
            f"{cfg.model.image_size}px on {device} x{dist.world_size}, "
            f"epoch {state.epoch + 1}/{state.planned_epochs}"
        )
    sizes = ProgressiveSizes(cfg.train.progressive, cfg.model.image_size)
    budget = None
    if cfg.train.time_limit is not None:
        # Until one validation is timed it is costed from the training speed: inference is
        # ~3x cheaper per image than training.
        val_images = len(val_split.records) if val_split is not None else 0
        budget = TimeBudget(
            cfg.train.time_limit,
            steps_per_epoch=steps_per_epoch,
            eval_interval=cfg.train.eval_interval,
            validation_cost_in_steps=val_images / cfg.train.batch_size / 3,
            clock=clock,
            elapsed_before_s=state.elapsed_s + clock() - start,
            planned=resuming and state.step > 0,
            dist=dist,
            device=device,
            mean_step_cost=functools.partial(sizes.mean_step_cost, steps_per_epoch=steps_per_epoch),
        )
    saves = PeriodicSave(
        save_period,
        clock=clock,
        step=state.step,
        position=(state.epoch, progress.batches_done) if resuming else (-1, 0),
    )
    return Run(
        **{name: getattr(parts, name) for name in TrainParts.__dataclass_fields__},
        cfg=cfg,
        dist=dist,
        run_dir=run_dir,
        train_loader=train_loader,
        val_loader=val_loader,
        val_split=val_split,
        names=names,
        state=state,
        progress=progress,
        budget=budget,
        saves=saves,
        close_mosaic=CloseMosaic(cfg.train.close_mosaic),
        sizes=sizes,
        log=log,
    )


class _KnownFailures:
    """`fit`'s error contract: a run-ending cause becomes one line with the resume hint.

    An immediate stop (a second signal) becomes `TrainingInterrupted`; a RuntimeError
    or OSError that `describe_failure` recognises (dead worker, undecodable image,
    full disk) becomes `TrainingError`; anything else passes unchanged. On the way
    out the DataLoader workers are shut down and DDP is left, whatever happened.
    """

    def __init__(self) -> None:
        self.run: Run | None = None  # set once `build_run` has built it

    def __enter__(self) -> _KnownFailures:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        run_dir = self.run.run_dir if self.run is not None else None
        try:
            if isinstance(exc, ImmediateStop):
                raise TrainingInterrupted(exc.signum, f"{exc}; {resume_hint(run_dir)}") from None
            if isinstance(exc, (RuntimeError, OSError)) and not isinstance(
                exc, (TrainingError, NonFiniteLossError)
            ):
                reason = describe_failure(exc)
                if reason is not None:
                    raise TrainingError(f"{reason}; {resume_hint(run_dir)}") from exc
            return False  # re-raise `exc` as it is (or nothing, when none)
        finally:
            if self.run is not None:
                shut_down_workers(self.run.train_loader)
            ddp.cleanup_distributed()


__all__ = ["fit", "NonFiniteLossError", "TrainingError", "TrainingInterrupted"]
