"""The iLRM model package: architecture, checkpoints, pose normalisation and inference.

Nothing here imports ROS; the ROS node builds on :func:`load_model` and :func:`reconstruct`.
"""

from .checkpoint import (
    CheckpointError,
    average_checkpoints,
    build_model,
    load_model,
    published_state_dict,
    save_checkpoint,
    with_colour_skip,
    with_depth,
    with_query_rgb,
)
from .config import PRESETS, ILRMConfig
from .fast import CompiledForward
from .flops import count_flops
from .gslrm import GSLRM
from .ilrm import ILRM
from .normalize import PoseTransform, denormalize_gaussians, normalize_gaussians, normalize_poses
from .preprocess import fit_to_model
from .reconstruct import reconstruct

__all__ = [
    "CheckpointError",
    "CompiledForward",
    "GSLRM",
    "ILRM",
    "ILRMConfig",
    "PRESETS",
    "PoseTransform",
    "average_checkpoints",
    "build_model",
    "count_flops",
    "denormalize_gaussians",
    "fit_to_model",
    "load_model",
    "normalize_gaussians",
    "normalize_poses",
    "published_state_dict",
    "reconstruct",
    "save_checkpoint",
    "with_colour_skip",
    "with_depth",
    "with_query_rgb",
]
