"""FLOP counting for one forward pass (used by the benchmark)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .reconstruct import model_device


@torch.no_grad()
def count_flops(model, views: int, height: int, width: int) -> int:
    """Total FLOPs (a multiply-add counts 2) of ``model`` on one scene of ``views`` x ``height`` x ``width``."""
    device = model_device(model)
    images = torch.rand(1, views, 3, height, width, device=device)
    intrinsics = torch.tensor([[width, 0.0, width / 2], [0.0, width, height / 2], [0.0, 0.0, 1.0]], device=device)
    cam_to_world = torch.eye(4, device=device).repeat(1, views, 1, 1)
    cam_to_world[..., 0, 3] = torch.linspace(-0.5, 0.5, views, device=device)
    with FlopCounterMode(display=False) as counter:
        model(images, intrinsics.expand(1, views, 3, 3), cam_to_world)
    return int(counter.get_total_flops())
