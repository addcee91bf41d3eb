"""Gaussian head: raw per-pixel values -> activated Gaussians (all in float32).

The 14 raw values per pixel split as ``[3 xyz, 3 colour, 3 scale, 4 rotation, 1 opacity]``:

* depth = ``sigmoid(mean(xyz)) * depth_scale`` along the pixel's ray: ``mean = o + depth * d``;
* colour = degree-0 SH coefficients;
* scale = ``exp(clamp(scale + scale_offset, max=log_scale_max))``;
* rotation = normalised quaternion (w, x, y, z);
* opacity = ``sigmoid(opacity + opacity_offset)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..gaussians import Gaussians
from .config import ILRMConfig


def activate_gaussians(raw: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, config: ILRMConfig) -> Gaussians:
    """raw ``[B, N, 14]``; origins ``[B, N, 3]`` (or broadcastable); dirs ``[B, N, 3]`` unit."""
    raw = raw.float()
    xyz, colour, scale, rot, opacity = raw.split((3, 3, 3, 4, 1), dim=-1)
    depth = torch.sigmoid(xyz.mean(-1, keepdim=True)) * config.depth_scale
    return Gaussians(
        means=origins + depth * dirs,
        quats=F.normalize(rot, dim=-1),
        scales=torch.exp(torch.clamp(scale + config.scale_offset, max=config.log_scale_max)),
        opacities=torch.sigmoid(opacity[..., 0] + config.opacity_offset),
        sh=colour.unsqueeze(-2),
    )
