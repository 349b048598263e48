"""Two-process DDP on CPU (gloo) through torchrun: both ranks end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

WORKER = textwrap.dedent(
    """
    import os, sys, torch
    from detector.config import load_config
    from detector.training import trainer
    from detector.training.distributed import unwrap_model

    captured = {}
    real = trainer.build_run

    def keep_run(*args, **kwargs):
        captured["run"] = real(*args, **kwargs)
        return captured["run"]

    trainer.build_run = keep_run
    run_dir = trainer.fit(load_config(sys.argv[1]), show_progress=False)
    rank = int(os.environ["RANK"])
    model = unwrap_model(captured["run"].model)
    weights = {name: p.detach() for name, p in model.named_parameters()}
    torch.save(weights, f"{sys.argv[2]}/rank{rank}.pt")
    print(f"rank {rank} run_dir {run_dir}")
    """
)


def test_two_gloo_ranks_end_with_identical_weights(tmp_path: Path, tiny_training_yaml) -> None:
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    config = tiny_training_yaml(
        "ddp.yaml", tmp_path / "data", tmp_path / "run", num_train=8, epochs=2
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes=1",
            "--nproc_per_node=2",
            str(tmp_path / "worker.py"),
            str(config),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    saved = torch.load(tmp_path / "run/weights/last.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # They trained (2 epochs of 8 images / (2 ranks x batch 2) = 4 steps)
    # and agree with rank 0's last.pt.
    assert saved["step"] == 4 and saved["finished"]
    for name, value in rank0.items():
        assert torch.equal(saved["train_model"][name], value), name
    # Only rank 0 writes: one run directory, one results row per epoch.
    assert "rank 1 run_dir None" in result.stdout
    assert len((tmp_path / "run/results.csv").read_text().strip().splitlines()) == 3


SIGNAL_WORKER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from detector.config import load_config
    from detector.training import engine, trainer
    from detector.training.distributed import unwrap_model
    from detector.training.run_controls import TrainingInterrupted

    rank = int(os.environ["RANK"])
    captured, calls = {}, [0]
    real_step = engine.optimizer_step

    def step(parts, *args, **kwargs):
        captured["parts"] = parts
        stepped = real_step(parts, *args, **kwargs)
        calls[0] += 1
        if rank == 1 and calls[0] == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # only rank 1 is signalled, during its 3rd step
        return stepped

    engine.optimizer_step = step
    try:
        trainer.fit(load_config(sys.argv[1]), show_progress=False)
        print(f"rank {rank} finished")
    except TrainingInterrupted as exc:
        model = unwrap_model(captured["parts"].model)
        weights = {name: p.detach() for name, p in model.named_parameters()}
        torch.save(weights, f"{sys.argv[2]}/rank{rank}.pt")
        print(f"rank {rank} exit {exc.exit_code}: {exc}")
    """
)


def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step(
    tmp_path: Path, tiny_training_yaml
) -> None:
    (tmp_path / "worker.py").write_text(SIGNAL_WORKER, encoding="utf-8")
    run = tmp_path / "run"
    # 16 images / (2 ranks x batch 2) = 4 steps per epoch.
    config = tiny_training_yaml("ddp.yaml", tmp_path / "data", run, num_train=16, epochs=2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes=1",
            "--nproc_per_node=2",
            str(tmp_path / "worker.py"),
            str(config),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (
        f"rank 0 exit 143: SIGTERM: stopped after step 3 (epoch 1, batch 3/4); last.pt saved; "
        f"continue with: detector train --resume {run}"
    ) in result.stdout, result.stdout
    assert (
        "rank 1 exit 143: SIGTERM: stopped after step 3 (epoch 1, batch 3/4); last.pt saved; "
        "rank 0 saved last.pt (this is rank 1)"
    ) in result.stdout, result.stdout
    saved = torch.load(run / "weights/last.pt", weights_only=True)
    assert (
        saved["step"] == 3 and saved["epoch"] == 0 and saved["epoch_progress"]["batches_done"] == 3
    )
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name, value in rank0.items():
        assert torch.equal(rank1[name], value) and torch.equal(saved["train_model"][name], value), (
            name
        )


BUDGET_WORKER = textwrap.dedent(
    """
    import os, sys
    from detector.config import load_config
    from detector.training import engine, trainer

    now, real_step = [0.0], engine.optimizer_step

    def step(*args, **kwargs):
        stepped = real_step(*args, **kwargs)
        now[0] += 1.0  # one simulated second per optimizer step, on every rank
        return stepped

    def validate(*args, **kwargs):
        now[0] += 1.0
        return {"AP": 0.5, "AP50": 0.5}

    engine.optimizer_step, trainer.validate = step, validate
    trainer.fit(load_config(sys.argv[1]), show_progress=False, clock=lambda: now[0])
    print(f"rank {os.environ['RANK']} ended at {now[0]}")
    """
)


def test_time_budget_under_ddp_stops_inside_the_epoch(tmp_path: Path, tiny_training_yaml) -> None:
    """A 10 s budget (simulated clock) with 16-step epochs: the ranks stop together inside the first
    epoch, inside the budget (planning only at epoch ends would overshoot by up to an epoch)."""
    (tmp_path / "worker.py").write_text(BUDGET_WORKER, encoding="utf-8")
    run = tmp_path / "run"
    # 64 images / (2 ranks x batch 2) = 16 steps per epoch.
    config = tiny_training_yaml(
        "ddp.yaml", tmp_path / "data", run, num_train=64, epochs=3, time_limit=10 / 60
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes=1",
            "--nproc_per_node=2",
            str(tmp_path / "worker.py"),
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = torch.load(run / "weights/last.pt", weights_only=True)
    assert saved["finished"] and 5 <= saved["step"] < 16, saved["step"]
    assert saved["train_state"]["elapsed_s"] <= 10.0, saved["train_state"]["elapsed_s"]
    assert "rank 0 ended" in result.stdout and "rank 1 ended" in result.stdout, result.stdout
