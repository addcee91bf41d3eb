"""Synthetic training and demo data: a procedural textured room, robot-like camera paths."""

from .room import Box, Cylinder, Sphere, SyntheticRoom
from .trajectory import default_intrinsics, ground_robot_trajectory, handheld_sweep, interpolate_poses

__all__ = [
    "Box",
    "Cylinder",
    "Sphere",
    "SyntheticRoom",
    "default_intrinsics",
    "ground_robot_trajectory",
    "handheld_sweep",
    "interpolate_poses",
]
