"""The training run, top to bottom: set up, then per epoch train, validate, checkpoint.

    from detector.config import load_config
    from detector.training.trainer import fit
    run_dir = fit(load_config("configs/shapes.yaml", ["train.epochs=5"]))

    # continue an interrupted run exactly (the CLI does this for --resume):
    cfg, ckpt, changes = prepare_resume("runs/train/exp")
    fit(cfg, resume_checkpoint=ckpt, changes=changes)

`fit` is the algorithm; one epoch is `epoch.train_one_epoch`, one validation
`epoch.validate`, what is built before the first epoch `setup.set_up`, and what
is written `run_outputs` (the checkpoint format itself: detector/checkpoint.py).

Under torchrun every rank runs `fit`; rank 0 alone validates, prints and writes
files, and broadcasts its decisions (planned epochs, stop) so the ranks stay in step.

Stopping: SIGTERM or SIGINT finishes the current optimizer step, writes a
mid-epoch last.pt and raises `TrainingInterrupted` (exit code 128 + signal in
the CLI); under DDP the ranks agree on the step with an all-reduce after every
step. A signal during validation stops it at the next batch and saves the epoch
as trained but not validated (the resume validates it): a long validation must
not outlast the grace before SIGKILL. `train.save_period` writes the same
mid-epoch last.pt periodically. Under
`train.time_limit` the run's length is planned in steps from the measured speed
(time_budget.py). Known causes that end a run (a dead or hung DataLoader worker,
undecodable images, a full disk) raise `TrainingError` with one line and the
resume hint.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm import tqdm

from detector.config import Config
from detector.training import distributed as ddp
from detector.training.augment_schedule import start_epoch_augment
from detector.training.epoch import (
    NanGuard,
    NonFiniteLossError,
    ValidationStopped,
    train_one_epoch,
    validate,
)
from detector.training.failures import (
    TrainingError,
    describe_failure,
    resume_hint,
    shut_down_workers,
)
from detector.training.run_outputs import log_step, save_progress, summary_line, write_epoch
from detector.training.setup import Run, set_up
from detector.training.state import EpochProgress
from detector.training.stop_signals import (
    ImmediateStop,
    StopSignals,
    TrainingInterrupted,
    signal_name,
)
from detector.training.time_budget import PLAN_AFTER_STEPS, correction_needed

MAX_WARMUP_FRACTION = 0.2  # a time budget shorter than the warmup caps it at this share


def _stderr(message: str) -> None:
    # Through tqdm: a message printed while a bar is drawn (a signal's) gets its own line.
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


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
        run = failures.run = set_up(cfg, resume_checkpoint, changes or [], log, clock)
        state, dist, budget = run.state, run.dist, run.budget
        nan_guard = NanGuard(cfg.train.nan_policy, cfg.train.max_nan_skips)
        nan_guard.consecutive = run.progress.nan_streak
        while state.epoch < state.planned_epochs and not state.finished:
            # Start of the epoch. The sampler makes its order and augmentation a function of
            # (train.seed, rank, epoch) (data/loading/sampling.py), so a resumed run replays
            # exactly the batches the uninterrupted one would have seen; a mid-epoch resume
            # skips the samples its checkpoint already trained on.
            epoch_start, planned_before = clock(), state.planned_epochs
            if budget is not None:
                # From this step: a resumed epoch's steps before the resume took no time in this
                # session, and counting them would read a too-fast speed and stretch the plan.
                budget.start_epoch(state.step)
            run.train_loader.sampler.set_epoch(state.epoch, start=run.progress.batches_done * cfg.train.batch_size)
            state.mosaic_closed = start_epoch_augment(run.train_loader.sampler, cfg.train, state.epoch,
                                                      state.planned_epochs, closed=state.mosaic_closed)
            run.epoch_batches = run.progress.batches_done + len(run.train_loader)

            # Train one epoch; after every optimizer step `_after_step` may end it early.
            stats = train_one_epoch(run.parts, run.train_loader, state, cfg.train, epoch=state.epoch,
                                    planned_epochs=state.planned_epochs, nan_guard=nan_guard, dist=dist,
                                    show_progress=show_progress, progress=run.progress,
                                    after_step=functools.partial(_after_step, run, signals, clock))
            if run.stop_signum:
                raise _interrupted(run, clock)
            state.epoch += 1
            trained, run.progress = run.progress, EpochProgress()  # `trained`: for a stop in validation
            train_s = clock() - epoch_start
            if budget is not None:  # correct the plan with this epoch's speed
                budget.end_epoch(state.step)
                _plan_budget(run, broadcast=True)
                if state.planned_epochs != planned_before:
                    run.log(f"time budget: {planned_before} -> {state.planned_epochs} epochs "
                            f"({run.parts.schedule.total_steps} steps, cosine end moved; "
                            f"{budget.elapsed() / 60:.1f} of {cfg.train.time_limit} min used)")
            budget_spent = budget is not None and state.step >= run.parts.schedule.total_steps
            last_epoch = state.epoch >= state.planned_epochs or stats["stopped_early"] or budget_spent

            # Validate (rank 0): AP of the EMA weights; the best AP and the early-stopping count.
            metrics, improved, stopped = {}, False, False
            if dist.is_main and (last_epoch or state.epoch % cfg.train.eval_interval == 0):
                try:
                    metrics = validate(run.parts.eval_model, run.val_loader, run.val_split, cfg,
                                       device=run.device, progress=show_progress,
                                       should_stop=lambda: signals.signum is not None)
                except ValidationStopped:
                    stopped = True
                else:
                    improved = not math.isnan(metrics["AP"]) and metrics["AP"] > state.best_ap
                    if improved:
                        state.best_ap, state.best_epoch = metrics["AP"], state.epoch
                        state.epochs_without_improvement = 0
                    else:
                        state.epochs_without_improvement += cfg.train.eval_interval
            patience = cfg.train.early_stop_patience
            early = dist.is_main and patience > 0 and state.epochs_without_improvement >= patience
            # Rank 0 decides both.
            early, stopped = ddp.broadcast_numbers([float(early), float(stopped)], dist, run.device)
            if stopped:  # a signal during validation: save the epoch as trained, validate on resume
                state.epoch, run.progress = state.epoch - 1, trained
                run.stop_signum = _agreed_signal(run, signals)
                raise _interrupted(run, clock)
            if early:
                run.log(f"early stop: no AP improvement for {state.epochs_without_improvement} epochs "
                        f"(best AP {state.best_ap:.4f} at epoch {state.best_epoch})")
            state.finished = last_epoch or bool(early)

            # Checkpoint (rank 0): results.csv row, best.pt when improved, last.pt, plots.
            if budget is not None:
                state.elapsed_s = budget.elapsed()
            if dist.is_main:
                write_epoch(run.run_dir, run.parts, state, cfg, run.names, stats, metrics, improved=improved,
                            train_s=train_s)
                run.saved_at, run.saved_position = (state.step, clock()), (state.epoch, 0)
                run.log(summary_line(state.epoch, state.planned_epochs, stats, metrics, state.best_ap,
                                     clock() - epoch_start))
            if budget is not None:
                budget.record_overhead(clock() - epoch_start - train_s)
                if not state.finished:  # still this epoch's end: correct with the validation just timed
                    _plan_budget(run, broadcast=True, overhead_due=False)
            ddp.barrier(dist)  # nobody starts the next epoch before the checkpoint is on disk
            signum = _agreed_signal(run, signals)  # a signal during validation or the writes
            if signum and not state.finished:
                raise TrainingInterrupted(signum, f"{signal_name(signum)}: stopped after epoch {state.epoch} "
                                                  f"(step {state.step}); last.pt saved; {_hint(run)}")
        run.log(f"done: best AP {state.best_ap:.4f} at epoch {state.best_epoch}; weights in {run.run_dir}/weights")
        return run.run_dir


def _after_step(run: Run, signals: StopSignals, clock: Callable[[], float], step_loss: float) -> bool:
    """After every optimizer step: step log, stop signal, time budget, periodic save; True ends the epoch.

    A stop signal is kept in `run.stop_signum` (`fit` then saves and raises). The
    budget's first plan and its stop inside an epoch are rank 0's, broadcast (under
    DDP one more small collective per step), so a DDP run does not overshoot the
    budget by up to an epoch.
    """
    state, dist, budget = run.state, run.dist, run.budget
    if dist.is_main:
        log_step(run.run_dir, epoch=state.epoch + 1, batch=run.progress.batches_done, step=state.step,
                 loss=step_loss, lr=run.parts.optimizer.param_groups[0]["lr"])
    run.stop_signum = _agreed_signal(run, signals)
    if run.stop_signum:
        return True
    if budget is not None:
        if not run.budget_planned and budget.steps_timed(state.step) >= PLAN_AFTER_STEPS:
            # The first plan, from the first timed steps; every rank counts the same steps.
            _plan_budget(run, broadcast=dist.distributed)
        stop = state.step >= run.parts.schedule.total_steps or (dist.is_main and not budget.next_step_fits(
            current_step=state.step, validation_estimate_s=_validation_estimate(run)))
        if dist.distributed:  # rank 0's clock decides, so every rank stops after the same step
            (stop,) = ddp.broadcast_numbers([float(stop)], dist, run.device)
        if stop:
            return True
    if dist.is_main and run.save_period is not None and run.save_period.due(
            steps_since_save=state.step - run.saved_at[0], seconds_since_save=clock() - run.saved_at[1]):
        _save_progress(run, clock)
    return False


def _plan_budget(run: Run, *, broadcast: bool, overhead_due: bool = True) -> None:
    """Plan the run's length from the measured speed (first plan), or correct it (epoch ends).

    The first plan sets the cosine's end; later ones move it with `retarget` (the
    cosine keeps its progress) and only when `correction_needed` says so. Under
    DDP (`broadcast`) rank 0 decides and every rank follows.
    `overhead_due`: False right after an epoch's validation (already paid for).
    """
    state, budget, spe, schedule = run.state, run.budget, run.parts.steps_per_epoch, run.parts.schedule
    total = schedule.total_steps
    if run.dist.is_main:
        total = budget.plan_steps(current_step=state.step, steps_per_epoch=spe, eval_interval=run.cfg.train.eval_interval,
                                  validation_estimate_s=_validation_estimate(run), overhead_due=overhead_due) or total
    if broadcast:
        (total,) = ddp.broadcast_numbers([total], run.dist, run.device)
    total = max(int(total), state.step)
    if not run.budget_planned or correction_needed(schedule.total_steps, total):
        schedule.retarget(current_step=state.step, total_steps=total, max_warmup_fraction=MAX_WARMUP_FRACTION)
    run.budget_planned = True
    state.planned_epochs = max(math.ceil(schedule.total_steps / spe), state.epoch)


def _validation_estimate(run: Run) -> float:
    """One validation's cost until one was timed: inference is ~3x cheaper per image than training."""
    seconds_per_step = run.budget.seconds_per_step(run.state.step) or 0.0
    return seconds_per_step / run.cfg.train.batch_size * len(run.val_split.records) / 3


def _agreed_signal(run: Run, signals: StopSignals) -> int:
    """The stop signal any rank received (0: none); every rank gets the same answer."""
    return int(ddp.max_across_ranks(float(signals.signum or 0), run.dist, run.device))


def _save_progress(run: Run, clock: Callable[[], float]) -> None:
    """Rank 0: a mid-epoch last.pt at the current step."""
    if run.budget is not None:
        run.state.elapsed_s = run.budget.elapsed()  # a resume gets only the time that is left
    save_progress(run.run_dir, run.parts, run.state, run.cfg, run.names, run.progress)
    run.saved_at = (run.state.step, clock())
    run.saved_position = (run.state.epoch, run.progress.batches_done)


def _interrupted(run: Run, clock: Callable[[], float]) -> TrainingInterrupted:
    """Rank 0 saves the mid-epoch state (unless last.pt already holds this step); the exception to raise."""
    state, progress = run.state, run.progress
    if run.dist.is_main and run.saved_position != (state.epoch, progress.batches_done):
        _save_progress(run, clock)
    ddp.barrier(run.dist)  # the others wait until last.pt is on disk
    where = f"epoch {state.epoch + 1}, batch {progress.batches_done}/{run.epoch_batches}"
    return TrainingInterrupted(run.stop_signum, f"{signal_name(run.stop_signum)}: stopped after step "
                                                f"{state.step} ({where}); last.pt saved; {_hint(run)}")


def _hint(run: Run) -> str:
    """The resume hint (rank 0 knows the run directory; the others say who saved)."""
    return resume_hint(run.run_dir) if run.dist.is_main else f"rank 0 saved last.pt (this is rank {run.dist.rank})"


class _KnownFailures:
    """`fit`'s error contract: a run-ending cause becomes one line with the resume hint.

    An immediate stop (a second signal) becomes `TrainingInterrupted`; a RuntimeError
    or OSError that `describe_failure` recognises (dead worker, undecodable image,
    full disk) becomes `TrainingError`; anything else passes unchanged. On the way
    out the DataLoader workers are shut down and DDP is left, whatever happened.
    """

    def __init__(self) -> None:
        self.run: Run | None = None  # set once `set_up` has built it

    def __enter__(self) -> _KnownFailures:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        run_dir = self.run.run_dir if self.run is not None else None
        try:
            if isinstance(exc, ImmediateStop):
                raise TrainingInterrupted(exc.signum, f"{exc}; {resume_hint(run_dir)}") from None
            if isinstance(exc, (RuntimeError, OSError)) and not isinstance(exc, (TrainingError, NonFiniteLossError)):
                reason = describe_failure(exc)
                if reason is not None:
                    raise TrainingError(f"{reason}; {resume_hint(run_dir)}") from exc
            return False  # re-raise `exc` as it is (or nothing, when none)
        finally:
            if self.run is not None:
                shut_down_workers(self.run.train_loader)
            ddp.cleanup_distributed()


__all__ = ["fit", "NonFiniteLossError", "TrainingError", "TrainingInterrupted"]
