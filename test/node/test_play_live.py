"""The live path: `ilrm play`'s BagPlayer publishes a synthetic bag through rclpy into the node."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2

from ilrm_ros.bag import write_synthetic_bag
from ilrm_ros.bag.player import BagPlayer
from ilrm_ros.node.ilrm_node import IlrmNode


def test_bag_played_into_node_gives_points_and_renders(tmp_path):
    bag = tmp_path / "room.mcap"
    write_synthetic_bag(bag, frames=40, rate_hz=10.0, width=128, height=96, seed=5)
    context = rclpy.Context()
    rclpy.init(context=context)
    # Remapped like the launch file does it: the node's relative inputs onto the bag's topics.
    node = IlrmNode(context=context, cli_args=[
        "--ros-args", "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info",
        "-r", "pose:=/camera/pose"], parameter_overrides=[
        Parameter("device", value="cpu"), Parameter("render.rate_hz", value=5.0),
        Parameter("output_dir", value=str(tmp_path / "scenes")), Parameter("viewer.enabled", value=True),
        Parameter("viewer.port", value=18080)])
    client = Node("play_client", context=context)
    points, renders = [], []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    client.create_subscription(PointCloud2, "/ilrm/points", points.append, latched)
    client.create_subscription(Image, "/ilrm/render/image", renders.append, 10)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        player = BagPlayer(client, bag, rate=2.0, wait_for_subscribers=20.0,
                           topics=["/camera/image_raw", "/camera/camera_info", "/camera/pose"])
        player.run()
        deadline = time.monotonic() + 60
        while (not points or len(renders) < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert points and points[-1].width > 1000
        assert len(renders) >= 2 and renders[-1].encoding == "rgb8"
        assert player.published == 40 * 3
        assert node.pipeline.stats.counts.get("refreshes", 0) >= 1
        # The browser viewer got the scene, and its controls drive the node.
        viewer = node._viewer
        assert viewer is not None and viewer.url.startswith("http://127.0.0.1:")
        assert viewer.flush(30) and viewer.shown > 1000
        pose = np.eye(4)
        pose[:3, 3] = [1.0, 2.0, 1.0]
        viewer.on_render_pose(pose)
        assert node.get_parameter("render.pose_source").value == "topic"
        assert np.array_equal(node._render_pose, pose)
        viewer.on_scene_mode("map")
        assert node.pipeline.scene.mode == "map" and node.get_parameter("scene.mode").value == "map"
        assert Path(viewer.on_save()).exists()
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=10)
