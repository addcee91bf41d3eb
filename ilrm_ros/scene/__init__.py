"""The live scene (window or bounded map) and its exports: 3DGS PLY files and RViz point clouds."""

from ilrm_ros.scene.ply import load_ply, save_ply
from ilrm_ros.scene.pointcloud import POINT_DTYPE, POINT_FIELDS, benchmark_pack_points, pack_points, unpack_rgb
from ilrm_ros.scene.scene import Scene, UpdateStats

__all__ = [
    "Scene", "UpdateStats", "save_ply", "load_ply", "pack_points", "unpack_rgb", "POINT_FIELDS", "POINT_DTYPE",
    "benchmark_pack_points",
]
