"""A live `IlrmNode` on its own rclpy context, fed and watched by a client node (shared by the reliability tests).

Everything is real: Fast DDS between the client and the node, the node's own parameter service,
the shipped small checkpoint on CPU. The executor's spin thread records any exception that
escapes a callback (rclpy re-raises it from `spin()`, which would stop the node for good).
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from collections import deque

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import Log
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger

from ilrm_ros.bag.writer import camera_info_k, synthetic_sequence, to_rgb8
from ilrm_ros.io.convert import pose_to_xyz_quat, stamp_fields
from ilrm_ros.node.ilrm_node import IlrmNode

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(trim: bool = False) -> int:
    """Resident memory of this process now (the node runs in it).

    ``trim`` first hands free heap pages back to the OS (glibc ``malloc_trim``), so that the figure
    follows live memory rather than how much the allocator happens to keep after a busy moment.
    """
    if trim and _LIBC is not None:
        _LIBC.malloc_trim(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def _libc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


class Frames:
    """A synthetic room seen along a robot path: uint8 images, ROS K, cam_to_world poses (looped by index)."""

    def __init__(self, n: int = 60, width: int = 128, height: int = 96, seed: int = 3, rate_hz: float = 15.0):
        seq = synthetic_sequence(frames=n, rate_hz=rate_hz, width=width, height=height, seed=seed)
        rgb, _ = seq.render(slice(None))
        self.images = to_rgb8(rgb)
        self.cam_to_world = seq.cam_to_world.numpy()
        self.K = camera_info_k(seq.intrinsics).reshape(3, 3)
        self.width, self.height = width, height
        self.room = seq.room
        self._encoded: dict[tuple[int, str], bytes] = {}

    def encoded(self, i: int, fmt: str = "jpeg") -> bytes:
        """Image ``i`` as JPEG or PNG bytes (encoded once)."""
        key = (i % len(self), fmt)
        if key not in self._encoded:
            self._encoded[key] = encode(self.image(i), fmt)
        return self._encoded[key]

    @classmethod
    @functools.lru_cache(maxsize=4)
    def get(cls, n: int = 24, width: int = 128, height: int = 96, seed: int = 5) -> "Frames":
        """Shared instances: the synthetic room is rendered once per process and camera (seconds on a busy CPU)."""
        return cls(n=n, width=width, height=height, seed=seed)

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> np.ndarray:
        return self.images[i % len(self)]

    def pose(self, i: int) -> np.ndarray:
        return self.cam_to_world[i % len(self)]


def set_stamp(msg, ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_fields(ns).values()


def image_msg(rgb: np.ndarray, ns: int, encoding: str = "rgb8") -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3,
                data=np.ascontiguousarray(rgb).tobytes())
    msg.header.frame_id = "camera_optical_frame"
    set_stamp(msg, ns)
    return msg


def encode(rgb: np.ndarray, fmt: str = "jpeg") -> bytes:
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buf.tobytes()


def compressed_msg(rgb: np.ndarray | bytes, ns: int, fmt: str = "jpeg") -> CompressedImage:
    """CompressedImage of an RGB array (encoded here) or of already encoded bytes."""
    data = rgb if isinstance(rgb, bytes) else encode(rgb, fmt)
    msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8", data=data)
    msg.header.frame_id = "camera_optical_frame"
    set_stamp(msg, ns)
    return msg


def info_msg(K: np.ndarray, width: int, height: int, ns: int, d=(0.0, 0.0, 0.0, 0.0, 0.0),
             model: str = "plumb_bob") -> CameraInfo:
    msg = CameraInfo(width=int(width), height=int(height), distortion_model=model)
    msg.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(9)]
    msg.d = [float(v) for v in d]
    P = np.zeros((3, 4))
    P[:3, :3] = np.asarray(K, dtype=np.float64).reshape(3, 3)
    msg.p = [float(v) for v in P.reshape(12)]
    msg.header.frame_id = "camera_optical_frame"
    set_stamp(msg, ns)
    return msg


def pose_msg(c2w: np.ndarray | None, ns: int, xyz=None, xyzw=None) -> PoseStamped:
    """PoseStamped of a pose; ``xyz``/``xyzw`` override the position/orientation (any floats, NaN included)."""
    if c2w is not None:
        p, q = pose_to_xyz_quat(np.asarray(c2w))
        xyz = p if xyz is None else xyz
        xyzw = q if xyzw is None else xyzw
    msg = PoseStamped()
    msg.header.frame_id = "world"
    set_stamp(msg, ns)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in xyz)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in xyzw)
    return msg


class Recorder:
    """Messages received on one topic: how many (``len``) and the most recent ``keep`` (bounded, for long runs)."""

    def __init__(self, keep: int) -> None:
        self.count = 0
        self.items: deque = deque(maxlen=keep)

    def __call__(self, msg) -> None:
        self.items.append(msg)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return iter(list(self.items))

    def __getitem__(self, i: int):
        return self.items[i]

    def since(self, n: int) -> list:
        """The kept messages from the ``n``-th received on."""
        items = list(self.items)
        return items[max(0, len(items) - (self.count - n)):]


class LiveNode:
    """The node under test plus a client node publishing its inputs and recording its outputs."""

    def __init__(self, params: dict | None = None, compressed: bool = False, executor: str = "single") -> None:
        """``executor``: "single" (SingleThreadedExecutor) or "multi" (MultiThreadedExecutor, 4 threads).

        Single by default: under a 30 Hz stream rclpy's MultiThreadedExecutor busy-loops in its wait
        loop and starves the refresh worker and the callbacks of the GIL on a small CPU (refreshes
        take seconds instead of ~0.1 s; see docs/reliability.md), which made these tests flaky.
        """
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = {"device": "cpu", "render.rate_hz": 5.0, "input_qos": "reliable", "diagnostics_rate_hz": 2.0,
                     "image_transport": "compressed" if compressed else "raw", **(params or {})}
        try:
            self.node = IlrmNode(context=self.context,
                                 parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        except BaseException:
            self.context.try_shutdown()
            raise
        self.compressed = compressed
        c = self.client = Node("reliability_client", context=self.context)
        self.diag = Recorder(10_000)  # (wall time received, key -> value)
        self.points = Recorder(2)
        self.renders = Recorder(5)
        self.logs = Recorder(2_000)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        rosout = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
        c.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        c.create_subscription(PointCloud2, "/ilrm/points", self.points, latched)
        c.create_subscription(Image, "/ilrm/render/image", self.renders, 10)
        c.create_subscription(Log, "/rosout", lambda m: self.logs(m) if m.name == "ilrm" else None, rosout)
        self.pub_image = c.create_publisher(CompressedImage if compressed else Image,
                                            "image/compressed" if compressed else "image", 100)
        self.pub_info = c.create_publisher(CameraInfo, "camera_info", 100)
        self.pub_pose = c.create_publisher(PoseStamped, "pose", 100)
        self.pub_render_pose = c.create_publisher(PoseStamped, "/ilrm/render_pose", 100)
        self.save = c.create_client(Trigger, "/ilrm/save_scene")
        self.params = AsyncParameterClient(c, "/ilrm")
        self.executor = (MultiThreadedExecutor(num_threads=4, context=self.context) if executor == "multi" else
                         SingleThreadedExecutor(context=self.context))
        self.executor.add_node(self.node)
        self.executor.add_node(c)
        self.spin_error: BaseException | None = None
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        pubs = (self.pub_image, self.pub_info, self.pub_pose)
        assert self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), 20), "node did not subscribe"

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except BaseException as err:  # noqa: BLE001 - recorded for the test to report
            self.spin_error = err

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": ilrm"):
                self.diag((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and self.spin_error is None

    def wait_for(self, predicate, timeout: float, poll: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(poll)
        return bool(predicate())

    def result(self, future, timeout: float = 15.0):
        assert self.wait_for(future.done, timeout), "no reply from the node"
        return future.result()

    def set_parameters(self, params: list[Parameter]):
        """Through the node's real `~/set_parameters` service; returns the per-parameter results."""
        assert self.params.wait_for_services(timeout_sec=10)
        return self.result(self.params.set_parameters(params)).results

    def get_parameter(self, name: str):
        assert self.params.wait_for_services(timeout_sec=10)
        return self.result(self.params.get_parameters([name])).values[0]

    def fresh_diagnostics(self, timeout: float = 10.0) -> dict:
        """The values of a diagnostics message published after this call."""
        n = len(self.diag)
        assert self.wait_for(lambda: len(self.diag) > n, timeout), "no diagnostics"
        return self.diag[-1][1]

    def scene_version(self) -> int:
        return self.node.pipeline.scene_snapshot()[1]

    def publish_frame(self, frames: Frames, i: int, ns: int) -> None:
        """CameraInfo, pose and image (JPEG on the compressed transport) of frame ``i``, all stamped ``ns``."""
        self.pub_info.publish(info_msg(frames.K, frames.width, frames.height, ns))
        self.pub_pose.publish(pose_msg(frames.pose(i), ns))
        self.pub_image.publish(compressed_msg(frames.encoded(i), ns) if self.compressed else
                               image_msg(frames.image(i), ns))

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10)  # no callback may run while the node is destroyed
        self.node.destroy_node()
        self.client.destroy_node()
        self.context.try_shutdown()


def attempts(h: LiveNode) -> int:
    """Refreshes tried so far (succeeded or failed)."""
    counts = h.node.pipeline.stats.counts
    return counts.get("refreshes", 0) + counts.get("refresh_errors", 0)


def feed(h: LiveNode, frames: Frames, i: int, ns: int, rgb: np.ndarray | None = None, pose: bool = True,
         refresh: bool = True) -> None:
    """Frame ``i`` (or ``rgb`` at frame i's pose); waits until it is handled and, if ``refresh``, refreshed."""
    stats = h.node.pipeline.stats
    images, tried = stats.counts.get("image", 0), attempts(h)
    h.pub_info.publish(info_msg(frames.K, frames.width, frames.height, ns))
    if h.node.pipeline.camera is None:  # topics are not ordered between each other: calibration first
        assert h.wait_for(lambda: h.node.pipeline.camera is not None, 10)
    if pose:
        h.pub_pose.publish(pose_msg(frames.pose(i), ns))
    h.pub_image.publish(image_msg(frames.image(i) if rgb is None else rgb, ns))
    assert h.wait_for(lambda: stats.counts.get("image", 0) > images, 10), "image not handled"
    if refresh:
        assert h.wait_for(lambda: attempts(h) > tried, 30), (
            f"no refresh for frame {i}: counts {stats.counts}, drops {stats.drops}, window "
            f"{[f.stamp_ns for f in h.node.pipeline.window.frames]}")
        assert h.node.pipeline.wait_idle(30)
