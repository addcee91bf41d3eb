"""Pose matrices and pixel back-projection for tests."""

from __future__ import annotations

import math

import numpy as np
import torch


def yaw_pose(xyz, yaw_deg: float = 0.0) -> np.ndarray:
    """4x4 pose at ``xyz``, rotated ``yaw_deg`` about +z."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = xyz
    return T


def backproject(K: torch.Tensor, c2w: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """World points ``[..., H, W, 3]`` (float64) of every pixel centre at its z-depth ``[..., H, W]``
    (OpenCV camera, ``K [..., 3, 3]``, ``c2w [..., 4, 4]``)."""
    K, c2w, depth = K.double(), c2w.double(), depth.double()
    h, w = depth.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    f, c = K[..., None, None, :2, :2].diagonal(dim1=-2, dim2=-1), K[..., None, None, :2, 2]
    xy = (torch.stack([xs, ys], -1) - c) / f * depth[..., None]
    cam = torch.cat([xy, depth[..., None]], -1)
    return cam @ c2w[..., None, :3, :3].transpose(-1, -2) + c2w[..., None, None, :3, 3]
