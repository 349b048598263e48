"""Benchmark: the augmentation / training-recipe ablation on the shapes and dense sets.

    python tools/benchmark.py recipe                          # every change on/off, both sets
    python tools/benchmark.py recipe --changes affine,mosaic --sets dense
    python tools/benchmark.py recipe --throughput-only        # the side-by-side images/s run alone
    python tools/benchmark.py recipe --table-only             # print what /tmp/... holds

Each variant is today's defaults with ONE change toggled (added when the defaults
lack it, removed when they have it), so the same table stays meaningful after the
defaults move. Accuracy: every variant trains with the same number of epochs on
the same data subset with the same seed (`train.time_limit` off: wall-clock
budgets are unreliable on a shared machine), validates once at the end, and
reports COCO AP and AP50 of the EMA weights plus its training wall time.
Throughput: one separate run builds every variant's DataLoader and model and
times `train_one_epoch` on a few steps, variant after variant, in alternating
repeats, so machine load hits all alike; medians of images/s are printed with
each variant's time factor (baseline images/s / variant images/s).

Accuracy per second of training: every variant runs the same number of steps, so
its training time is the baseline's times its time factor; a variant is worth
its cost when its AP at equal steps beats what the baseline reaches with that
factor more steps (`--epochs-factor` reruns the baseline longer to measure that).

Results go to `--out` (default /tmp/detector-recipe): datasets, run directories,
and results.json (accumulated across invocations, keyed by set and variant).
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import click

from benchmarks.recipe_variants import CHANGES, SETS, Variant, variants_for

DEFAULT_OUT = Path("/tmp/detector-recipe")


def _set_config(set_name: str, out: Path, overrides: list[str], seed: int) -> Any:
    """The set's config with its smaller benchmark data sizes, data under `out`, seed fixed."""
    from detector.config import load_config

    spec = SETS[set_name]
    cfg = load_config(spec["config"], [*spec["overrides"], *overrides])
    cfg.data.root = str(out / "data" / set_name)
    cfg.train.seed = seed
    cfg.train.time_limit = None
    return cfg


def _train_one(cfg: Any, variant: Variant, run_dir: Path, epochs: int) -> dict[str, float]:
    """Train `variant` for `epochs` epochs, validate at the end; AP, AP50, wall seconds."""
    import csv

    from detector.config import check_config_ranges
    from detector.training.trainer import fit

    cfg = variant.apply(copy.deepcopy(cfg))
    check_config_ranges(cfg)  # the variant's train keys get the checks a config file gets
    cfg.train.epochs = epochs
    cfg.train.eval_interval = epochs  # one validation, at the end
    cfg.train.early_stop_patience = 0
    shutil.rmtree(
        run_dir, ignore_errors=True
    )  # a fresh run: results.csv would otherwise be appended to
    cfg.train.run_dir = str(run_dir)
    started = time.monotonic()
    fit(cfg, show_progress=False, log=lambda message: None)
    wall_s = time.monotonic() - started
    with open(run_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    last = rows[-1]
    train_s = sum(float(row["train_s"]) for row in rows)
    return {
        "AP": float(last["AP"]),
        "AP50": float(last["AP50"]),
        "wall_s": wall_s,
        "train_s": train_s,
        "epochs": epochs,
    }


def _throughput(
    cfgs: dict[str, Any], variants: list[Variant], steps: int, repeats: int, out: Path
) -> dict[str, dict[str, float]]:
    """Median training images/s of each (set, variant), measured in alternating repeats."""
    from detector.data.loading.dataset import build_dataloader
    from detector.data.synthetic.embedded import generate_shapes_dataset
    from detector.model.build import build_loss, build_model
    from detector.training.distributed import local_device
    from detector.training.engine import NanGuard, TrainState, build_train_parts, train_one_epoch

    runs = {}
    for set_name, base in cfgs.items():
        synth = base.data.synthetic
        root = out / "throughput" / set_name
        if not (root / "synthetic.json").is_file():
            generate_shapes_dataset(
                root,
                num_train=steps * base.train.batch_size,
                num_val=0,
                image_size=synth.image_size,
                seed=synth.seed,
                names=base.data.names,
                kind=synth.kind,
            )
        for variant in variants:
            cfg = variant.apply(copy.deepcopy(base))
            cfg.data.root, cfg.data.synthetic = str(root), None
            device = local_device(cfg.train.device)
            loader, _ = build_dataloader(cfg, "train", train=True)
            model = build_model(cfg.model, len(cfg.data.names)).to(device)
            loss_fn = build_loss(cfg.model, len(cfg.data.names)).to(device)
            parts = build_train_parts(
                model, loss_fn, cfg.train, device=device, steps_per_epoch=len(loader)
            )
            runs[(set_name, variant.name)] = (cfg, loader, parts)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for repeat in range(repeats + 1):  # repeat 0 warms workers and allocator caches
        for key, (cfg, loader, parts) in runs.items():
            stats = train_one_epoch(
                parts,
                loader,
                TrainState(planned_epochs=1),
                cfg.train,
                epoch=0,
                planned_epochs=1,
                nan_guard=NanGuard("skip", 10**9),
                show_progress=False,
            )
            if repeat:
                samples[key].append(stats["images_per_s"])
    del runs
    results: dict[str, dict[str, float]] = {}
    for (set_name, name), values in samples.items():
        results.setdefault(set_name, {})[name] = statistics.median(values)
    return results


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"accuracy": {}, "throughput": {}}


def _print_table(results: dict[str, Any], set_names: list[str]) -> None:
    """One row per variant: AP / AP50 / train seconds per set, images/s and time factor."""
    accuracy, throughput = results["accuracy"], results["throughput"]
    names = sorted(
        {name for set_name in set_names for name in accuracy.get(set_name, {})}
        | {name for set_name in set_names for name in throughput.get(set_name, {})},
        key=lambda name: (name != "baseline", name),
    )
    header = f"{'variant':<24}"
    for set_name in set_names:
        header += f"{set_name + ' AP':>11}{'AP50':>7}{'train s':>9}{'img/s':>7}{'time x':>8}"
    click.echo(header)
    for name in names:
        line = f"{name:<24}"
        for set_name in set_names:
            row = accuracy.get(set_name, {}).get(name)
            speed = throughput.get(set_name, {})
            line += (
                f"{row['AP']:>11.3f}{row['AP50']:>7.3f}{row['train_s']:>9.0f}"
                if row
                else f"{'-':>11}{'-':>7}{'-':>9}"
            )
            if name in speed and "baseline" in speed:
                line += f"{speed[name]:>7.1f}{speed['baseline'] / speed[name]:>7.2f}x"
            else:
                line += f"{'-':>7}{'-':>8}"
        click.echo(line)


@click.command()
@click.option(
    "--sets", default="shapes,dense", show_default=True, help="comma-separated: shapes, dense"
)
@click.option(
    "--changes",
    default=",".join(CHANGES),
    show_default=True,
    help="changes to toggle, each against the defaults (baseline always runs)",
)
@click.option(
    "--epochs", type=int, default=None, help="default: each set's benchmark epochs (SETS)"
)
@click.option(
    "--epochs-factor",
    type=float,
    default=None,
    help="also train the baseline with round(epochs * this) epochs (what more time buys)",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "overrides", multiple=True, help="KEY=VALUE config override for every run")
@click.option(
    "--steps", type=int, default=4, show_default=True, help="timed steps per throughput repeat"
)
@click.option("--repeats", type=int, default=3, show_default=True, help="throughput repeats")
@click.option("--throughput-only", is_flag=True, help="skip the accuracy runs")
@click.option("--accuracy-only", is_flag=True, help="skip the throughput run")
@click.option("--table-only", is_flag=True, help="print the accumulated results.json and exit")
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="torch intra-op threads of the training process (1: no spinning against other load)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
)
def recipe(
    sets: str,
    changes: str,
    epochs: int | None,
    epochs_factor: float | None,
    seed: int,
    overrides: tuple[str, ...],
    steps: int,
    repeats: int,
    throughput_only: bool,
    accuracy_only: bool,
    table_only: bool,
    threads: int,
    out: Path,
) -> None:
    """Augmentation/recipe ablation: each change on/off, same epochs and seed, both sets."""
    set_names = [name.strip() for name in sets.split(",") if name.strip()]
    unknown = [name for name in set_names if name not in SETS]
    if unknown or not set_names:
        raise click.BadParameter(
            f"unknown set(s) {unknown or sets!r}; known: {', '.join(SETS)}", param_hint="--sets"
        )
    results_path = out / "results.json"
    results = _load(results_path)
    if table_only:
        _print_table(results, set_names)
        return
    change_names = [name.strip() for name in changes.split(",") if name.strip()]
    try:
        variants = variants_for(change_names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--changes") from None
    import torch

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    cfgs = {name: _set_config(name, out, list(overrides), seed) for name in set_names}
    click.echo(f"seed {seed}; variants: {', '.join(v.name for v in variants)}; out {out}")
    if not throughput_only:
        for variant in variants:
            for set_name, cfg in cfgs.items():
                run_epochs = epochs or SETS[set_name]["epochs"]
                row = _train_one(cfg, variant, out / "runs" / set_name / variant.name, run_epochs)
                results["accuracy"].setdefault(set_name, {})[variant.name] = row
                results_path.write_text(json.dumps(results, indent=1))
                click.echo(
                    f"{set_name:<7} {variant.name:<24} {run_epochs} epochs  AP {row['AP']:.3f}  "
                    f"AP50 {row['AP50']:.3f}  train {row['train_s']:.0f} s  "
                    f"wall {row['wall_s']:.0f} s"
                )
        if epochs_factor:
            for set_name, cfg in cfgs.items():
                longer = round((epochs or SETS[set_name]["epochs"]) * epochs_factor)
                name = f"baseline x{epochs_factor:g} epochs"
                row = _train_one(
                    cfg, variants[0], out / "runs" / set_name / "baseline-longer", longer
                )
                results["accuracy"].setdefault(set_name, {})[name] = row
                results_path.write_text(json.dumps(results, indent=1))
                click.echo(
                    f"{set_name:<7} {name:<24} {longer} epochs  "
                    f"AP {row['AP']:.3f}  AP50 {row['AP50']:.3f}"
                )
    if not accuracy_only:
        speeds = _throughput(cfgs, variants, steps, repeats, out)
        for set_name, values in speeds.items():
            results["throughput"].setdefault(set_name, {}).update(values)
        results_path.write_text(json.dumps(results, indent=1))
    _print_table(results, set_names)
