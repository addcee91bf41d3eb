"""Pipeline settings: one dataclass that is the single source of truth for the ROS parameters.

Each field carries its ROS parameter name (dotted, e.g. ``sync.max_pose_gap`` for the field
``sync_max_pose_gap``), a description, a ``(min, max)`` range or a tuple of choices, and whether
it is read-only (fixed at start-up). ``PARAMS`` lists them for the node to declare;
``PipelineConfig.from_dict`` builds a validated config from dotted (or field) names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, NamedTuple

AUTO_REFINE_STEPS = 5
"""``scene.refine_steps`` -1 on CUDA: 5 steps gave +2.4 dB between 2 views on the held-out benchmark at
about 40 ms (10: +0.4 dB more for about 35 ms more; docs/quality.md, twenty-fifth session)."""

GROUPS = ("sync", "keyframe", "window", "scene", "render", "points")
"""Field-name prefixes that become dotted parameter groups: ``sync_max_pose_gap`` -> ``sync.max_pose_gap``."""


def _param(default, description: str, range=None, choices=None, read_only: bool = False,  # noqa: A002
           length: int | None = None):
    meta = {"description": description, "range": range, "choices": choices, "read_only": read_only, "length": length}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class PipelineConfig:
    """Settings of the pipeline and of the drivers' message conversion (see ``PARAMS`` for descriptions)."""

    checkpoint: str = _param(
        "", "Model: empty = the shipped small checkpoint; a preset (re10k, small, tiny) or a checkpoint path.",
        read_only=True)
    device: str = _param("auto", "Where the model runs: auto (CUDA when available), cuda or cpu.",
                         choices=("auto", "cuda", "cpu"), read_only=True)
    num_views: int = _param(0, "Views per reconstruction window; 0 = the checkpoint's number of views.",
                            range=(0, 64), read_only=True)
    model_resolution: int = _param(
        0, "Model input short side in pixels (a multiple of the patch size); 0 = the checkpoint's training size.",
        range=(0, 2048), read_only=True)
    model_aspect: float = _param(
        0.0, "Model input width / height. 0 = the camera's, from its CameraInfo, so the model sees the whole "
        "frame and renders cover it to the edges; 1 = the square centre crop the checkpoint was trained on; "
        "0.25 to 4 = that aspect (the long side is rounded to the patch size; a differing camera is covered, "
        "then centre-cropped, never stretched).",
        range=(0.0, 4.0), read_only=True)
    model_compile: str = _param(
        "graph", "GPU only: run the fixed-shape forward as a CUDA graph (graph), torch.compile'd (compile), both "
        "(compile+graph: fastest, ~25 s more start-up) or plain (none). Other shapes (OOM fallback) run plain.",
        choices=("none", "graph", "compile", "compile+graph"), read_only=True)
    model_fused_blocks: bool = _param(
        False, "GPU only, with model_compile other than none: fused block maths (tanh GELU epilogue, bf16 residual "
        "stream; about 1.5 ms faster at 8 views on an H100, outputs rounded slightly differently).", read_only=True)
    undistort: bool = _param(True, "Undistort images with the CameraInfo distortion before the model sees them.")
    pose_type: str = _param("PoseStamped", "Message type on the pose topic.",
                            choices=("PoseStamped", "PoseWithCovarianceStamped", "Odometry"), read_only=True)
    camera_from_pose_frame: str = _param(
        "identity",
        "Camera optical frame in the pose frame: identity, camera_link (pose is a REP-103 x-forward body frame), "
        "or 'x y z qx qy qz qw'. cam_to_world = pose @ camera_from_pose.")
    sync_max_pose_gap: float = _param(
        0.1, "Seconds: largest interval between the two poses around an image that is interpolated; "
        "also how long an image newer than the latest pose waits for one.", range=(1e-3, 10.0))
    sync_max_pose_age: float = _param(2.0, "Seconds of pose history kept for pairing late images.",
                                      range=(1e-2, 60.0))
    sync_reset_jump: float = _param(
        1.0, "Seconds: a stamp this far behind the newest (bag loop, sim reset) resets the sync buffers.",
        range=(1e-2, 3600.0))
    keyframe_min_translation: float = _param(0.15, "Metres moved since the last keyframe to take a new one.",
                                             range=(0.0, 100.0))
    keyframe_min_rotation_deg: float = _param(10.0, "Degrees turned since the last keyframe to take a new one.",
                                              range=(0.0, 180.0))
    keyframe_blur_threshold: float = _param(
        0.0, "Minimum variance of the Laplacian (grey, 160 px) for a keyframe; 0 = no blur gate.",
        range=(0.0, 1e6))
    window_selection: str = _param(
        "latest", "latest: the last num_views keyframes; spread: the newest plus the farthest-apart recent ones.",
        choices=("latest", "spread"), read_only=True)
    window_history: int = _param(0, "Recent keyframes that spread selection chooses from; 0 = 4 x num_views.",
                                 range=(0, 1000), read_only=True)
    scene_mode: str = _param(
        "window", "window: the scene is the latest window's Gaussians; map: accumulate, newest views replace old.",
        choices=("window", "map"))
    scene_budget: int = _param(200_000, "Most Gaussians the scene keeps.", range=(1_000, 20_000_000),
                               read_only=True)
    scene_refine_steps: int = _param(
        -1, "Adam steps that fit each refresh's Gaussians to the window's own images (3DGS loss; about +1.5 dB "
        "in replays, docs/quality.md). The model's scene is published first and the refined one replaces it "
        "when ready (a few ms a step on an H100); a newer window waiting cuts a refinement short. -1 = auto: "
        f"{AUTO_REFINE_STEPS} on CUDA, off on the CPU; 0 = off. CUDA only: an explicit count on the CPU is "
        "skipped with a warning (the CPU renderer's backward pass needs tens of GB at the model's input size).",
        range=(-1, 1000))
    render_background: list = _param([1.0, 1.0, 1.0], "RGB in [0, 1] behind the rendered Gaussians.",
                                     range=(0.0, 1.0), length=3)
    points_min_opacity: float = _param(0.1, "Gaussians below this opacity are left out of the point cloud.",
                                       range=(0.0, 1.0))
    points_max_points: int = _param(100_000, "Most points published in the point cloud (the most opaque kept).",
                                    range=(1, 20_000_000))
    points_visible_only: bool = _param(
        False, "Publish only Gaussians that a window camera sees on a rendered surface (drops those hidden "
        "behind walls; costs one render of the window per refresh: about 3 ms on an H100, a few hundred ms on a CPU).",
        read_only=True)

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _validate(f, getattr(self, f.name)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PipelineConfig":
        """A config from ``{"sync.max_pose_gap": 0.2, ...}`` (dotted or field names); unknown names are errors."""
        by_name = {p.name: p.field for p in PARAMS} | {p.field: p.field for p in PARAMS}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ValueError(f"unknown pipeline parameter(s): {', '.join(unknown)}")
        return cls(**{by_name[k]: v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Dotted parameter names to values."""
        return {param_name(k): v for k, v in asdict(self).items()}


def param_name(field_name: str) -> str:
    """The ROS parameter name of a field: the group prefix becomes a dotted namespace."""
    group, _, rest = field_name.partition("_")
    return f"{group}.{rest}" if group in GROUPS and rest else field_name


def _validate(f, value):
    meta, name = f.metadata, param_name(f.name)
    kind = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool,
                                                      "list": list}[f.type]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        value = [float(v) for v in value]  # rclpy hands double arrays over as array.array
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
    if meta.get("length") is not None and len(value) != meta["length"]:
        raise ValueError(f"{name} must have {meta['length']} values, got {value!r}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta["range"] is not None:
        lo, hi = meta["range"]
        for v in value if kind is list else [value]:
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{name} must be within [{lo}, {hi}], got {value!r}")
    return value


class Param(NamedTuple):
    """One ROS parameter: dotted name, dataclass field, default, description, range, choices, read-only flag."""

    name: str
    field: str
    default: Any
    description: str
    range: tuple | None
    choices: tuple | None
    read_only: bool


PARAMS: tuple[Param, ...] = tuple(
    Param(param_name(f.name), f.name, f.default if f.default is not MISSING else f.default_factory(),
          f.metadata["description"], f.metadata["range"], f.metadata["choices"], f.metadata["read_only"])
    for f in fields(PipelineConfig)
)
