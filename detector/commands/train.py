"""`detector train`: train a detector from a YAML config, or continue a run.

    detector train configs/shapes.yaml
    detector train configs/voc.yaml --set train.epochs=50 --set model.backbone=resnet50
    detector train configs/voc.yaml --device cuda:1
    detector train --resume runs/train/exp                     # continue exactly where it stopped
    detector train --resume runs/train/exp --set train.epochs=80   # ... and train longer
    torchrun --nproc_per_node=4 -m detector train configs/voc.yaml  # DDP, one process per GPU

Prints the run directory (on stdout, last line); progress goes to stderr.

SIGTERM or Ctrl-C (SIGINT) finishes the optimizer step, writes weights/last.pt and
prints one line ending in `continue with: detector train --resume RUN`; the exit
code is 128 + the signal (143, 130). Errors that end a run (a dead or hung
DataLoader worker, undecodable images, a full disk) print one line with the reason
and the same hint, exit code 1.
"""

from __future__ import annotations

import os

import click


@click.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set train.epochs=10 (repeatable).",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Continue the run in this directory from its weights/last.pt.",
)
@click.option(
    "--device", default=None, help="Training device: auto, cpu, cuda or cuda:N (sets train.device)."
)
def train(
    config: str | None, overrides: tuple[str, ...], resume_dir: str | None, device: str | None
) -> None:
    """Train on the dataset CONFIG describes; writes config.yaml, results.csv, weights/ and plots/.

    With --resume, CONFIG is optional: the run's stored config is used.
    """
    from detector.checkpoint import CheckpointError
    from detector.config import ConfigError, load_config
    from detector.training.resume import ResumeError, prepare_resume
    from detector.training.trainer import (
        NonFiniteLossError,
        TrainingError,
        TrainingInterrupted,
        fit,
    )

    overrides_list = list(overrides) + ([f"train.device={device}"] if device else [])
    try:
        if resume_dir is not None:
            cfg, ckpt, changes = prepare_resume(
                resume_dir, config_path=config, overrides=overrides_list
            )
        elif config is None:
            raise click.UsageError("give a CONFIG file, or --resume RUN_DIR")
        else:
            cfg, ckpt, changes = load_config(config, overrides_list), None, []
        run_dir = fit(cfg, resume_checkpoint=ckpt, changes=changes)
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
            click.echo(str(exc), err=True)
        raise SystemExit(exc.exit_code) from None
    # ValueError covers data errors (unreadable split files, unknown classes) named by the readers.
    except (
        ConfigError,
        CheckpointError,
        ResumeError,
        NonFiniteLossError,
        TrainingError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        raise click.ClickException(str(exc)) from exc
    if run_dir is not None:  # None on ranks other than 0 under torchrun
        click.echo(str(run_dir))
