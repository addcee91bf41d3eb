"""``ilrm play`` / BagPlayer: a real rclpy subscriber receives the bag's messages, in order, on time."""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import pytest

# The project's conftest sets these per session; keep the module safe on its own too.
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 200 + 20))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from ilrm_ros.bag import iter_bag, write_synthetic_bag  # noqa: E402
from ilrm_ros.bag.player import BagPlayer, message_class  # noqa: E402
from ilrm_ros.bag.writer import DEPTH_TOPIC, IMAGE_TOPIC, INFO_TOPIC, POSE_TOPIC  # noqa: E402
from ilrm_ros.cli import play  # noqa: E402

FRAMES, RATE = 20, 10.0  # a 1.9 s bag
TOPICS = {IMAGE_TOPIC: Image, INFO_TOPIC: CameraInfo, POSE_TOPIC: PoseStamped}


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("play") / "bag"
    write_synthetic_bag(path, frames=FRAMES, rate_hz=RATE, width=32, height=24, seed=5, pose_rate_hz=20.0)
    return path


@pytest.fixture
def context(ros_context):
    """The session-isolated rclpy context of test/conftest.py."""
    return ros_context


class Listener:
    """Subscribes (best effort, as a live pipeline would) and records (topic, arrival time, msg)."""

    def __init__(self, context, topics=TOPICS):
        self.node = rclpy.create_node("bag_listener", context=context)
        self.received: list[tuple[str, float, object]] = []
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)
        for topic, cls in topics.items():
            callback = lambda m, t=topic: self.received.append((t, time.monotonic(), m))
            self.node.create_subscription(cls, topic, callback, qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, done, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            self.executor.spin_once(timeout_sec=0.02)

    def of(self, topic):
        return [(t, m) for top, t, m in self.received if top == topic]

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _expected(bag):
    return {topic: [m.msg for m in iter_bag(bag, topics=[topic])] for topic in TOPICS}


def test_player_publishes_everything_in_order_and_on_time(bag, context):
    expected = _expected(bag)
    listener = Listener(context)
    pub_node = rclpy.create_node("bag_player", context=context)
    player = BagPlayer(pub_node, bag, rate=5.0, topics=list(TOPICS), wait_for_subscribers=10.0)
    try:
        assert player.topics == sorted(TOPICS)
        t0 = time.monotonic()
        player.start()
        total = sum(len(v) for v in expected.values())
        listener.spin_until(lambda: len(listener.received) >= total, timeout=20.0)
        assert player.wait(5.0)
        assert player.published == total
        for topic, msgs in expected.items():
            got = listener.of(topic)
            assert len(got) == len(msgs), topic
            assert [_stamp(m) for _, m in got] == [_stamp(m) for m in msgs]  # in order, none lost
        # Content: image pixels, camera info, pose values equal to the bag's.
        for (_, m), e in zip(listener.of(IMAGE_TOPIC), expected[IMAGE_TOPIC]):
            assert (m.encoding, m.width, m.height, m.header.frame_id) == ("rgb8", 32, 24, "camera_optical_frame")
            np.testing.assert_array_equal(np.frombuffer(bytes(m.data), np.uint8), np.asarray(e.data))
        for (_, m), e in zip(listener.of(INFO_TOPIC), expected[INFO_TOPIC]):
            np.testing.assert_array_equal(np.asarray(m.k), e.k)
            assert m.distortion_model == "plumb_bob"
        for (_, m), e in zip(listener.of(POSE_TOPIC), expected[POSE_TOPIC]):
            assert m.header.frame_id == "world"
            assert (m.pose.position.x, m.pose.orientation.w) == (e.pose.position.x, e.pose.orientation.w)
        # Timing: 5x speed -> image arrivals spaced like the stamps / 5.
        arrivals = np.array([t for t, _ in listener.of(IMAGE_TOPIC)])
        span = arrivals[-1] - arrivals[0]
        expected_span = (FRAMES - 1) / RATE / 5.0
        assert 0.8 * expected_span < span < expected_span + 0.5, span
        assert arrivals[0] - t0 < 2.0
    finally:
        player.destroy()
        pub_node.destroy_node()
        listener.close()


def test_loop_restarts_and_stop_ends_playback(bag, context):
    listener = Listener(context, {IMAGE_TOPIC: Image})
    pub_node = rclpy.create_node("bag_looper", context=context)
    player = BagPlayer(pub_node, bag, rate=10.0, loop=True, topics=[IMAGE_TOPIC], wait_for_subscribers=10.0)
    try:
        player.start()
        listener.spin_until(lambda: len(listener.received) >= 2 * FRAMES + 3, timeout=20.0)
        assert player.loops >= 2
        player.stop()
        assert player.wait(2.0)
        stamps = [_stamp(m) for _, m in listener.of(IMAGE_TOPIC)]
        assert len(stamps) >= 2 * FRAMES + 3
        assert stamps[FRAMES] == stamps[0] and stamps[2 * FRAMES] == stamps[0]  # time restarts each pass
        arrivals = [t for t, _ in listener.of(IMAGE_TOPIC)]
        gap = arrivals[FRAMES] - arrivals[FRAMES - 1]
        assert gap < 0.5  # the next pass starts right after the last message, not after a stall
    finally:
        player.destroy()
        pub_node.destroy_node()
        listener.close()


def test_play_cli_publishes_with_rate(bag, context):
    expected = _expected(bag)
    listener = Listener(context, {IMAGE_TOPIC: Image, POSE_TOPIC: PoseStamped, DEPTH_TOPIC: Image})
    parser = argparse.ArgumentParser()
    play.add_arguments(parser)
    assert "reliable" in parser.description and "100" in parser.description
    args = parser.parse_args(
        [str(bag), "--rate", "5", "--topics", IMAGE_TOPIC, POSE_TOPIC, "--wait-for-subscribers", "10"]
    )
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("rc", play.run(args)))
    worker.start()
    total = len(expected[IMAGE_TOPIC]) + len(expected[POSE_TOPIC])
    listener.spin_until(lambda: len(listener.received) >= total, timeout=30.0)
    worker.join(10.0)
    listener.spin_until(lambda: False, timeout=0.2)  # anything not asked for would show up now
    listener.close()
    assert result.get("rc") == 0
    assert [_stamp(m) for _, m in listener.of(IMAGE_TOPIC)] == [_stamp(m) for m in expected[IMAGE_TOPIC]]
    assert [_stamp(m) for _, m in listener.of(POSE_TOPIC)] == [_stamp(m) for m in expected[POSE_TOPIC]]
    assert not listener.of(DEPTH_TOPIC)  # --topics left it out


def test_play_cli_rejects_non_bags(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    play.add_arguments(parser)
    assert play.run(parser.parse_args([str(tmp_path), "--delay", "0"])) == 2
    assert "not a rosbag2" in capsys.readouterr().err


def test_message_class_lookup():
    assert message_class("sensor_msgs/msg/Image") is Image
    assert message_class("geometry_msgs/PoseStamped") is PoseStamped
    with pytest.raises(ValueError):
        message_class("no_such_pkg/msg/Thing")
