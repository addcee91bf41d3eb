"""A rosbag2 (mcap) of the node's output topics, written by `ilrm replay --outputs-bag` for RViz/Foxglove."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ilrm_ros.io.convert import pose_to_xyz_quat

from .writer import BAG_VERSION, IMAGE_TYPE, WORLD_FRAME, _Messages, typestore

POINTS_TYPE = "sensor_msgs/msg/PointCloud2"
POSES_TYPE = "geometry_msgs/msg/PoseArray"


class OutputBag:
    """Render images, point clouds and keyframe poses as the node would publish them, into a bag."""

    def __init__(self, path: str | Path, namespace: str = "/ilrm") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.mk = _Messages(typestore())
        self.namespace = namespace
        self.writer = Writer(Path(path), version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self._connections: dict[str, object] = {}

    def _write(self, topic: str, msgtype: str, stamp_ns: int, msg) -> None:
        name = f"{self.namespace}/{topic}"
        if name not in self._connections:
            self._connections[name] = self.writer.add_connection(name, msgtype, typestore=self.mk.ts)
        self.writer.write(self._connections[name], int(stamp_ns), self.mk.ts.serialize_cdr(msg, msgtype))

    def render(self, stamp_ns: int, rgb: np.ndarray) -> None:
        """``~/render/image`` (rgb8)."""
        name = f"{self.namespace}/render/image"
        if name not in self._connections:
            self._connections[name] = self.writer.add_connection(name, IMAGE_TYPE, typestore=self.mk.ts)
        self.writer.write(self._connections[name], int(stamp_ns), self.mk.image(stamp_ns, rgb, "rgb8"))

    def points(self, stamp_ns: int, points: np.ndarray, fields: list[tuple[str, int, int, int]]) -> None:
        """``~/points`` (PointCloud2 in the world frame) of a packed structured array."""
        T = self.mk.ts.types
        field_msgs = [T["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
        data = np.ascontiguousarray(points).view(np.uint8).reshape(-1)
        msg = T[POINTS_TYPE](header=self.mk.header(stamp_ns, WORLD_FRAME), height=1, width=len(points),
                             fields=field_msgs, is_bigendian=False, point_step=points.dtype.itemsize,
                             row_step=data.size, data=data, is_dense=True)
        self._write("points", POINTS_TYPE, stamp_ns, msg)

    def keyframes(self, stamp_ns: int, cam_to_worlds) -> None:
        """``~/keyframes`` (PoseArray in the world frame)."""
        poses = []
        for c2w in cam_to_worlds:
            (px, py, pz), (qx, qy, qz, qw) = (map(float, v) for v in pose_to_xyz_quat(c2w))
            poses.append(self.mk.Pose(position=self.mk.Point(x=px, y=py, z=pz),
                                      orientation=self.mk.Quaternion(x=qx, y=qy, z=qz, w=qw)))
        msg = self.mk.ts.types[POSES_TYPE](header=self.mk.header(stamp_ns, WORLD_FRAME), poses=poses)
        self._write("keyframes", POSES_TYPE, stamp_ns, msg)

    def close(self) -> None:
        self.writer.close()
