"""Publish a rosbag2's messages through rclpy with their recorded timing (``ros2 bag play``-like).

The stored CDR bytes are published as they are (``Publisher.publish(bytes)``), so no message
is converted. Publishers use reliable, volatile QoS with a keep-last depth (100 by default);
best-effort subscribers are compatible with them.
"""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Iterable

from .reader import bag_summary, iter_bag

DEFAULT_QOS_DEPTH = 100


def message_class(msgtype: str):
    """The rclpy message class for a type name like ``sensor_msgs/msg/Image``."""
    try:
        from rosidl_runtime_py.utilities import get_message  # type: ignore[import-not-found]

        return get_message(msgtype)
    except ImportError:
        pass
    parts = msgtype.split("/")
    if len(parts) == 2:  # "pkg/Name"
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise ValueError(f"not a message type name: {msgtype!r}")
    pkg, sub, name = parts
    try:
        return getattr(importlib.import_module(f"{pkg}.{sub}"), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"message type {msgtype!r} is not available to rclpy: {err}") from err


class BagPlayer:
    """Plays a bag on an rclpy node: ``start()`` in a thread (or ``run()`` blocking), ``stop()``.

    Args:
        node: the rclpy node that owns the publishers (it needs no spinning).
        path: the rosbag2 directory.
        rate: playback speed factor (2.0 = twice as fast).
        loop: start again from the beginning (time restarts) after the last message.
        topics: play only these topics (default: all whose type rclpy knows).
        qos_depth: keep-last depth of the reliable publishers.
        wait_for_subscribers: before the first message, wait up to this many seconds until
            every publisher is matched by at least one subscription (0: don't wait).
        delay: seconds to sleep before playing (after the wait above).
    """

    def __init__(
        self,
        node,
        path: str | Path,
        rate: float = 1.0,
        loop: bool = False,
        topics: Iterable[str] | None = None,
        qos_depth: int = DEFAULT_QOS_DEPTH,
        wait_for_subscribers: float = 0.0,
        delay: float = 0.0,
    ) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        if rate <= 0:
            raise ValueError("rate must be positive")
        self.node = node
        self.path = Path(path)
        self.rate = float(rate)
        self.loop = loop
        self.wait_for_subscribers = wait_for_subscribers
        self.delay = delay
        summary = bag_summary(self.path)
        wanted = set(summary) if topics is None else set(topics)
        missing = wanted - set(summary)
        if missing:
            raise ValueError(f"topics not in {self.path}: {sorted(missing)}")
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=qos_depth,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
        self.publishers = {}
        for topic in sorted(wanted):
            msgtype = summary[topic][0]
            try:
                cls = message_class(msgtype)
            except ValueError as err:
                if topics is not None:
                    raise
                node.get_logger().warning(f"skipping {topic}: {err}")
                continue
            self.publishers[topic] = node.create_publisher(cls, topic, qos)
        self.on_publish = None  # optional callback(topic, bag stamp ns) right after each publish (latency probes)
        self.published = 0  # messages published so far (all loops)
        self.loops = 0  # completed passes over the bag
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def topics(self) -> list[str]:
        return sorted(self.publishers)

    def run(self) -> None:
        """Play (blocking) until the bag ends (no loop) or :meth:`stop` is called."""
        try:
            self._wait_for_subscribers()
            if self.delay > 0 and self._stop.wait(self.delay):
                return
            while not self._stop.is_set():
                self._play_once()
                if self._stop.is_set():
                    break
                self.loops += 1
                if not self.loop:
                    break
        except BaseException as err:  # surfaced to start()/wait() callers
            self.error = err
            raise

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.wait_for_subscribers
        while time.monotonic() < deadline and not self._stop.is_set():
            if all(p.get_subscription_count() > 0 for p in self.publishers.values()):
                return
            time.sleep(0.01)

    def _play_once(self) -> None:
        start_wall = None
        start_stamp = 0
        for m in iter_bag(self.path, topics=self.publishers, deserialize=False):
            if start_wall is None:
                start_wall, start_stamp = time.monotonic(), m.stamp_ns
            due = start_wall + (m.stamp_ns - start_stamp) * 1e-9 / self.rate
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            if self._stop.is_set():
                return
            self.publishers[m.topic].publish(m.rawdata)
            self.published += 1
            if self.on_publish is not None:
                self.on_publish(m.topic, m.stamp_ns)

    def start(self) -> "BagPlayer":
        """Play in a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run_quietly, name="ilrm-bag-player", daemon=True)
        self._thread.start()
        return self

    def _run_quietly(self) -> None:
        try:
            self.run()
        except BaseException:  # kept in self.error
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background playback to end; True if it has ended. Re-raises its error."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop playing and join the thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def destroy(self) -> None:
        """Stop and destroy the publishers."""
        self.stop()
        for pub in self.publishers.values():
            self.node.destroy_publisher(pub)
        self.publishers.clear()
