"""Gaussian head: raw per-pixel values -> activated Gaussians (all in float32).

The 14 raw values per pixel split as ``[3 xyz, 3 colour, 3 scale, 4 rotation, 1 opacity]``:

* depth = ``sigmoid(mean(xyz)) * depth_scale`` along the pixel's ray: ``mean = o + depth * d``;
* colour = degree-0 SH coefficients (``config.colour_skip``: plus the pixel's own colour times a
  learnt weight, :func:`add_pixel_colour`);
* scale = ``exp(clamp(scale + scale_offset, max=log_scale_max))``;
* rotation = normalised quaternion (w, x, y, z);
* opacity = ``sigmoid(opacity + opacity_offset)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..gaussians import SH_C0, Gaussians
from .config import ILRMConfig


def add_pixel_colour(raw: torch.Tensor, pixels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``raw [B, N, 14]`` with ``weight [3]`` times each pixel's colour, as degree-0 SH, added to its
    colour values; ``pixels`` are the N pixels in the same order (``[B, ..., 3]`` in [0, 1])."""
    sh = (pixels.reshape(raw.shape[0], -1, 3).float() - 0.5) / SH_C0
    colour = raw[..., 3:6] + weight.float() * sh
    return torch.cat((raw[..., :3], colour, raw[..., 6:]), dim=-1)


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
