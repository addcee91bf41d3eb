"""Pose matrices for tests."""

from __future__ import annotations

import math

import numpy as np


def yaw_pose(xyz, yaw_deg: float = 0.0) -> np.ndarray:
    """4x4 pose at ``xyz``, rotated ``yaw_deg`` about +z."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = xyz
    return T
