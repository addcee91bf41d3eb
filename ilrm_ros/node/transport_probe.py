"""Point-cloud transport between two processes, behind ``ilrm bench --transport``.

One process publishes PointCloud2 messages of N points (20 bytes each, as `~/points`; reliable and
transient-local, depth 1), the other receives them with Fast DDS's defaults, as RViz would. The
latency is the arrival time minus the header stamp, set just before ``publish`` (one host, one
clock): serialisation, transport and deserialisation. With ``profile`` the publisher starts with
the node's Fast DDS profile (:mod:`ilrm_ros.node.dds_profile`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

TOPIC = "/ilrm_transport_probe/points"


def _publish(node, points: int, clouds: int, period_s: float) -> None:
    import numpy as np
    from sensor_msgs.msg import PointCloud2

    from ilrm_ros.io.convert import stamp_fields
    from ilrm_ros.node.messages import latched_qos, pointcloud_msg
    from ilrm_ros.scene.pointcloud import POINT_DTYPE, POINT_FIELDS

    pub = node.create_publisher(PointCloud2, TOPIC, latched_qos())
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # let the reader's endpoints settle
    cloud = np.random.default_rng(0).random((points, 5), dtype=np.float32).view(POINT_DTYPE).reshape(-1)
    msg = pointcloud_msg(cloud, POINT_FIELDS, 0, "ilrm_transport_probe")  # the node's own message builder
    for _ in range(clouds + 1):  # the first one is latched for late joiners and is not scored
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_fields(time.time_ns()).values()
        pub.publish(msg)
        time.sleep(period_s)
    time.sleep(1.0)


def _subscribe(node, clouds: int, timeout_s: float) -> dict:
    import rclpy
    from sensor_msgs.msg import PointCloud2

    from ilrm_ros.io.convert import stamp_ns
    from ilrm_ros.node.messages import latched_qos

    latencies: list[float] = []

    def received(msg) -> None:
        latencies.append((time.time_ns() - stamp_ns(msg.header)) / 1e6)

    node.create_subscription(PointCloud2, TOPIC, received, latched_qos())
    deadline = time.monotonic() + timeout_s
    while len(latencies) < clouds + 1 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    return {"received": len(latencies), "latencies_ms": latencies[1:]}


def main(argv: list[str] | None = None) -> int:
    """``python -m ilrm_ros.node.transport_probe pub|sub POINTS CLOUDS [--profile]``; sub prints JSON."""
    argv = sys.argv[1:] if argv is None else argv
    role, points, clouds = argv[0], int(argv[1]), int(argv[2])
    if role == "pub" and "--profile" in argv:
        from ilrm_ros.node.dds_profile import apply_fastdds_profile

        apply_fastdds_profile()
    import rclpy

    rclpy.init()
    node = rclpy.create_node(f"ilrm_transport_{role}")
    try:
        if role == "pub":
            _publish(node, points, clouds, period_s=0.2)
        else:
            print(json.dumps(_subscribe(node, clouds, timeout_s=30.0 + 0.5 * clouds)), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def measure(points: int, clouds: int = 30, profile: bool = True) -> dict:
    """Transport latency p50/p95 (ms) of ``clouds`` clouds of ``points`` points, publisher with or
    without the node's profile; both processes inherit this one's environment (ROS_DOMAIN_ID, ...)."""
    import numpy as np

    cmd = [sys.executable, "-m", "ilrm_ros.node.transport_probe"]
    env = dict(os.environ)
    sub = subprocess.Popen(cmd + ["sub", str(points), str(clouds)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        subprocess.run(cmd + ["pub", str(points), str(clouds)] + (["--profile"] if profile else []),
                       env=env, check=True, timeout=120)
        out, _ = sub.communicate(timeout=120)
    finally:
        if sub.poll() is None:
            sub.kill()
    if not out.strip():
        raise RuntimeError(f"transport probe: the subscriber process printed nothing (exit code {sub.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    lat = result.pop("latencies_ms")
    pct = {f"p{q}": float(np.percentile(lat, q)) for q in (50, 95)} if lat else {}
    from ilrm_ros.scene.pointcloud import POINT_DTYPE

    return {"points": points, "bytes": POINT_DTYPE.itemsize * points, "profile": profile, "clouds": len(lat), **pct}


if __name__ == "__main__":
    sys.exit(main())
