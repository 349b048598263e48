"""Benchmark: the model ladder, side by side: cost, speed, and AP at equal wall-clock.

    python tools/benchmark.py ladder                          # cost + speed of every preset, 256 px
    python tools/benchmark.py ladder --accuracy --minutes 30  # + AP at a 30-min budget, both sets
    python tools/benchmark.py ladder --presets r18,r18-0.25 --sets dense --accuracy --minutes 5
    python tools/benchmark.py ladder --table-only             # print what --out holds

For each preset (`PRESETS`: a backbone depth x width and head choice, each a list
of `--set` overrides a user can write) it prints, measured in one run on this
machine (its CPU model is printed first):

- params and forward GFLOPs at `--size` (torch's FlopCounterMode; 2 per multiply-add);
- inference ms per image at batch 1: ONNX Runtime at 1 thread (the exported
  graph, as `detector export` writes it) and PyTorch eager with and without the
  BatchNorm folding `Detector` applies;
- training images/s: the real DataLoader + the training step (`TrainingEpoch`) on each
  tuning set at its own input size, every preset in turn in alternating repeats so
  machine load hits all alike (medians);
- with `--accuracy`: COCO AP and AP50 on each set's validation split at equal
  wall-clock. Wall-clock budgets are unreliable on a shared machine, so each
  preset trains a fixed number of epochs: the budget times its measured training
  images/s on that set (above, same run), divided by the training images, i.e.
  what `train.time_limit` would give it on this machine when quiet. The cosine
  schedule spans exactly those epochs, as under `time_limit`.

`--emulate-avx2` runs every measurement with oneDNN limited to AVX2 kernels
(`ONEDNN_MAX_CPU_ISA=AVX2`, set before torch loads), a stand-in for the AVX2-only
CPUs of the slower machine kind when the benchmark runs on an AVX-512 one.
Results accumulate in `--out`/results.json, keyed by set and preset.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

DEFAULT_OUT = Path("/tmp/detector-ladder")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# name -> model overrides. "r18" is resnet18 at width 1.0 with the full head (the
# earlier default); "-dw" heads use depthwise-separable 3x3 convs.
PRESETS: dict[str, list[str]] = {
    "r18": ["model.backbone=resnet18", "model.width=1.0", "model.head_depthwise=false"],
    "r18-0.75": ["model.backbone=resnet18", "model.width=0.75", "model.head_depthwise=false"],
    "r18-0.5": ["model.backbone=resnet18", "model.width=0.5", "model.head_depthwise=false"],
    "r18-0.5-dw": ["model.backbone=resnet18", "model.width=0.5", "model.head_depthwise=true"],
    "r18-0.25": ["model.backbone=resnet18", "model.width=0.25", "model.head_depthwise=false"],
    "r18-0.25-dw": ["model.backbone=resnet18", "model.width=0.25", "model.head_depthwise=true"],
}

# The tuning sets at their own configs (full size); the data lives under --out.
SETS: dict[str, Path] = {"shapes": CONFIGS / "shapes.yaml", "dense": CONFIGS / "dense.yaml"}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux) and the core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def _config(set_name: str, preset: str, out: Path, overrides: list[str]) -> Any:
    from detector.config import load_config

    cfg = load_config(SETS[set_name], [*PRESETS[preset], *overrides])
    cfg.data.root = str(out / "data" / set_name)
    cfg.train.time_limit = None
    return cfg


def model_cost(cfg: Any, size: int) -> dict[str, float]:
    """Params (millions) and forward GFLOPs at size x size, total and per part."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from detector.model.build import build_model

    model = build_model(cfg.model, len(cfg.data.names)).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    per_module = counter.get_flop_counts()
    parts = {
        part: sum(per_module.get(f"YOLODetector.{part}", {}).values()) / 1e9
        for part in ("backbone", "neck", "head")
    }
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops": counter.get_total_flops() / 1e9,
        **{f"gflops_{k}": v for k, v in parts.items()},
    }


def inference_ms(
    presets: list[str], size: int, repeats: int, workdir: Path
) -> dict[str, dict[str, float]]:
    """Batch-1 ms per image: ORT (1 thread), torch eager folded and unfolded (1 thread)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from detector.export import ExportOptions, export_checkpoint
    from detector.inference.synthetic import random_checkpoint
    from detector.model.fuse import fold_batchnorm

    torch.set_num_threads(1)
    runners: dict[tuple[str, str], Any] = {}
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    for preset in presets:
        model_keys = dict(item.split("=", 1) for item in PRESETS[preset])
        model_cfg = {key.split(".", 1)[1]: _yaml_value(value) for key, value in model_keys.items()}
        backbone = model_cfg.pop("backbone")
        ckpt = random_checkpoint(
            workdir / f"{preset}.pt",
            backbone=backbone,
            image_size=size,
            names=("a", "b", "c", "d", "e"),
            model=model_cfg,
        )
        onnx_path = workdir / f"{preset}.onnx"
        export_checkpoint(ckpt, ExportOptions(out=onnx_path, image_size=size, batch=1))
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: image.numpy().astype(np.float32)}
        runners[(preset, "ort")] = lambda session=session, feed=feed: session.run(None, feed)

        from detector.inference.predictor import Detector

        eager = Detector.from_checkpoint(ckpt).backend.model.eval()
        folded = fold_batchnorm(eager)
        for name, network in (("torch", eager), ("torch_folded", folded)):
            runners[(preset, name)] = lambda network=network: _no_grad_call(network, image)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    for repeat in range(repeats + 1):  # round 0 warms up (allocators, ORT arenas)
        for key, run in runners.items():
            start = time.perf_counter()
            run()
            if repeat:
                samples[key].append((time.perf_counter() - start) * 1e3)
    result: dict[str, dict[str, float]] = {}
    for (preset, name), values in samples.items():
        result.setdefault(preset, {})[f"{name}_ms"] = statistics.median(values)
    return result


def _no_grad_call(network: Any, image: Any) -> Any:
    import torch

    with torch.inference_mode():
        return network(image)


def _yaml_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


# Step options measured on the first preset against its plain (channels_last, eager) step.
VARIANTS = ("nchw", "compile")


def _apply_variant(model: Any, parts: Any, variant: str) -> None:
    import torch

    if variant == "nchw":
        model.channels_last = False
        model.to(memory_format=torch.contiguous_format)
    elif variant == "compile":
        parts.compiled = torch.compile(parts.model)


def training_speed(
    cfgs: dict[tuple[str, str], Any],
    steps: int,
    repeats: int,
    workers: int,
    out: Path,
    variants: dict[str, str] | None = None,
) -> dict[tuple[str, str], float]:
    """Median training images/s of each (set, preset): real loader, real step, alternating repeats.

    Each repeat times the first `steps` optimizer steps of a fresh pass over the loader
    (the speed set holds `steps` batches of whole images; a `data.slice` config cuts
    them into more tiles, and the pass is left after `steps`). Images are the samples
    the loader serves: tiles under `data.slice`.

    `variants`: extra rows name -> preset, e.g. {"r18-0.25-dw+compile": "r18-0.25-dw"}
    (the text after "+" is one of `VARIANTS`), measured in the same alternation.
    """
    from detector.data.loading.dataset import build_dataloader
    from detector.data.synthetic.embedded import generate_shapes_dataset
    from detector.model.build import build_loss, build_model
    from detector.training.distributed import local_device
    from detector.training.engine import NanGuard, TrainingEpoch, TrainState, build_train_parts

    runs = {}
    jobs = [(set_name, preset, preset, "") for set_name, preset in cfgs]
    for name, preset in (variants or {}).items():
        jobs += [
            (set_name, name, preset, name.rpartition("+")[2]) for set_name, p in cfgs if p == preset
        ]
    for set_name, row_name, preset, variant in jobs:
        base = cfgs[(set_name, preset)]
        synth = base.data.synthetic
        root = out / "speed" / set_name
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
        cfg = copy.deepcopy(base)
        cfg.data.root, cfg.data.synthetic, cfg.train.workers = str(root), None, workers
        device = local_device(cfg.train.device)
        loader, _ = build_dataloader(cfg, "train", train=True)
        model = build_model(cfg.model, len(cfg.data.names)).to(device)
        loss_fn = build_loss(cfg.model, len(cfg.data.names)).to(device)
        parts = build_train_parts(
            model, loss_fn, cfg.train, device=device, steps_per_epoch=len(loader)
        )
        _apply_variant(model, parts, variant)
        runs[(set_name, row_name)] = (cfg, loader, parts)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for repeat in range(repeats + 1):  # repeat 0 warms workers and allocator caches (and compiles)
        for key, (cfg, loader, parts) in runs.items():
            training = TrainingEpoch(
                parts,
                loader,
                TrainState(planned_epochs=1),
                cfg.train,
                epoch=0,
                planned_epochs=1,
                nan_guard=NanGuard("skip", 10**9),
                show_progress=False,
            )
            for step, _ in enumerate(training, start=1):
                if step == steps:
                    break
            if repeat:
                samples[key].append(training.stats()["images_per_s"])
    return {key: statistics.median(values) for key, values in samples.items()}


def budget_epochs(minutes: float, samples_per_s: float, samples_per_epoch: int) -> int:
    """Epochs that `minutes` of training buy at `samples_per_s`: at least 1.

    What `train.time_limit` would give a run on this machine when quiet; a fixed count
    makes the result independent of the load while it trains.

    Raises:
        ValueError: a non-positive speed or epoch size (nothing to plan with).
    """
    if samples_per_s <= 0 or samples_per_epoch <= 0:
        raise ValueError(
            f"budget_epochs needs a positive speed and epoch size, got {samples_per_s} "
            f"samples/s and {samples_per_epoch} samples per epoch"
        )
    return max(1, round(minutes * 60 * samples_per_s / samples_per_epoch))


def train_for_budget(cfg: Any, run_dir: Path, epochs: int) -> dict[str, float]:
    """Train `epochs` epochs (one cosine over them), validate at the end: AP, AP50, seconds."""
    from detector.config import check_config_ranges
    from detector.training.trainer import fit

    cfg = copy.deepcopy(cfg)
    cfg.train.epochs = epochs
    cfg.train.eval_interval = epochs
    cfg.train.early_stop_patience = 0
    check_config_ranges(cfg)
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg.train.run_dir = str(run_dir)
    started = time.monotonic()
    fit(cfg, show_progress=False, log=lambda message: None)
    with open(run_dir / "results.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return {
        "AP": float(last["AP"]),
        "AP50": float(last["AP50"]),
        "epochs": epochs,
        "wall_s": time.monotonic() - started,
    }


def _stored_speeds(
    results: dict[str, Any], cfgs: dict[tuple[str, str], Any]
) -> dict[tuple[str, str], float]:
    """Training img/s per (set, preset) from an earlier run's results.json;
    a missing one is an error."""
    stored = results.get("speed", {})
    missing = [f"{s}/{p}" for s, p in cfgs if p not in stored.get(s, {})]
    if missing:
        raise click.UsageError(
            f"--reuse-speeds: no stored speed for {', '.join(missing)} in --out/results.json"
        )
    return {(s, p): float(stored[s][p]) for s, p in cfgs}


def _print_table(results: dict[str, Any], presets: list[str], set_names: list[str]) -> None:
    """Cost, inference and per-set training speed / accuracy, one row per preset."""
    cost, speed, infer, accuracy = (
        results.get(k, {}) for k in ("cost", "speed", "inference", "accuracy")
    )
    click.echo(f"machine: {results.get('machine', '?')}")
    click.echo(
        f"{'preset':<13}{'params M':>9}{'GFLOPs':>8}{'bb/neck/head':>16}{'ORT ms':>8}"
        f"{'torch ms':>9}{'folded':>8}"
    )
    for preset in presets:
        c, i = cost.get(preset), infer.get(preset, {})
        parts = (
            f"{c['gflops_backbone']:.2f}/{c['gflops_neck']:.2f}/{c['gflops_head']:.2f}"
            if c
            else "-"
        )
        click.echo(
            f"{preset:<13}{c['params_m'] if c else float('nan'):>9.2f}"
            f"{c['gflops'] if c else float('nan'):>8.2f}{parts:>16}"
            f"{i.get('ort_ms', float('nan')):>8.1f}{i.get('torch_ms', float('nan')):>9.1f}"
            f"{i.get('torch_folded_ms', float('nan')):>8.1f}"
        )
    for set_name in set_names:
        rows = speed.get(set_name, {})
        reference = rows.get(presets[0])
        click.echo(
            f"\n{set_name}: training img/s (x {presets[0]}), "
            "and at equal wall-clock: epochs, AP, AP50"
        )
        extra = [name for name in rows if name not in presets and name.startswith(f"{presets[0]}+")]
        for preset in [*presets, *extra]:
            ips = rows.get(preset)
            ratio = f"{ips / reference:.2f}x" if ips and reference else "-"
            line = f"{preset:<13}{ips if ips else float('nan'):>8.1f}{ratio:>8}"
            for budget, by_preset in sorted(
                accuracy.get(set_name, {}).items(), key=lambda kv: float(kv[0])
            ):
                row = by_preset.get(preset)
                line += (
                    f"   {budget} min: {row['epochs']:>3} ep "
                    f"AP {row['AP']:.3f} AP50 {row['AP50']:.3f}"
                    if row
                    else f"   {budget} min: -"
                )
            click.echo(line)


def _csv(text: str, known: dict[str, Any], hint: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise click.BadParameter(
            f"unknown {unknown or text!r}; known: {', '.join(known)}", param_hint=hint
        )
    return items


@click.command()
@click.option(
    "--presets", default=",".join(PRESETS), show_default=True, help="comma-separated PRESETS"
)
@click.option(
    "--sets", default="shapes,dense", show_default=True, help="tuning sets for speed and accuracy"
)
@click.option(
    "--size", type=int, default=256, show_default=True, help="input side for GFLOPs and latency"
)
@click.option(
    "--repeats", type=int, default=5, show_default=True, help="alternating repeats (medians)"
)
@click.option(
    "--steps", type=int, default=4, show_default=True, help="timed training steps per repeat"
)
@click.option(
    "--threads", type=int, default=1, show_default=True, help="torch threads for training speed"
)
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="DataLoader workers for training speed",
)
@click.option(
    "--variants",
    default="",
    help=f"step options on the first preset, comma-separated: {', '.join(VARIANTS)}",
)
@click.option(
    "--accuracy", is_flag=True, help="also train each preset for the budget and report AP"
)
@click.option(
    "--minutes", type=float, default=30.0, show_default=True, help="the equal wall-clock budget"
)
@click.option("--set", "overrides", multiple=True, help="KEY=VALUE override for every config")
@click.option("--skip-inference", is_flag=True, help="no export / latency rows")
@click.option("--table-only", is_flag=True, help="print the accumulated results.json")
@click.option(
    "--reuse-speeds",
    is_flag=True,
    help=(
        "take training img/s from --out/results.json "
        "(a longer budget at the ratios of an earlier run)"
    ),
)
@click.option(
    "--emulate-avx2", is_flag=True, help="oneDNN limited to AVX2 (the slower machine kind's ISA)"
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
)
def ladder(
    presets: str,
    sets: str,
    size: int,
    repeats: int,
    steps: int,
    threads: int,
    workers: int,
    variants: str,
    accuracy: bool,
    minutes: float,
    overrides: tuple[str, ...],
    skip_inference: bool,
    table_only: bool,
    reuse_speeds: bool,
    emulate_avx2: bool,
    out: Path,
) -> None:
    """The model ladder: params, GFLOPs, latency, training img/s, AP at equal wall-clock."""
    preset_names = _csv(presets, PRESETS, "--presets")
    set_names = _csv(sets, SETS, "--sets")
    results_path = out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if table_only:
        _print_table(results, preset_names, set_names)
        return
    if emulate_avx2:
        if "torch" in __import__("sys").modules:
            click.echo("note: torch was already imported; ONEDNN_MAX_CPU_ISA may not apply")
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    import torch

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    results["machine"] = (
        f"{cpu_model()}; torch {torch.__version__}, {threads} thread(s)"
        f"{'; oneDNN AVX2 only' if emulate_avx2 else ''}"
    )
    click.echo(f"machine: {results['machine']}")
    cfgs = {(s, p): _config(s, p, out, list(overrides)) for s in set_names for p in preset_names}
    for preset in preset_names:
        results.setdefault("cost", {})[preset] = model_cost(cfgs[(set_names[0], preset)], size)
    if not skip_inference:
        with tempfile.TemporaryDirectory(prefix="detector-ladder-") as tmp:
            results["inference"] = inference_ms(preset_names, size, repeats, Path(tmp))
        torch.set_num_threads(threads)
    variant_rows = (
        {
            f"{preset_names[0]}+{v}": preset_names[0]
            for v in _csv(variants, dict.fromkeys(VARIANTS), "--variants")
        }
        if variants
        else {}
    )
    compile_started = time.monotonic()
    if reuse_speeds:
        speeds = _stored_speeds(results, cfgs)
    else:
        speeds = training_speed(cfgs, steps, repeats, workers, out, variant_rows)
    if variant_rows:
        click.echo(f"speed runs incl. variants took {time.monotonic() - compile_started:.0f} s")
    for (set_name, preset), ips in speeds.items():
        results.setdefault("speed", {}).setdefault(set_name, {})[preset] = ips
    results_path.write_text(json.dumps(results, indent=1))
    if accuracy:
        from detector.data.synthetic.embedded import ensure_synthetic_dataset

        for (set_name, preset), cfg in cfgs.items():
            ensure_synthetic_dataset(cfg.data)
            num_train = cfg.data.synthetic.num_train
            epochs = budget_epochs(minutes, speeds[(set_name, preset)], num_train)
            row = train_for_budget(
                cfg, out / "runs" / set_name / f"{preset}-{minutes:g}min", epochs
            )
            results.setdefault("accuracy", {}).setdefault(set_name, {}).setdefault(
                f"{minutes:g}", {}
            )[preset] = row
            results_path.write_text(json.dumps(results, indent=1))
            click.echo(
                f"{set_name:<7} {preset:<13} {epochs} epochs  "
                f"AP {row['AP']:.3f}  AP50 {row['AP50']:.3f}  wall {row['wall_s']:.0f} s"
            )
    _print_table(results, preset_names, set_names)
