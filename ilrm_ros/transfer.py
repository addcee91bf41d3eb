"""Host-to-device copies that do not stall the host (shared by the pipeline and the data generator)."""

from __future__ import annotations

import torch


def upload(x: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x.to(device, dtype)``, asynchronous from the CPU to CUDA (through pinned memory).

    A plain ``.to("cuda")`` of pageable memory blocks the host until the GPU has finished all
    queued work (a refresh would wait for a render, the data generator for the backward pass);
    images and small tables cost little to pin.
    """
    device = torch.device(device)
    x = x if dtype is None else x.to(dtype)
    if x.device.type == "cpu" and device.type == "cuda":
        return x.contiguous().pin_memory().to(device, non_blocking=True)
    return x.to(device)
