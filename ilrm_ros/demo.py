"""The embedded demo: a synthetic bag played into the real node over the ROS graph.

1. `write_synthetic_bag` renders a robot driving through a procedural room into `OUT/input_bag`.
2. The real `ilrm_node` starts as its own process (as `ros2 run` would start it).
3. `BagPlayer` publishes the bag through rclpy with its original timing; a recorder node
   subscribes to the node's outputs.
4. `~/save_scene` writes the scene; the node is stopped with Ctrl-C (SIGINT) and must exit 0.
5. `OUT/contact_sheet.png` (input keyframes | rendered novel views | real frames | rendered depth),
   `OUT/report.json` and `OUT/scene.ply` are written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ilrm_ros.bag import iter_bag, write_synthetic_bag
from ilrm_ros.bag.writer import IMAGE_TOPIC, INFO_TOPIC, POSE_TOPIC
from ilrm_ros.io.convert import image_from_msg, pose_from_msg, stamp_ns

NODE_NAME = "ilrm"


def _start_node(out_dir: Path, device: str, checkpoint: str, log_path: Path, viewer: bool = False,
                params: Sequence[str] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ilrm_ros.node.main", "--ros-args",
           "-r", f"__node:={NODE_NAME}",
           "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}", "-r", f"pose:={POSE_TOPIC}",
           "-p", f"device:={device}",
           "-p", f"output_dir:={out_dir}", "-p", "input_qos:=reliable"]
    if checkpoint:
        cmd += ["-p", f"checkpoint:={checkpoint}"]
    if viewer:
        cmd += ["-p", "viewer.enabled:=true"]
    for param in params:
        cmd += ["-p", param]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


class NodeSession:
    """`ilrm_node` as its own process plus an in-process rclpy client node spinning in a thread.

    ``with NodeSession(...) as session:`` starts both; leaving stops the node with SIGINT (as Ctrl-C
    would) and records its exit code in ``session.exit_code``. Used by the demo and `ilrm bench --node`.
    """

    def __init__(self, out_dir: Path, device: str, checkpoint: str = "", viewer: bool = False,
                 client_name: str = "ilrm_client", params: Sequence[str] = ()) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.log_path = out_dir / "node.log"
        self.proc = _start_node(out_dir, device, checkpoint, self.log_path, viewer, params)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.client = Node(client_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.client)
        self.exit_code: int | None = None

    def __enter__(self) -> "NodeSession":
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        return self

    def wait_for_subscribers(self, publishers, timeout: float = 300.0) -> None:
        """Until the node subscribes to every publisher; fails early if the node exits."""
        deadline = time.monotonic() + timeout
        while not all(p.get_subscription_count() for p in publishers):
            if self.proc.poll() is not None:
                raise RuntimeError(f"ilrm_node exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ilrm_node did not subscribe within {timeout:.0f} s")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.exit_code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_code = self.proc.wait()
        self.executor.shutdown()
        self.client.destroy_node()
        self.context.try_shutdown()
        self._spinner.join(timeout=5)


class Recorder:
    """Subscribes to the node's outputs and keeps what the report and the contact sheet need."""

    def __init__(self, node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from sensor_msgs.msg import Image, PointCloud2

        from ilrm_ros.node.messages import latched_qos

        latched = latched_qos()
        self.renders: dict[int, np.ndarray] = {}
        self.depths: dict[int, np.ndarray] = {}
        self.keyframe_poses: list[np.ndarray] = []
        self.points = 0
        self.first_points_s: float | None = None
        self.diagnostics: dict[str, str] = {}
        self.lock = threading.Lock()
        base = f"/{NODE_NAME}"
        node.create_subscription(Image, f"{base}/render/image", self._render, 20)
        node.create_subscription(Image, f"{base}/render/depth", self._depth, 20)
        node.create_subscription(PointCloud2, f"{base}/points", self._points, latched)
        node.create_subscription(PoseArray, f"{base}/keyframes", self._keyframes, latched)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 10)

    def _render(self, msg) -> None:
        with self.lock:
            self.renders[stamp_ns(msg.header)] = image_from_msg(msg)

    def _depth(self, msg) -> None:
        depth = np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(msg.height, msg.width).copy()
        with self.lock:
            self.depths[stamp_ns(msg.header)] = depth

    def _points(self, msg) -> None:
        with self.lock:
            self.points += 1
            if self.first_points_s is None:
                self.first_points_s = time.monotonic()

    def _keyframes(self, msg) -> None:
        with self.lock:
            for pose in msg.poses:
                p = pose.position
                self.keyframe_poses.append(np.array([p.x, p.y, p.z]))

    def _diag(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith(": ilrm"):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}


def _read_bag(bag: Path):
    """Images by stamp and image-stamped poses of the synthetic bag (ground truth for the report)."""
    images, positions = {}, {}
    for m in iter_bag(bag, topics=[IMAGE_TOPIC, POSE_TOPIC]):
        if m.topic == IMAGE_TOPIC:
            images[stamp_ns(m.msg.header)] = image_from_msg(m.msg)
        else:
            stamp, c2w = pose_from_msg(m.msg, "PoseStamped")
            positions[stamp] = c2w[:3, 3]
    return images, positions


def _depth_to_rgb(depth: np.ndarray) -> np.ndarray:
    """Near = bright, far = dark, empty = black; a grey ramp tinted for legibility."""
    valid = depth > 0
    out = np.zeros((*depth.shape, 3), np.uint8)
    if valid.any():
        lo, hi = np.percentile(depth[valid], [2, 98])
        t = np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1)
        ramp = (1 - t)[..., None] * np.array([255, 220, 150]) + t[..., None] * np.array([40, 30, 90])
        out[valid] = ramp[valid].astype(np.uint8)
    return out


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str]) -> np.ndarray:
    """Rows of equally sized images, each row labelled on the left."""
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    label_w, pad = 150, 4
    sheet = Image.new("RGB", (label_w + cols * (w + pad), len(rows) * (h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (row, label) in enumerate(zip(rows, labels)):
        y = r * (h + pad)
        draw.text((6, y + h // 2 - 6), label, fill=(0, 0, 0))
        for c, img in enumerate(row):
            sheet.paste(Image.fromarray(img), (label_w + c * (w + pad), y))
    return np.asarray(sheet)


def run_demo(out_dir: str | Path = "runs/demo", frames: int = 150, rate_hz: float = 15.0, width: int = 160,
             height: int = 120, seed: int = 7, device: str = "auto", checkpoint: str = "",
             render_rate: float = 0.0, viewer: bool = True, hold: bool = False, model_aspect: float = 0.0) -> dict:
    """Run the demo end to end; returns the report (also written to ``OUT/report.json``).

    ``render_rate``: 0 renders each camera frame (the node's default), > 0 at that rate (timer).
    ``model_aspect``: the node's parameter; 0 = the camera's (the model sees the whole frame).
    """
    from PIL import Image
    from std_srvs.srv import Trigger

    from ilrm_ros.bag.player import BagPlayer
    from ilrm_ros.pipeline.metrics import psnr, ssim

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "input_bag"
    print(f"[1/5] synthetic bag: {frames} frames {width}x{height} at {rate_hz} Hz -> {bag}")
    write_synthetic_bag(bag, frames=frames, rate_hz=rate_hz, width=width, height=height, seed=seed,
                        overwrite=True)

    print("[2/5] starting ilrm_node (log: node.log)")
    params = ["render.trigger:=timer", f"render.rate_hz:={render_rate}"] if render_rate > 0 else []
    params.append(f"model_aspect:={model_aspect:.6f}")
    with NodeSession(out, device, checkpoint, viewer, "ilrm_demo", params) as session:
        client = session.client
        recorder = Recorder(client)
        player = BagPlayer(client, bag, topics=[IMAGE_TOPIC, INFO_TOPIC, POSE_TOPIC])
        session.wait_for_subscribers(player.publishers.values())
        urls = [ln.split("browser viewer at ")[-1].strip() for ln in session.log_path.read_text().splitlines()
                if "browser viewer at " in ln]
        if urls:
            print(f"      live 3D Gaussian viewer: {urls[-1]}")
        print(f"[3/5] playing the bag into the node ({frames / rate_hz:.0f} s of camera time)")
        start = time.monotonic()
        player.run()
        played_s = time.monotonic() - start
        time.sleep(2.0)  # the last refresh, renders and a diagnostics message
        print("[4/5] saving the scene through ~/save_scene")
        save = client.create_client(Trigger, f"/{NODE_NAME}/save_scene")
        if not save.wait_for_service(timeout_sec=30):
            raise RuntimeError("~/save_scene is not available")
        future = save.call_async(Trigger.Request())
        deadline = time.monotonic() + 60
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        saved = future.result() if future.done() else None
        if saved is None or not saved.success:
            raise RuntimeError(f"save_scene failed: {saved.message if saved else 'timeout'}")
        shutil.move(saved.message, out / "scene.ply")
        shutil.move(Path(saved.message).with_suffix(".json"), out / "scene_keyframes.json")
        if hold:
            print("      the node keeps serving (viewer, topics); Ctrl-C to stop and write the report")
            try:
                while session.proc.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    exit_code = session.exit_code

    print("[5/5] report and contact sheet")
    images, positions = _read_bag(bag)
    with recorder.lock:
        renders, depths = dict(recorder.renders), dict(recorder.depths)
        keyframe_positions = list(recorder.keyframe_poses)
        diagnostics = dict(recorder.diagnostics)
    stamps = np.array(sorted(positions))
    pos = np.stack([positions[s] for s in stamps])
    keyframe_stamps = {int(stamps[np.argmin(np.linalg.norm(pos - p, axis=1))]) for p in keyframe_positions}
    novel = sorted(s for s in renders if s in images and s not in keyframe_stamps)
    scores = [(psnr(renders[s] / 255.0, images[s] / 255.0), ssim(renders[s] / 255.0, images[s] / 255.0))
              for s in novel]
    keyframes = json.loads((out / "scene_keyframes.json").read_text())["keyframes"]
    picks = [novel[int(i)] for i in np.linspace(0, len(novel) - 1, min(5, len(novel)))] if novel else []
    rows = [[images[k["stamp_ns"]] for k in keyframes if k["stamp_ns"] in images],
            [renders[s] for s in picks], [images[s] for s in picks],
            [_depth_to_rgb(depths[s]) for s in picks if s in depths]]
    labels = ["input keyframes", "rendered novel views", "real frames", "rendered depth"]
    kept = [(r, label) for r, label in zip(rows, labels) if r]
    Image.fromarray(contact_sheet([r for r, _ in kept], [label for _, label in kept])).save(out / "contact_sheet.png")
    report = {
        "frames": frames, "rate_hz": rate_hz, "resolution": [width, height], "device": diagnostics.get("device"),
        "node_exit_code": exit_code, "played_seconds": played_s,
        "renders_received": len(renders), "render_rate_hz": len(renders) / max(played_s, 1e-9),
        "novel_views_scored": len(scores),
        "novel_psnr_mean": float(np.mean([s[0] for s in scores])) if scores else None,
        "novel_ssim_mean": float(np.mean([s[1] for s in scores])) if scores else None,
        "point_clouds_received": recorder.points,
        "diagnostics": diagnostics,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
