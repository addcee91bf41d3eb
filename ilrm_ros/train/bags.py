"""Loading recorded bags as training trajectories.

Two passes over each bag with the shared reader (:func:`ilrm_ros.bag.iter_bag`) and message
conversion (:mod:`ilrm_ros.io.convert`): first the poses and camera info, then the images. Each
image is paired with the pose interpolated at its header stamp (:class:`~ilrm_ros.pipeline.sync.PoseBuffer`
over the whole recording), undistorted with its camera model, and fitted to the model resolution
(:func:`~ilrm_ros.model.fit_to_model`) at once, so only small uint8 frames stay in memory.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .data import BagTrajectory
from .views import keyframe_indices


def load_bag(
    path: str | os.PathLike,
    image_topic: str,
    camera_info_topic: str,
    pose_topic: str,
    size: tuple[int, int],
    pose_type: str | None = None,
    camera_from_pose: np.ndarray | None = None,
    max_gap_s: float = 0.2,
    stride: int = 1,
    min_translation: float = 0.15,
    min_rotation_deg: float = 10.0,
) -> tuple[BagTrajectory, Counter]:
    """One bag's posed frames at ``size`` (H, W) and the count of dropped images by reason.

    ``pose_type`` None detects the pose message layout; ``stride`` keeps every n-th image.
    """
    from ilrm_ros.bag import iter_bag
    from ilrm_ros.io import InputError
    from ilrm_ros.io.convert import camera_from_info, image_from_compressed, image_from_msg, pose_from_msg, stamp_ns
    from ilrm_ros.model import fit_to_model
    from ilrm_ros.pipeline.camera import to_pixel_corner_convention
    from ilrm_ros.pipeline.sync import DropFrame, PoseBuffer

    dropped: Counter = Counter()
    poses = PoseBuffer(max_age_s=1e9, max_gap_s=max_gap_s, capacity=1 << 30, reset_jump_s=1e9)
    camera = None
    for m in iter_bag(path, [pose_topic, camera_info_topic]):
        try:
            if m.topic == pose_topic:
                poses.add(*pose_from_msg(m.msg, pose_type, camera_from_pose))
            elif camera is None:
                camera = camera_from_info(m.msg)
        except InputError as err:
            dropped[f"{m.topic}:{err.reason}"] += 1
    if camera is None:
        raise ValueError(f"{path}: no valid CameraInfo on {camera_info_topic!r}")
    if not len(poses):
        raise ValueError(f"{path}: no valid pose on {pose_topic!r}")

    images, intrinsics, cam_to_world = [], [], []
    seen = 0
    for m in iter_bag(path, [image_topic]):
        seen += 1
        if (seen - 1) % max(1, stride):
            continue
        try:
            stamp = stamp_ns(m.msg.header)
            c2w = poses.lookup(stamp)
            rgb = image_from_compressed(m.msg) if "Compressed" in m.msgtype else image_from_msg(m.msg)
            rgb, K = camera.undistort(rgb)
        except (InputError, DropFrame) as err:
            dropped[err.reason] += 1
            continue
        K = torch.from_numpy(to_pixel_corner_convention(K))
        image, K = fit_to_model(torch.from_numpy(rgb).permute(2, 0, 1), K, size)
        images.append((image * 255.0 + 0.5).to(torch.uint8))
        intrinsics.append(K.float())
        cam_to_world.append(torch.from_numpy(c2w))
    if not images:
        raise ValueError(f"{path}: no image on {image_topic!r} could be paired with a pose ({dict(dropped)})")
    c2w = torch.stack(cam_to_world)
    traj = BagTrajectory(
        name=Path(path).name,
        images=torch.stack(images),
        intrinsics=torch.stack(intrinsics),
        cam_to_world=c2w,
        keyframes=keyframe_indices(c2w.numpy(), min_translation, min_rotation_deg),
    )
    return traj, dropped


def load_bags(config, size: tuple[int, int], verbose: bool = True) -> list[BagTrajectory]:
    """Every bag of a :class:`~ilrm_ros.train.trainer.TrainConfig` (``bags``, topics, pose settings)."""
    from ilrm_ros.io.convert import parse_camera_from_pose

    if not config.bags:
        raise ValueError("--data bag needs --bags")
    missing = [name for name in ("image_topic", "camera_info_topic", "pose_topic") if not getattr(config, name)]
    if missing:
        raise ValueError("--data bag needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
    camera_from_pose = parse_camera_from_pose(config.camera_from_pose)
    pose_type = None if config.pose_type in ("", "auto") else config.pose_type
    out = []
    for path in config.bags:
        traj, dropped = load_bag(
            path,
            config.image_topic,
            config.camera_info_topic,
            config.pose_topic,
            size,
            pose_type,
            camera_from_pose,
            stride=config.bag_stride,
        )
        if verbose:
            extra = f", dropped {dict(dropped)}" if dropped else ""
            print(f"{path}: {len(traj.images)} frames, {len(traj.keyframes)} keyframes{extra}", flush=True)
        out.append(traj)
    return out
