"""Distributed data parallel under torchrun, with no code change.

When torchrun (or any launcher) sets ``WORLD_SIZE > 1``, :func:`setup` joins the process group
(nccl on CUDA, gloo on CPU), pins each process to its local GPU, and the training loop wraps the
model in ``DistributedDataParallel``. Rank 0 alone writes files and logs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group described by the environment (a no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    log.info("joined process group: rank %d of %d (%s)", rank, world, backend)
    return DistInfo(rank, world, local_rank, True)


def teardown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few numbers over every process."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def in_sync(model: torch.nn.Module, info: DistInfo, device: torch.device) -> bool:
    """Whether every process holds the same parameters (a cheap checksum comparison)."""
    if not info.enabled:
        return True
    with torch.no_grad():
        total = sum(float(p.double().sum()) for p in model.parameters())
    t = torch.tensor([total, -total], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return abs(float(t[0]) + float(t[1])) <= 1e-9 * max(1.0, abs(total))
