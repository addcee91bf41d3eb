"""The node on a real ROS graph (rclpy + Fast DDS, CPU, shipped small model).

A test publisher streams a synthetic room's images, camera info and poses, interleaved with bad
messages; the node must keep producing points, renders, keyframes and diagnostics, count every
bad message by reason, and save a loadable scene.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from live_node import image_msg, pose_msg, set_stamp
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_srvs.srv import Trigger

from ilrm_ros.bag.writer import camera_info_k, synthetic_sequence, to_rgb8
from ilrm_ros.io.convert import camera_info_to_fields
from ilrm_ros.node.ilrm_node import IlrmNode
from ilrm_ros.scene import load_ply

FRAMES = 48
STATIC = 8  # the first frames do not move: exactly one keyframe among them


@pytest.fixture(scope="module")
def sequence():
    seq = synthetic_sequence(frames=FRAMES, rate_hz=15.0, width=128, height=96, seed=3)
    # The first STATIC frames stand still at the first pose.
    seq.cam_to_world[:STATIC] = seq.cam_to_world[0]
    rgb, _ = seq.render(slice(None))
    return seq, to_rgb8(rgb)


class Harness:
    """The node under test plus a client node that publishes inputs and records outputs."""

    def __init__(self, context, output_dir) -> None:
        self.node = IlrmNode(context=context, parameter_overrides=[
            Parameter("device", value="cpu"),
            Parameter("render.rate_hz", value=5.0),
            Parameter("output_dir", value=str(output_dir)),
            Parameter("input_qos", value="reliable"),
        ])
        self.client = Node("test_client", context=context)
        self.received: dict[str, list] = {"points": [], "render": [], "keyframes": [], "diag": []}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        c = self.client
        c.create_subscription(PointCloud2, "/ilrm/points", self.received["points"].append, latched)
        c.create_subscription(Image, "/ilrm/render/image", self.received["render"].append, 10)
        c.create_subscription(PoseArray, "/ilrm/keyframes", self.received["keyframes"].append, latched)
        c.create_subscription(DiagnosticArray, "/diagnostics", self.received["diag"].append, 10)
        self.pub_image = c.create_publisher(Image, "image", 50)
        self.pub_info = c.create_publisher(CameraInfo, "camera_info", 50)
        self.pub_pose = c.create_publisher(PoseStamped, "pose", 50)
        self.save = c.create_client(Trigger, "/ilrm/save_scene")
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def run(sequence, tmp_path_factory):
    """Stream the sequence (with bad messages mixed in) through the live node once; tests inspect the result."""
    import rclpy

    seq, images = sequence
    context = rclpy.Context()
    rclpy.init(context=context)
    h = Harness(context, tmp_path_factory.mktemp("scenes"))
    try:
        assert h.wait_for(lambda: h.pub_image.get_subscription_count() > 0
                          and h.pub_pose.get_subscription_count() > 0, 20), "node did not subscribe"
        info = CameraInfo(**{k: v for k, v in camera_info_to_fields(camera_info_k(seq.intrinsics).reshape(3, 3),
                                                                      seq.width, seq.height).items()})
        stamps = seq.image_stamps_ns
        # Before any CameraInfo: dropped as no_camera_info.
        h.pub_pose.publish(pose_msg(seq.cam_to_world[0], int(stamps[0]) - 1000))
        h.pub_image.publish(image_msg(images[0], int(stamps[0]) - 1000))
        time.sleep(0.3)
        for i in range(FRAMES):
            ns = int(stamps[i])
            set_stamp(info, ns)
            h.pub_info.publish(info)
            h.pub_pose.publish(pose_msg(seq.cam_to_world[i], ns))
            h.pub_image.publish(image_msg(images[i], ns))
            if i % 6 == 3:  # one bad message of each kind, between valid frames
                bad = i // 6
                if bad == 0:
                    h.pub_image.publish(image_msg(images[i], ns + 1, encoding="16UC1"))
                elif bad == 1:
                    msg = image_msg(images[i], ns + 1)
                    msg.data = msg.data[:-7]
                    h.pub_image.publish(msg)
                elif bad == 2:
                    h.pub_pose.publish(pose_msg(np.full((4, 4), np.nan), ns + 1))
                elif bad == 3:
                    h.pub_pose.publish(pose_msg(seq.cam_to_world[i], ns + 1, xyzw=(0.0, 0.0, 0.0, 0.0)))
                elif bad == 4:
                    h.pub_image.publish(image_msg(images[i], 0))
                elif bad == 5:
                    h.pub_image.publish(image_msg(images[i][:48], ns + 1))  # size change mid-stream
            time.sleep(1 / 15)
        assert h.wait_for(lambda: len(h.received["points"]) > 0, 60), "no ~/points after the stream"
        h.node.pipeline.wait_idle(60)
        time.sleep(1.5)  # renders and a diagnostics message after the last refresh
        yield seq, h
    finally:
        h.close()
        context.try_shutdown()


def test_points_are_plausible(run):
    seq, h = run
    msg = h.received["points"][-1]
    assert msg.header.frame_id == "world" and msg.width > 1000
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "opacity"]
    xyz = np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(msg.width, 5)[:, :3]
    lo, hi = (b.numpy() for b in seq.room.bounds)
    inside = np.all((xyz >= lo - 0.5) & (xyz <= hi + 0.5), axis=1)
    # Points in the world frame, inside the room. v5 left many opaque Gaussians behind the walls
    # (its median point lay 0.55 m past a wall here); v6 to v11, trained with the Gaussian-depth
    # term, put them inside (docs/quality.md, "in room"). A frame or axis error puts the bulk of the
    # cloud metres away.
    assert inside.mean() > 0.9, f"only {inside.mean():.0%} of the points lie in the room"
    mid = np.median(xyz, axis=0)
    assert np.all((mid >= lo - 1.0) & (mid <= hi + 1.0)), (mid, lo, hi)


def test_keyframes_only_on_motion(run):
    seq, h = run
    counts = h.node.pipeline.stats.counts
    moved = np.linalg.norm(np.diff(seq.cam_to_world[STATIC - 1:, :3, 3].numpy(), axis=0), axis=1).sum()
    assert 2 <= counts["keyframes"] <= 1 + int(moved / h.node.pipeline.config.keyframe_min_translation) + 8
    poses = h.received["keyframes"][-1].poses
    assert len(poses) == h.node.pipeline.num_views
    # Of the first STATIC frames (no motion), only the first is a keyframe.
    static_stamps = set(seq.image_stamps_ns[:STATIC].tolist())
    assert sum(1 for s in h.node._keyframe_stamps if s in static_stamps) == 1


def test_renders_and_diagnostics(run):
    seq, h = run
    renders = h.received["render"]
    assert len(renders) >= 3
    r = renders[-1]
    assert (r.width, r.height, r.encoding) == (seq.width, seq.height, "rgb8")
    assert r.header.frame_id == "camera_optical_frame"
    assert int(r.header.stamp.sec) * 10**9 + r.header.stamp.nanosec in set(seq.image_stamps_ns.tolist())
    status = h.received["diag"][-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["refreshes"]) >= 1 and int(values["keyframes"]) >= 2
    assert "refresh_latency_p95_ms" in values and values["device"] == "cpu"
    # model_aspect 0 (default): the 128x96 camera's 4:3, long side rounded to the patch; no GPU fast path
    assert values["model_input"] == "168x128" and values["model_fast_path"] == "none"
    # scene.refine_steps -1 (auto): no refinement on the CPU
    assert values["refine_steps"] == "0" and values["refined"] == "0" and values["refine_errors"] == "0"


def test_bad_messages_dropped_and_counted(run):
    _, h = run
    drops = h.node.pipeline.stats.drops
    for reason in ("no_camera_info", "bad_encoding", "size_mismatch", "nan_pose", "bad_quaternion", "zero_stamp",
                   "camera_size_mismatch"):
        assert drops.get(reason, 0) >= 1, f"{reason} not counted: {drops}"
    values = {kv.key: kv.value for kv in h.received["diag"][-1].status[0].values}
    assert int(values["dropped_bad_encoding"]) >= 1


def test_save_scene_writes_loadable_ply(run):
    _, h = run
    assert h.save.wait_for_service(timeout_sec=10)
    future = h.save.call_async(Trigger.Request())
    assert h.wait_for(future.done, 30)
    result = future.result()
    assert result.success, result.message
    gaussians = load_ply(result.message)
    assert len(gaussians) == len(h.node.pipeline.scene_snapshot()[0])
    assert result.message.startswith(h.node._node_params["output_dir"])
