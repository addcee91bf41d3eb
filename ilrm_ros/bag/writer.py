"""Write a synthetic rosbag2 (mcap or sqlite3) with the ``rosbags`` library; no ROS needed.

Topics (stamps in headers equal the bag receive timestamps):

- ``/camera/image_raw``   sensor_msgs/msg/Image, rgb8, frame ``camera_optical_frame``
- ``/camera/camera_info`` sensor_msgs/msg/CameraInfo, plumb_bob, zero distortion
- ``/camera/depth``       sensor_msgs/msg/Image, 32FC1 ground-truth z-depth in metres
- ``/camera/pose``        geometry_msgs/msg/PoseStamped in frame ``world``: the optical frame's
  pose (OpenCV axes) in the z-up world; at the image stamps, or at ``pose_rate_hz`` at stamps
  never equal to an image stamp (interpolated from the trajectory, like real odometry).

CameraInfo's K/P follow ROS (pixel centres at integer coordinates), i.e. they hold the
renderer's intrinsics with cx, cy shifted by -0.5; :func:`intrinsics_from_camera_info`
undoes it.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..geometry import rotmat_to_quat
from ..synthetic.room import SyntheticRoom
from ..synthetic.trajectory import (
    DEFAULT_START_NS,
    default_intrinsics,
    ground_robot_trajectory,
    handheld_sweep,
    interpolate_poses,
)

IMAGE_TOPIC = "/camera/image_raw"
INFO_TOPIC = "/camera/camera_info"
DEPTH_TOPIC = "/camera/depth"
POSE_TOPIC = "/camera/pose"
CAMERA_FRAME = "camera_optical_frame"
WORLD_FRAME = "world"
IMAGE_TYPE = "sensor_msgs/msg/Image"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POSE_TYPE = "geometry_msgs/msg/PoseStamped"
BAG_VERSION = 8  # rosbag2 metadata version written (Jazzy); readable by Jazzy and newer
CUSTOM_DATA_KEY = "ilrm_ros.synthetic"

TRAJECTORIES = {"robot": ground_robot_trajectory, "handheld": handheld_sweep}


def typestore():
    """The rosbags type store used for writing (ROS 2 Jazzy definitions)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


@dataclass
class SyntheticSequence:
    """Everything a synthetic bag holds, as ground truth: the scene, the camera and the poses."""

    room: SyntheticRoom
    intrinsics: torch.Tensor  # [3, 3] float64, renderer convention (pixel centres at +0.5)
    width: int
    height: int
    image_stamps_ns: np.ndarray  # [N] int64
    cam_to_world: torch.Tensor  # [N, 4, 4] float64, the image poses
    pose_stamps_ns: np.ndarray  # [M] int64
    pose_cam_to_world: torch.Tensor  # [M, 4, 4] float64

    def render(self, index: int | slice | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB ``[.., H, W, 3]`` and depth ``[.., H, W]`` of image(s) ``index``."""
        return self.room.render(self.intrinsics, self.cam_to_world[index], self.height, self.width)


def synthetic_sequence(
    frames: int = 300,
    rate_hz: float = 30.0,
    width: int = 160,
    height: int = 120,
    seed: int = 0,
    trajectory: str = "robot",
    pose_rate_hz: float | None = None,
    hfov_deg: float = 70.0,
    start_ns: int = DEFAULT_START_NS,
) -> SyntheticSequence:
    """The camera, image poses and pose-topic samples that :func:`write_synthetic_bag` writes.

    The trajectory runs one second (at least one frame) longer at both ends than the images,
    so odometry at ``pose_rate_hz`` >= 1 Hz brackets every image; the image poses do not
    depend on ``pose_rate_hz``.
    """
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {trajectory!r}; choose from {sorted(TRAJECTORIES)}")
    if frames < 1 or rate_hz <= 0 or width < 1 or height < 1:
        raise ValueError("frames, rate_hz, width and height must be positive")
    if pose_rate_hz is not None and pose_rate_hz <= 0:
        raise ValueError("pose_rate_hz must be positive")
    room = SyntheticRoom(seed)
    pad = max(1, math.ceil(rate_hz))
    stamps, c2w = TRAJECTORIES[trajectory](room, frames + 2 * pad, rate_hz, seed, start_ns=start_ns)
    img_stamps, img_c2w = stamps[pad : pad + frames], c2w[pad : pad + frames]
    if pose_rate_hz is None:
        pose_stamps, pose_c2w = img_stamps.copy(), img_c2w.clone()
    else:
        period = 1e9 / pose_rate_hz
        for phase in (0.5, 0.37, 0.29, 0.61, 0.13, 0.83):  # the first that misses every image stamp
            offset = phase * min(period, 1e9 / rate_hz)
            count = int((stamps[-1] - stamps[0] - offset) // period) + 1
            pose_stamps = stamps[0] + np.round(offset + np.arange(count) * period).astype(np.int64)
            if not np.isin(pose_stamps, img_stamps).any():
                break
        else:
            raise ValueError(f"cannot place {pose_rate_hz} Hz poses between {rate_hz} Hz images")
        # One sample before the first and after the last image, none further out.
        lo = pose_stamps[pose_stamps < img_stamps[0]]
        hi = pose_stamps[pose_stamps > img_stamps[-1]]
        first = lo[-1] if len(lo) else pose_stamps[0]
        last = hi[0] if len(hi) else pose_stamps[-1]
        pose_stamps = pose_stamps[(pose_stamps >= first) & (pose_stamps <= last)]
        pose_c2w = interpolate_poses(stamps, c2w, pose_stamps)
    return SyntheticSequence(
        room=room,
        intrinsics=default_intrinsics(width, height, hfov_deg),
        width=width,
        height=height,
        image_stamps_ns=img_stamps,
        cam_to_world=img_c2w,
        pose_stamps_ns=pose_stamps,
        pose_cam_to_world=pose_c2w,
    )


def to_rgb8(rgb: torch.Tensor) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8 (round to nearest), as written to the bag."""
    return (rgb.detach().cpu().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def camera_info_k(intrinsics: torch.Tensor) -> np.ndarray:
    """ROS CameraInfo K (row-major 9, float64) from renderer intrinsics (cx, cy shifted -0.5)."""
    K = np.asarray(torch.as_tensor(intrinsics, dtype=torch.float64).cpu()).copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K.reshape(9)


def intrinsics_from_camera_info(k: np.ndarray | list[float]) -> torch.Tensor:
    """Renderer / iLRM intrinsics ``[3, 3]`` float64 from a ROS CameraInfo K (or P's 3x3 part)."""
    K = torch.tensor(np.asarray(k, dtype=np.float64).reshape(3, 3))
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def _qos_profiles():
    """What a ROS 2 recorder stores for a default (reliable, volatile) publisher."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    inf = QosTime(9223372036, 854775807)
    return [
        Qos(
            history=QosHistory.UNKNOWN,
            depth=0,
            reliability=QosReliability.RELIABLE,
            durability=QosDurability.VOLATILE,
            deadline=inf,
            lifespan=inf,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=inf,
            avoid_ros_namespace_conventions=False,
        )
    ]


class _Messages:
    """rosbags message builders for one type store."""

    def __init__(self, ts) -> None:
        self.ts = ts
        T = ts.types
        self.Time = T["builtin_interfaces/msg/Time"]
        self.Header = T["std_msgs/msg/Header"]
        self.Image = T[IMAGE_TYPE]
        self.CameraInfo = T[INFO_TYPE]
        self.RegionOfInterest = T["sensor_msgs/msg/RegionOfInterest"]
        self.PoseStamped = T[POSE_TYPE]
        self.Pose = T["geometry_msgs/msg/Pose"]
        self.Point = T["geometry_msgs/msg/Point"]
        self.Quaternion = T["geometry_msgs/msg/Quaternion"]

    def header(self, stamp_ns: int, frame_id: str):
        sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
        return self.Header(stamp=self.Time(sec=sec, nanosec=nsec), frame_id=frame_id)

    def image(self, stamp_ns: int, data: np.ndarray, encoding: str):
        h, w = data.shape[:2]
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        msg = self.Image(
            header=self.header(stamp_ns, CAMERA_FRAME),
            height=h,
            width=w,
            encoding=encoding,
            is_bigendian=int(sys.byteorder == "big"),
            step=raw.size // h,
            data=raw,
        )
        return self.ts.serialize_cdr(msg, IMAGE_TYPE)

    def camera_info(self, stamp_ns: int, intrinsics: torch.Tensor, width: int, height: int):
        k = camera_info_k(intrinsics)
        p = np.zeros(12)
        p[[0, 1, 2, 4, 5, 6, 10]] = k[[0, 1, 2, 3, 4, 5, 8]]
        msg = self.CameraInfo(
            header=self.header(stamp_ns, CAMERA_FRAME),
            height=height,
            width=width,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=k,
            r=np.eye(3).reshape(9),
            p=p,
            binning_x=0,
            binning_y=0,
            roi=self.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )
        return self.ts.serialize_cdr(msg, INFO_TYPE)

    def pose(self, stamp_ns: int, c2w: torch.Tensor):
        c2w = torch.as_tensor(c2w, dtype=torch.float64)
        w, x, y, z = (float(v) for v in rotmat_to_quat(c2w[:3, :3]))
        t = [float(v) for v in c2w[:3, 3]]
        msg = self.PoseStamped(
            header=self.header(stamp_ns, WORLD_FRAME),
            pose=self.Pose(
                position=self.Point(x=t[0], y=t[1], z=t[2]),
                orientation=self.Quaternion(x=x, y=y, z=z, w=w),
            ),
        )
        return self.ts.serialize_cdr(msg, POSE_TYPE)


def write_synthetic_bag(
    out_path: str | Path,
    frames: int = 300,
    rate_hz: float = 30.0,
    width: int = 160,
    height: int = 120,
    seed: int = 0,
    storage: str = "mcap",
    trajectory: str = "robot",
    pose_rate_hz: float | None = None,
    hfov_deg: float = 70.0,
    depth: bool = True,
    overwrite: bool = False,
    device: str = "cpu",
    render_batch: int = 16,
) -> SyntheticSequence:
    """Render a synthetic camera sequence and write it as a rosbag2 directory at ``out_path``.

    ``storage`` is "mcap" or "sqlite3". ``overwrite`` replaces an existing bag directory (one
    with a metadata.yaml), never any other directory. Returns the ground truth written.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"unknown storage {storage!r}; choose 'mcap' or 'sqlite3'")
    out = Path(out_path)
    if out.exists():
        if overwrite and (out / "metadata.yaml").is_file():
            shutil.rmtree(out)
        else:
            hint = " (pass overwrite to replace a bag)" if (out / "metadata.yaml").is_file() else ""
            raise FileExistsError(f"{out} exists already{hint}")

    seq = synthetic_sequence(frames, rate_hz, width, height, seed, trajectory, pose_rate_hz, hfov_deg)
    room = seq.room.to(device)
    mk = _Messages(typestore())
    qos = _qos_profiles()

    writer = Writer(out, version=BAG_VERSION, storage_plugin=plugins[storage])
    writer.set_custom_data(
        CUSTOM_DATA_KEY,
        json.dumps(
            {
                "seed": seed,
                "trajectory": trajectory,
                "frames": frames,
                "rate_hz": rate_hz,
                "width": width,
                "height": height,
                "hfov_deg": hfov_deg,
                "pose_rate_hz": pose_rate_hz,
            }
        ),
    )
    with writer:
        conn = {
            topic: writer.add_connection(topic, msgtype, typestore=mk.ts, offered_qos_profiles=qos)
            for topic, msgtype in [
                (IMAGE_TOPIC, IMAGE_TYPE),
                (INFO_TOPIC, INFO_TYPE),
                *([(DEPTH_TOPIC, IMAGE_TYPE)] if depth else []),
                (POSE_TOPIC, POSE_TYPE),
            ]
        }
        poses = list(zip(seq.pose_stamps_ns.tolist(), seq.pose_cam_to_world))
        pi = 0

        def flush_poses(until_ns: int, inclusive: bool) -> None:
            nonlocal pi
            while pi < len(poses) and (poses[pi][0] < until_ns or (inclusive and poses[pi][0] == until_ns)):
                stamp, c2w = poses[pi]
                writer.write(conn[POSE_TOPIC], stamp, mk.pose(stamp, c2w))
                pi += 1

        for start in range(0, frames, render_batch):
            idx = list(range(start, min(frames, start + render_batch)))
            rgb, dep = room.render(seq.intrinsics, seq.cam_to_world[idx], height, width)
            rgb8 = to_rgb8(rgb)
            dep = dep.detach().cpu().numpy().astype(np.float32)
            for j, i in enumerate(idx):
                stamp = int(seq.image_stamps_ns[i])
                flush_poses(stamp, inclusive=False)
                writer.write(conn[IMAGE_TOPIC], stamp, mk.image(stamp, rgb8[j], "rgb8"))
                writer.write(conn[INFO_TOPIC], stamp, mk.camera_info(stamp, seq.intrinsics, width, height))
                if depth:
                    writer.write(conn[DEPTH_TOPIC], stamp, mk.image(stamp, dep[j], "32FC1"))
                flush_poses(stamp, inclusive=True)
        flush_poses(np.iinfo(np.int64).max, inclusive=True)
    seq.room.to("cpu")
    return seq
