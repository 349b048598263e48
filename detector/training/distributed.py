"""torch.distributed set-up for runs launched by torchrun, and rank-0 helpers.

    torchrun --nproc_per_node=2 -m detector train configs/voc.yaml

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them everything here is a
no-op for a single process. NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints the progress bar and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment carries torchrun's RANK and WORLD_SIZE."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun; otherwise a single process.

    Args:
        device: the device this process trains on (cuda -> NCCL, else gloo). For
            CUDA the caller picks `cuda:LOCAL_RANK` (see `local_device`).

    Returns:
        This process's DistInfo.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Validation runs on rank 0 while the others wait at a barrier: allow it an hour.
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def local_device(requested: str) -> torch.device:
    """Resolve `train.device` (auto|cpu|cuda|cuda:N) for this process.

    Under torchrun with CUDA each process takes `cuda:LOCAL_RANK`.
    """
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device: {requested!r} requested but CUDA is not available")
        if launched_by_torchrun():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.distributed:
        dist.barrier()


def broadcast_numbers(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Rank 0's `values` on every rank (decisions only rank 0 can make: AP, stop, plan)."""
    if not info.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def any_rank_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one (keeps decisions in step)."""
    if not info.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def max_across_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """The largest `value` of all ranks, on every rank (e.g. a stop signal only some received)."""
    if not info.distributed:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def cleanup_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
