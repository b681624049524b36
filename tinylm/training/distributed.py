"""Data-parallel training under `torchrun`: which process this is, and the few collectives the loop needs.

Launched plainly, training is one process and none of this does anything. Under
`torchrun --nproc_per_node N`, every process trains its slice of each global batch
through DDP, and rank 0 alone talks to MLflow and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start(device_type: str) -> Ranks:
    """Join the process group `torchrun` set up (NCCL on GPU, Gloo on CPU), or stay single."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def from_main(ranks: Ranks, value: Any) -> Any:
    """Rank 0's `value` on every rank (the run id, a resumed state)."""
    if not ranks.distributed:
        return value
    holder = [value if ranks.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def device_for(ranks: Ranks, device: torch.device) -> torch.device:
    """Each process on a GPU of its own."""
    return torch.device("cuda", ranks.local_rank) if ranks.distributed and device.type == "cuda" else device


def mean(ranks: Ranks, value: float, device: torch.device) -> float:
    """`value` averaged over the ranks (every rank must call it at the same point)."""
    if not ranks.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor) / ranks.world


def finish(ranks: Ranks) -> None:
    """Wait for every rank (rank 0 still validates and checkpoints), then leave the group: a
    process that exits while Gloo's threads still run is aborted."""
    if ranks.distributed:
        dist.barrier()
        dist.destroy_process_group()
