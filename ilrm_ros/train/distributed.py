"""Process-group setup for ``torchrun`` (DDP, one process per GPU), and the single-process fallback.

The same script runs alone (``python -m ilrm_ros.cli train``) or under
``torchrun --nproc_per_node N -m ilrm_ros.cli train``: torchrun's ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` environment variables switch on the process group (NCCL on CUDA, gloo on CPU).
More ranks than GPUs (``--nproc_per_node 2`` on one GPU) share the GPUs round-robin over gloo, since
NCCL refuses two ranks on one GPU: worth it when one process cannot keep its GPU busy (the synthetic
data generator is host-bound for the ``small`` preset).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``auto``/None -> CUDA when available else CPU; ``cuda`` -> this process's GPU."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def backend_for(device: torch.device, local_world_size: int, gpu_count: int) -> str:
    """NCCL when every rank of this host has a GPU of its own, else gloo (CPU, or ranks sharing GPUs)."""
    return "nccl" if device.type == "cuda" and local_world_size <= gpu_count else "gloo"


def setup(device_name: str | None) -> tuple[DistInfo, torch.device]:
    """Start the process group when launched by torchrun; returns (info, this process's device)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    device = resolve_device(device_name, info.local_rank)
    if info.enabled and not dist.is_initialized():
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        backend = backend_for(device, int(os.environ.get("LOCAL_WORLD_SIZE", world_size)), gpus)
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return info, device


def teardown() -> None:
    """Destroy the process group while Python is fully alive: objects still holding it (a DDP wrapper in
    a reference cycle) are collected first, so its backend is not destroyed during interpreter exit."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank (a single-process run just returns it)."""
    if not info.enabled:
        return flag
    t = torch.tensor([0 if flag else 1], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item()) == 0


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank."""
    return not all_true(not flag, info, device)


def mean_over_ranks(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise mean of a tensor over ranks (a copy; the input is untouched)."""
    if not info.enabled:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
