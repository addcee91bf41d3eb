"""The ROS 2 runtime from pip wheels works: real rclpy, real Fast DDS, Image pub/sub in one process."""

import os
import time

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image


def test_environment_is_isolated():
    assert 11 <= int(os.environ["ROS_DOMAIN_ID"]) <= 100
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


def test_image_publish_subscribe(ros_context):
    pub_node = Node("runtime_pub", context=ros_context)
    sub_node = Node("runtime_sub", context=ros_context)
    received: list[Image] = []
    sub_node.create_subscription(Image, "runtime_test/image", received.append, 10)
    pub = pub_node.create_publisher(Image, "runtime_test/image", 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)

    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    msg = Image(height=4, width=6, encoding="rgb8", step=18, data=pixels.tobytes())
    msg.header.frame_id = "camera_optical_frame"
    deadline = time.monotonic() + 20.0
    while not received and time.monotonic() < deadline:
        pub.publish(msg)
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    pub_node.destroy_node()
    sub_node.destroy_node()

    assert received, "no Image arrived over Fast DDS within 20 s"
    got = received[0]
    assert (got.height, got.width, got.encoding, got.header.frame_id) == (4, 6, "rgb8", "camera_optical_frame")
    assert np.array_equal(np.frombuffer(bytes(got.data), np.uint8).reshape(4, 6, 3), pixels)
