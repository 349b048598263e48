"""Benchmark: `train.progressive` against the config as it is, at equal wall-clock.

    python tools/benchmark.py progressive --sets shapes --scale 0.8 --minutes 7
    python tools/benchmark.py progressive --sets dense --scale 0.8 --fraction 0.5 --minutes 7

For each tuning set (its own config, `--set` overrides applied to both arms) it
measures, side by side in alternating repeats, the training images/s at
model.image_size and at the ramp's first side (`--scale` x model.image_size, down to a
multiple of 32; the real DataLoader and step, one thread), then gives each arm the
epochs that `--minutes` buys at those speeds: the plain config `minutes x full img/s /
images`, the progressive one the same minutes with its first `--fraction` of the
epochs at the first side's speed (with one side in the ramp, as at 0.8 x 160 or
0.8 x 256, exactly what it trains; with more, a lower bound on its epochs). Both train
that fixed number of epochs (one cosine over them, as under `train.time_limit`) and are scored once
at the end at model.image_size. Fixed epochs make the AP independent of the
machine's load during training; the speeds are only as fair as their side-by-side
measurement. The CPU model is printed with the figures.
"""

from __future__ import annotations

import copy
from pathlib import Path

import click

from benchmarks.ladder import (
    DEFAULT_OUT,
    _config,
    budget_epochs,
    cpu_model,
    train_for_budget,
    training_speed,
)


def progressive_epochs(
    minutes: float, num_train: int, full_ips: float, small_ips: float, fraction: float
) -> tuple[int, int]:
    """(plain epochs, progressive epochs) that `minutes` buys at the measured images/s."""
    plain = budget_epochs(minutes, full_ips, num_train)
    seconds_per_epoch = num_train * (fraction / small_ips + (1 - fraction) / full_ips)
    return plain, max(1, round(minutes * 60 / seconds_per_epoch))


@click.command("progressive")
@click.option("--sets", default="shapes", show_default=True, help="tuning sets, comma-separated")
@click.option("--scale", type=float, default=0.8, show_default=True, help="train.progressive.scale")
@click.option(
    "--fraction", type=float, default=0.5, show_default=True, help="train.progressive.fraction"
)
@click.option("--minutes", type=float, default=7.0, show_default=True, help="the equal budget")
@click.option("--preset", default="r18-0.25", show_default=True, help="a ladder preset")
@click.option("--repeats", type=int, default=3, show_default=True, help="speed repeats (medians)")
@click.option("--steps", type=int, default=4, show_default=True, help="timed steps per repeat")
@click.option("--set", "overrides", multiple=True, help="KEY=VALUE override for both arms")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="data and runs (shared with `ladder`)",
)
def progressive(
    sets: str,
    scale: float,
    fraction: float,
    minutes: float,
    preset: str,
    repeats: int,
    steps: int,
    overrides: tuple[str, ...],
    out: Path,
) -> None:
    """train.progressive vs the plain config: epochs and AP at equal wall-clock."""
    import torch

    from detector.config import ProgressiveResize, check_config_ranges
    from detector.data.synthetic.embedded import ensure_synthetic_dataset
    from detector.training.run_controls import start_side

    torch.set_num_threads(1)
    click.echo(f"machine: {cpu_model()}; torch {torch.__version__}, 1 thread")
    rows = []
    for set_name in sets.split(","):
        cfg = _config(set_name, preset, out, list(overrides))
        cfg.train.progressive = None
        small = start_side(scale, cfg.model.image_size)
        small_cfg = copy.deepcopy(cfg)
        small_cfg.model.image_size = small
        speeds = training_speed(
            {(set_name, "full"): cfg, (set_name, "small"): small_cfg}, steps, repeats, 0, out
        )
        full_ips, small_ips = speeds[(set_name, "full")], speeds[(set_name, "small")]
        ensure_synthetic_dataset(cfg.data)
        plain, prog = progressive_epochs(
            minutes, cfg.data.synthetic.num_train, full_ips, small_ips, fraction
        )
        prog_cfg = copy.deepcopy(cfg)
        prog_cfg.train.progressive = ProgressiveResize(scale=scale, fraction=fraction)
        check_config_ranges(prog_cfg)
        runs = out / "runs" / set_name
        plain_row = train_for_budget(cfg, runs / f"plain-{minutes:g}min", plain)
        prog_row = train_for_budget(prog_cfg, runs / f"progressive-{small}-{fraction:g}", prog)
        rows.append(
            (set_name, cfg.model.image_size, full_ips, small_ips, plain, plain_row, prog, prog_row)
        )
    click.echo(
        f"\n{'set':<7} {'side':>5} {'img/s':>6} {'small':>6}  {'plain':>20}  {'progressive':>20}"
    )
    for set_name, side, full_ips, small_ips, plain, plain_row, prog, prog_row in rows:
        click.echo(
            f"{set_name:<7} {side:>5} {full_ips:6.1f} {small_ips:6.1f}  "
            f"{plain:3d} ep AP {plain_row['AP']:.3f}/{plain_row['AP50']:.3f}  "
            f"{prog:3d} ep AP {prog_row['AP']:.3f}/{prog_row['AP50']:.3f}"
        )
