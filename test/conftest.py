"""Test-session setup: every session gets its own ROS domain and localhost-only discovery.

The domain id is reserved with a file lock, so parallel test runs on one machine
(CI, developers, helpers) never see each other's topics.
"""

from __future__ import annotations

import fcntl
import os
import tempfile

import pytest


def _reserve_domain_id() -> int:
    for domain in range(11, 101):
        handle = open(os.path.join(tempfile.gettempdir(), f"ilrm_ros_test_domain_{domain}.lock"), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _LOCKS.append(handle)  # held until the process exits
        return domain
    raise RuntimeError("no free ROS_DOMAIN_ID between 11 and 100 for this test session")


_LOCKS: list = []
os.environ["ROS_DOMAIN_ID"] = str(_reserve_domain_id())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")


@pytest.fixture
def ros_context():
    """A fresh, isolated rclpy context for one test; shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()
