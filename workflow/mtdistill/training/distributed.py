"""Data-parallel plumbing under torchrun: the process group, collectives that are no-ops in one
process, and the per-rank state a resume checkpoint keeps."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def init(device: torch.device) -> tuple[int, int]:
    """(rank, world size); under torchrun (WORLD_SIZE > 1) joins the process group first."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's object collectives use the current device
        # the other ranks wait while rank 0 evaluates (greedy dev BLEU can take minutes)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1))
    return int(os.environ.get("RANK", 0)), world


def wrap(model, device: torch.device, world: int):
    """The model that trains: DDP-wrapped when there are several ranks."""
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """The values summed over all ranks."""
    if not dist.is_initialized():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def all_gather(value) -> list:
    """Every rank's value, in rank order."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def from_rank0(value):
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def finish(world: int) -> None:
    """The others wait for rank 0's save, then every rank leaves the group."""
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def rank_state(objective, device: torch.device) -> dict:
    """What differs between ranks and must survive a restart: random states and the objective's."""
    return {"torch_rng": torch.get_rng_state(), "objective": objective.state_dict(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def load_rank_state(state: dict, objective, device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    objective.load_state_dict(state["objective"])
