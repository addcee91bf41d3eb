"""Browser viewer of the live scene: real Gaussian splats, keyframe frusta, stats and controls (viser).

ROS-free: the node pushes scenes into a `SceneViewer`; ``ilrm view scene.ply`` opens a saved one.
Importing this package needs no viser; creating a `SceneViewer` does.
"""

from ilrm_ros.viewer.convert import (
    Splats,
    cam_to_world_from_viser,
    covariances,
    frame_view,
    splats_from_gaussians,
    vertical_fov,
    viser_pose,
)
from ilrm_ros.viewer.scene_viewer import SCENE_MODES, SceneViewer, stats_markdown

__all__ = [
    "SceneViewer", "SCENE_MODES", "Splats", "splats_from_gaussians", "covariances", "viser_pose",
    "cam_to_world_from_viser", "vertical_fov", "frame_view", "stats_markdown",
]
