"""Conversions between ROS messages and the arrays the pipeline uses, both ways.

Duck-typed: the same functions read rclpy messages (the node) and ``rosbags`` messages (bag
replay), which share field names; they differ only in container types (rclpy: ``array.array``,
bytes, lists; rosbags: numpy arrays), which ``np.asarray``/``np.frombuffer`` absorb. Bad input
raises ``InputError`` with a short machine-readable reason.
"""

from __future__ import annotations

import array
import io
import sys
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from PIL import Image as PILImage

from ilrm_ros.geometry import quat_to_rotmat, rotmat_to_quat
from ilrm_ros.io import InputError
from ilrm_ros.pipeline.camera import CameraModel

MAX_IMAGE_SIDE = 8192
"""Largest accepted width or height: bigger images are rejected before their data is touched."""

QUATERNION_NORM_TOLERANCE = 0.1
"""Quaternions whose norm is within 1 +- this are normalised; others are rejected as bad_quaternion."""

MAX_POSITION = 1e6
"""Largest accepted |x|, |y| or |z| of a pose in metres (position_out_of_range beyond): poses must be in a
local map frame; the model's float32 maths loses centimetres long before (and overflows at 1e19)."""

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
POSE_TYPES = ("PoseStamped", "PoseWithCovarianceStamped", "Odometry")


def _rotation_from_xyzw(x: float, y: float, z: float, w: float) -> np.ndarray:
    return quat_to_rotmat(torch.tensor([w, x, y, z], dtype=torch.float64)).numpy()


CAMERA_FROM_POSE_PRESETS: dict[str, np.ndarray] = {
    "identity": np.eye(4),
    # The pose messages describe a REP-103 body frame (x forward, y left, z up); the camera's optical
    # frame (x right, y down, z forward) has, in body coordinates, the axes x_opt = -y_body,
    # y_opt = -z_body, z_opt = x_body: the usual camera_link -> camera_optical_frame transform,
    # quaternion (x, y, z, w) = (-0.5, 0.5, -0.5, 0.5), i.e. roll -90 deg, yaw -90 deg.
    "camera_link": np.array(
        [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    ),
}
"""Named ``camera_from_pose`` transforms: the camera optical frame's pose in the frame that the pose
messages describe (what ``static_transform_publisher`` with parent = pose frame, child = optical
frame publishes), so that ``cam_to_world = pose @ camera_from_pose``."""


def stamp_ns(header) -> int:
    """Integer nanoseconds of a header (or of a ``builtin_interfaces/Time`` itself)."""
    stamp = getattr(header, "stamp", header)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_fields(ns: int) -> dict:
    """``sec``/``nanosec`` of integer nanoseconds, for building a Time message."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return {"sec": sec, "nanosec": nanosec}


def _as_bytes(data) -> np.ndarray:
    """A flat uint8 view of message data: bytes, array.array('B'), numpy array or a list of ints."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise InputError("empty_image", f"{width}x{height}")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise InputError("size_too_large", f"{width}x{height} exceeds {MAX_IMAGE_SIDE} per side")


def image_from_msg(msg) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) to a contiguous uint8 ``HxWx3`` RGB array.

    Row padding (``step`` larger than ``width * channels``) is stripped; any other encoding is
    ``bad_encoding``; ``data`` must hold exactly ``step * height`` bytes.
    """
    encoding = str(msg.encoding).strip().lower()
    if encoding not in _CHANNELS:
        raise InputError("bad_encoding", f"{msg.encoding!r} (accepted: {', '.join(_CHANNELS)})")
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height)
    channels = _CHANNELS[encoding]
    if step < width * channels:
        raise InputError("size_mismatch", f"step {step} < width {width} x {channels} channels")
    data = _as_bytes(msg.data)
    if data.size != step * height:
        raise InputError("size_mismatch", f"{data.size} bytes of data, expected step {step} x height {height}")
    pixels = data.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    # np.array copies: the result never aliases the message's buffer.
    return np.array(pixels[..., 2::-1] if encoding in ("bgr8", "bgra8") else pixels[..., :3], order="C")


def _check_declared_size(data: np.ndarray) -> None:
    """Refuse an image whose header declares a size over the limit, before anything is decoded (a small
    PNG/JPEG can declare a huge image); headers Pillow cannot read are left to the decoder."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data.tobytes())) as image:  # reads the header only
                width, height = image.size
    except PILImage.DecompressionBombError as err:
        raise InputError("size_too_large", str(err)) from None
    except Exception:  # noqa: BLE001 - not a header Pillow knows: cv2 decides below
        return
    _check_size(width, height)


def image_from_compressed(msg) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG, any layout cv2 reads) to uint8 ``HxWx3`` RGB.

    The declared size is checked from the header before decoding (``size_too_large``).
    """
    fmt = str(getattr(msg, "format", "")).lower()
    if "compresseddepth" in fmt:
        raise InputError("bad_encoding", f"compressed depth {msg.format!r} is not a colour image")
    data = _as_bytes(msg.data)
    if data.size:
        _check_declared_size(data)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError("decode_failed", f"{data.size} bytes, format {getattr(msg, 'format', '')!r}")
    _check_size(bgr.shape[1], bgr.shape[0])
    return np.ascontiguousarray(bgr[..., ::-1])


def camera_from_info(msg) -> CameraModel:
    """``sensor_msgs/CameraInfo`` to a ``CameraModel`` (validated; an all-zero K is ``no_camera_info``)."""
    K = np.asarray(msg.k, dtype=np.float64)
    if K.size != 9:
        raise InputError("bad_intrinsics", f"K has {K.size} values")
    if not K.any():
        raise InputError("no_camera_info", "K is all zeros (uncalibrated camera)")
    if int(msg.width) > MAX_IMAGE_SIDE or int(msg.height) > MAX_IMAGE_SIDE:
        raise InputError("size_too_large", f"camera {msg.width}x{msg.height} exceeds {MAX_IMAGE_SIDE} per side")
    return CameraModel(int(msg.width), int(msg.height), K.reshape(3, 3), str(msg.distortion_model), np.asarray(msg.d))


def _matrix_from_xyz_quat(xyz: Sequence[float], xyzw: Sequence[float]) -> np.ndarray:
    """4x4 transform from a position and an (x, y, z, w) quaternion, validating both."""
    values = np.array([*xyz, *xyzw], dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError("nan_pose", f"non-finite pose {values.tolist()}")
    norm = float(np.linalg.norm(values[3:]))
    if norm < 1e-9:
        raise InputError("bad_quaternion", "zero quaternion")
    if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
        raise InputError("bad_quaternion", f"quaternion norm {norm:.4f} is not close to 1")
    if np.abs(values[:3]).max() > MAX_POSITION:
        raise InputError("position_out_of_range", f"position {values[:3].tolist()} beyond {MAX_POSITION:g} m")
    T = np.eye(4)
    T[:3, :3] = _rotation_from_xyzw(*(values[3:] / norm))
    T[:3, 3] = values[:3]
    return T


def _pose_field(msg, pose_type: str | None):
    """The ``geometry_msgs/Pose`` inside a PoseStamped, PoseWithCovarianceStamped or Odometry."""
    if pose_type is None:
        return msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
    if pose_type == "PoseStamped":
        return msg.pose
    if pose_type in ("PoseWithCovarianceStamped", "Odometry"):
        return msg.pose.pose
    raise InputError("bad_pose_type", f"{pose_type!r} (accepted: {', '.join(POSE_TYPES)})")


def pose_from_msg(msg, pose_type: str | None = "PoseStamped", camera_from_pose: np.ndarray | None = None):
    """(stamp_ns, cam_to_world float64 4x4) from a pose message; ``pose_type=None`` detects the layout.

    ``cam_to_world = pose @ camera_from_pose`` (see ``CAMERA_FROM_POSE_PRESETS``). Quaternions
    within ``QUATERNION_NORM_TOLERANCE`` of unit norm are normalised.
    """
    stamp = stamp_ns(msg.header)
    if stamp <= 0:
        raise InputError("zero_stamp", "pose header stamp is zero")
    pose = _pose_field(msg, pose_type)
    p, q = pose.position, pose.orientation
    T = _matrix_from_xyz_quat((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
    if camera_from_pose is not None:
        T = T @ np.asarray(camera_from_pose, dtype=np.float64)
    return stamp, T


def parse_camera_from_pose(value) -> np.ndarray:
    """A ``camera_from_pose`` 4x4 from a preset name, ``[x, y, z, qx, qy, qz, qw]`` or a string of those 7 numbers.

    An empty string or list means identity. Bad values raise ``InputError("bad_transform")``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return CAMERA_FROM_POSE_PRESETS["identity"].copy()
    if isinstance(value, str):
        name = value.strip().lower()
        if name in CAMERA_FROM_POSE_PRESETS:
            return CAMERA_FROM_POSE_PRESETS[name].copy()
        try:
            value = [float(v) for v in name.replace(",", " ").split()]
        except ValueError:
            raise InputError(
                "bad_transform", f"{value!r} is neither a preset ({', '.join(CAMERA_FROM_POSE_PRESETS)}) nor 7 numbers"
            ) from None
    values = list(value)
    if not values:
        return CAMERA_FROM_POSE_PRESETS["identity"].copy()
    if len(values) != 7:
        raise InputError("bad_transform", f"expected [x, y, z, qx, qy, qz, qw], got {len(values)} values")
    try:
        return _matrix_from_xyz_quat(values[:3], values[3:])
    except InputError as err:
        raise InputError("bad_transform", str(err)) from None


def pose_to_xyz_quat(cam_to_world) -> tuple[np.ndarray, np.ndarray]:
    """Position and (x, y, z, w) unit quaternion of a 4x4 pose (numpy or torch), for Pose/TF messages."""
    T = torch.as_tensor(np.asarray(cam_to_world, dtype=np.float64))
    wxyz = rotmat_to_quat(T[:3, :3]).numpy()
    return T[:3, 3].numpy().copy(), np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])


def _data_field(flat: np.ndarray, for_rclpy: bool):
    # rclpy copies an array.array('B') as is but walks a numpy array element by element; rosbags wants numpy.
    return array.array("B", flat.tobytes()) if for_rclpy else flat


def image_to_fields(rgb: np.ndarray, for_rclpy: bool = False) -> dict:
    """``sensor_msgs/Image`` fields (rgb8) for a uint8 ``HxWx3`` array: pass them as ``Image(header=..., **fields)``."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError("bad_encoding", f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    return {"height": height, "width": width, "encoding": "rgb8", "is_bigendian": 0, "step": width * 3,
            "data": _data_field(rgb.reshape(-1), for_rclpy)}


def depth_to_fields(depth: np.ndarray, for_rclpy: bool = False) -> dict:
    """``sensor_msgs/Image`` fields (32FC1, metres, native byte order) for a float ``HxW`` depth map."""
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError("bad_encoding", f"expected HxW depth, got shape {depth.shape}")
    height, width = depth.shape
    return {"height": height, "width": width, "encoding": "32FC1", "is_bigendian": int(sys.byteorder == "big"),
            "step": width * 4, "data": _data_field(depth.reshape(-1).view(np.uint8), for_rclpy)}


def camera_info_to_fields(K: np.ndarray, width: int, height: int) -> dict:
    """``sensor_msgs/CameraInfo`` fields of an undistorted pinhole camera (K in the ROS pixel convention)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {"height": int(height), "width": int(width), "distortion_model": "plumb_bob", "d": np.zeros(5),
            "k": K.reshape(-1).copy(), "r": np.eye(3).reshape(-1), "p": P.reshape(-1)}

