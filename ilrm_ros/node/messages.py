"""Builders of the node's output messages from core arrays (rclpy message classes)."""

from __future__ import annotations

import array

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from ilrm_ros.io.convert import camera_info_to_fields, depth_to_fields, image_to_fields, pose_to_xyz_quat, stamp_fields


def latched_qos() -> QoSProfile:
    """Reliable, transient-local, depth 1: the QoS of `~/points` and `~/keyframes`, so a late subscriber
    gets the latest message."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def header(stamp_ns: int, frame_id: str) -> Header:
    msg = Header(frame_id=frame_id)
    msg.stamp.sec, msg.stamp.nanosec = stamp_fields(stamp_ns).values()
    return msg


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """rgb8 Image of a uint8 HxWx3 array."""
    return Image(header=header(stamp_ns, frame_id), **image_to_fields(rgb, for_rclpy=True))


def depth_msg(depth: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """32FC1 Image (metres) of a float HxW array."""
    return Image(header=header(stamp_ns, frame_id), **depth_to_fields(depth, for_rclpy=True))


def camera_info_msg(K_ros: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera; K in the ROS pixel convention."""
    fields = camera_info_to_fields(K_ros, width, height)
    msg = CameraInfo(header=header(stamp_ns, frame_id), height=fields["height"], width=fields["width"],
                     distortion_model=fields["distortion_model"])
    msg.d = [float(v) for v in fields["d"]]
    msg.k, msg.r, msg.p = fields["k"], fields["r"], fields["p"]
    return msg


def pointcloud_msg(points: np.ndarray, fields: list[tuple[str, int, int, int]], stamp_ns: int,
                   frame_id: str) -> PointCloud2:
    """Unorganised PointCloud2 of a numpy structured array; one buffer copy into the message."""
    msg = PointCloud2(header=header(stamp_ns, frame_id), height=1, width=int(points.shape[0]),
                      is_bigendian=False, point_step=points.dtype.itemsize, is_dense=True)
    msg.row_step = msg.point_step * msg.width
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(points).view(np.uint8).reshape(-1).data)
    msg.data = data
    return msg


def pose_msg(cam_to_world: np.ndarray) -> Pose:
    xyz, xyzw = pose_to_xyz_quat(cam_to_world)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in xyz)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in xyzw)
    return pose


def pose_array_msg(cam_to_worlds, stamp_ns: int, frame_id: str) -> PoseArray:
    return PoseArray(header=header(stamp_ns, frame_id), poses=[pose_msg(T) for T in cam_to_worlds])


def diagnostics_msg(name: str, hardware_id: str, level: bytes, message: str, values: dict,
                    stamp_ns: int) -> DiagnosticArray:
    """One DiagnosticStatus (level: DiagnosticStatus.OK/WARN/ERROR) with string key/values."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=header(stamp_ns, ""), status=[status])
