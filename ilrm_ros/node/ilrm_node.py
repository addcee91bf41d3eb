"""The ilrm node: a thin rclpy adapter over the ROS-free `Pipeline`.

Inputs (relative names, remap them): `image` (or `image/compressed`), `camera_info`, `pose`, and
`~/render_pose`. Outputs: `~/render/image`, `~/render/depth`, `~/render/camera_info`,
`~/render/psnr`, `~/points`, `~/keyframes`, `/diagnostics`. Services: `~/save_scene`, `~/reset`.
Parameters: the pipeline's (`ilrm_ros.pipeline.config.PARAMS`) plus the node's own (`NODE_PARAMS`).
"""

from __future__ import annotations

import json
import math
import threading
import time
import traceback
from collections import deque
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray, PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from ilrm_ros.checkpoints import resolve_checkpoint
from ilrm_ros.io import InputError
from ilrm_ros.io.convert import (
    camera_from_info,
    image_from_compressed,
    image_from_msg,
    parse_camera_from_pose,
    pose_from_msg,
    stamp_ns,
)
from ilrm_ros.model import load_model
from ilrm_ros.node.messages import (
    camera_info_msg,
    depth_msg,
    diagnostics_msg,
    image_msg,
    latched_qos,
    pointcloud_msg,
    pose_array_msg,
)
from ilrm_ros.pipeline.config import PARAMS, Param, PipelineConfig
from ilrm_ros.pipeline.pipeline import Pipeline, resolve_device
from ilrm_ros.render import warmup
from ilrm_ros.scene import POINT_FIELDS, pack_points, save_ply

POSE_MESSAGES = {"PoseStamped": PoseStamped, "PoseWithCovarianceStamped": PoseWithCovarianceStamped,
                 "Odometry": Odometry}

NODE_PARAMS: tuple[Param, ...] = (
    Param("world_frame", "world_frame", "world", "Frame of the poses, the point cloud and the keyframes.",
          None, None, True),
    Param("camera_frame", "camera_frame", "",
          "Optical frame id of the rendered views; empty = the input images' frame id.", None, None, False),
    Param("image_transport", "image_transport", "raw", "raw: subscribe to `image`; compressed: `image/compressed`.",
          None, ("raw", "compressed"), True),
    Param("input_qos", "input_qos", "sensor_data",
          "QoS of the inputs: sensor_data (best effort, depth 5) or reliable (depth 10).", None,
          ("sensor_data", "reliable"), True),
    Param("render.trigger", "render_trigger", "camera",
          "camera: render as soon as there is something new to show (each synced camera frame, scene refresh or "
          "~/render_pose message; a trigger arriving while one waits is merged, never queued); "
          "timer: render at render.rate_hz.", None, ("camera", "timer"), False),
    Param("render.rate_hz", "render_rate_hz", 30.0,
          "Renders per second with render.trigger timer; 0 disables rendering (either trigger).", (0.0, 240.0),
          None, False),
    Param("render.pose_source", "render_pose_source", "latest",
          "latest: the latest synced camera pose; topic: poses on ~/render_pose; chase: behind the latest pose.",
          None, ("latest", "topic", "chase"), False),
    Param("render.width", "render_width", 0, "Width of rendered views; 0 = the camera's.", (0, 8192), None, False),
    Param("render.height", "render_height", 0, "Height of rendered views; 0 = the camera's.", (0, 8192), None,
          False),
    Param("render.chase_distance", "render_chase_distance", 1.5, "Metres behind the camera for the chase view.",
          (0.0, 100.0), None, False),
    Param("render.chase_height", "render_chase_height", 0.5, "Metres above the camera for the chase view.",
          (-100.0, 100.0), None, False),
    Param("output_dir", "output_dir", "ilrm_scenes",
          "Folder where ~/save_scene writes (created if needed); file names are generated.", None, None, True),
    Param("diagnostics_rate_hz", "diagnostics_rate_hz", 1.0, "Rate of /diagnostics.", (0.1, 50.0), None, True),
    Param("viewer.enabled", "viewer_enabled", False,
          "Serve a live 3D Gaussian view of the scene in the browser (viser).", None, None, True),
    Param("viewer.host", "viewer_host", "127.0.0.1",
          "Interface the viewer binds to; loopback by default. 0.0.0.0 exposes scene and controls to the network.",
          None, None, True),
    Param("viewer.port", "viewer_port", 8080, "Viewer port (the next free one if taken).", (1, 65535), None, True),
)
ALL_PARAMS: tuple[Param, ...] = PARAMS + NODE_PARAMS


class StartupError(RuntimeError):
    """The node cannot start (missing/corrupt checkpoint, bad parameter): one clear line for the user."""


def _descriptor(p: Param) -> ParameterDescriptor:
    text = p.description + (f" One of: {', '.join(p.choices)}." if p.choices else "")
    d = ParameterDescriptor(description=text, read_only=p.read_only)
    if p.range is not None and not isinstance(p.default, (bool, list)):
        lo, hi = p.range
        if isinstance(p.default, int):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


def chase_pose(cam_to_world: np.ndarray, distance: float, height: float) -> np.ndarray:
    """A camera `distance` behind and `height` above (optical -y) the given one, same orientation."""
    offset = np.eye(4)
    offset[:3, 3] = [0.0, -height, -distance]
    return np.asarray(cam_to_world, dtype=np.float64) @ offset


class IlrmNode(Node):
    """Synced camera + pose in; keyframe windows refreshed by iLRM; renders, points and diagnostics out."""

    def __init__(self, **kwargs) -> None:
        super().__init__("ilrm", **kwargs)
        self.pipeline: Pipeline | None = None
        for p in ALL_PARAMS:
            try:
                self.declare_parameter(p.name, p.default, _descriptor(p))
            except (ParameterException, InvalidParameterTypeException) as err:
                raise StartupError(f"invalid parameter {p.name}: {err}") from None
        values = {p.name: self.get_parameter(p.name).value for p in ALL_PARAMS}
        try:
            config = PipelineConfig.from_dict({p.name: values[p.name] for p in PARAMS})
            self._camera_from_pose = parse_camera_from_pose(config.camera_from_pose_frame)
        except (ValueError, InputError) as err:
            raise StartupError(f"invalid parameter: {err}") from None
        self._node_params = {p.name: values[p.name] for p in NODE_PARAMS}
        self._world_frame = self._node_params["world_frame"]

        device = resolve_device(config.device)
        source = resolve_checkpoint(config.checkpoint)
        try:
            model = load_model(source, device=device)
        except Exception as err:  # noqa: BLE001 - any load failure is fatal, with one clear line
            raise StartupError(f"cannot load checkpoint {source!r}: {err}") from None
        self.get_logger().info(
            f"model {source} ({model.config.arch}, {model.config.num_views} views at "
            f"{model.config.image_size[0]}x{model.config.image_size[1]}) on {device}")
        if device.type == "cuda":
            self.get_logger().info("warming up the gsplat renderer (compiles CUDA kernels on first use) ...")
            self.get_logger().info(f"renderer ready after {warmup(device):.1f} s")

        self.pipeline = Pipeline(config, model, device, on_refresh=self._on_refresh, on_warning=self._warn,
                                 on_warmup=lambda g: pack_points(g, config.points_min_opacity,
                                                                 config.points_max_points))
        if self.pipeline.warmup_s is not None:
            self.get_logger().info(f"refresh path warmed up in {self.pipeline.warmup_s * 1e3:.0f} ms")
        self._device = device
        self._viewer = None
        self._render_pose: np.ndarray | None = None
        self._last_render_key: tuple | None = None
        self._keyframe_stamps: deque[int] = deque(maxlen=256)
        self._frame_id = ""
        self._psnr_novel: deque[float] = deque(maxlen=100)
        self._save_count = 0
        self._lock = threading.Lock()

        inputs = MutuallyExclusiveCallbackGroup()
        qos = qos_profile_sensor_data if self._node_params["input_qos"] == "sensor_data" else 10
        if self._node_params["image_transport"] == "compressed":
            self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, qos,
                                     callback_group=inputs)
        else:
            self.create_subscription(Image, "image", self._on_image, qos, callback_group=inputs)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos, callback_group=inputs)
        self.create_subscription(POSE_MESSAGES[config.pose_type], "pose", self._on_pose, qos, callback_group=inputs)
        self.create_subscription(PoseStamped, "~/render_pose", self._on_render_pose, 10, callback_group=inputs)

        latched = latched_qos()
        self._pub_image = self.create_publisher(Image, "~/render/image", 5)
        self._pub_depth = self.create_publisher(Image, "~/render/depth", 5)
        self._pub_info = self.create_publisher(CameraInfo, "~/render/camera_info", 5)
        self._pub_psnr = self.create_publisher(Float32, "~/render/psnr", 5)
        self._pub_points = self.create_publisher(PointCloud2, "~/points", latched)
        self._pub_keyframes = self.create_publisher(PoseArray, "~/keyframes", latched)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/save_scene", self._save_scene, callback_group=services)
        self.create_service(Trigger, "~/reset", self._reset, callback_group=services)

        # Renders run on their own thread: a slow one (the CPU renderer) never holds up the inputs.
        self._render_timer = None
        self._render_wanted = threading.Event()
        self._render_stop = False
        self._render_thread = threading.Thread(target=self._render_loop, name="ilrm-render", daemon=True)
        self._render_thread.start()
        self._configure_render()
        self.create_timer(1.0 / self._node_params["diagnostics_rate_hz"], self._publish_diagnostics,
                          callback_group=services)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._viewer = self._start_viewer() if self._node_params["viewer.enabled"] else None
        self._viewer_paused = False
        h, w = self.pipeline.resolution
        size = (f"the camera's aspect (short side {min(h, w)}, set at the first CameraInfo)"
                if config.model_aspect == 0 else f"{w}x{h} (width x height)")
        self.get_logger().info(f"ready: {self.pipeline.num_views}-view windows at {size}, "
                               f"scene mode {config.scene_mode}, pose type {config.pose_type}")

    def _start_viewer(self):
        from ilrm_ros.viewer import SceneViewer

        viewer = SceneViewer(self._node_params["viewer.host"], self._node_params["viewer.port"],
                             scene_mode=self.pipeline.config.scene_mode)
        viewer.on_scene_mode = lambda mode: self.set_parameters([Parameter("scene.mode", value=mode)])
        viewer.on_pause = lambda paused: setattr(self, "_viewer_paused", paused)
        viewer.on_save = self._save_for_viewer
        viewer.on_render_pose = self._render_pose_from_viewer
        self.get_logger().info(f"browser viewer at {viewer.url}")
        return viewer

    def _save_for_viewer(self) -> str:
        response = self._save_scene(None, Trigger.Response())
        if not response.success:
            raise RuntimeError(response.message)
        return response.message

    def _render_pose_from_viewer(self, cam_to_world: np.ndarray) -> None:
        """The browser camera becomes the render pose, as a `~/render_pose` message would."""
        self._render_pose = np.asarray(cam_to_world, dtype=np.float64)
        self.set_parameters([Parameter("render.pose_source", value="topic")])
        self._trigger_render()

    # ------------------------------------------------------------------ helpers
    def _warn(self, message: str) -> None:
        self.get_logger().warning(message)

    def _drop(self, reason: str, detail: str = "") -> None:
        """Count a dropped message and warn (throttled per reason) with what and why."""
        self.pipeline.stats.drop(reason)
        self.get_logger().warning(f"dropped input ({reason}): {detail or reason}", throttle_duration_sec=5.0)

    def _note_outcomes(self, outcomes) -> None:
        synced = False
        for outcome in outcomes:
            if outcome.status == "keyframe":
                self._keyframe_stamps.append(outcome.stamp_ns)
            elif outcome.status == "dropped" and outcome.reason not in ("no_camera_info",):
                self.get_logger().warning(f"dropped image ({outcome.reason})", throttle_duration_sec=5.0)
            synced = synced or outcome.status in ("keyframe", "synced")
        if synced and self._node_params["render.pose_source"] != "topic":
            self._trigger_render()

    def _trigger_render(self) -> None:
        """Ask the render thread for a render (render.trigger: camera); pending requests merge into one."""
        if self._node_params["render.trigger"] == "camera" and self._node_params["render.rate_hz"] > 0:
            self._render_wanted.set()

    def _render_loop(self) -> None:
        while True:
            self._render_wanted.wait()
            if self._render_stop or not self.context.ok():
                return
            self._render_wanted.clear()
            self._render_tick()

    # ------------------------------------------------------------------ inputs
    def _image_in(self, msg, decode) -> None:
        try:
            stamp = stamp_ns(msg.header)
            if stamp <= 0:
                raise InputError("zero_stamp", "image stamp is zero")
            rgb = decode(msg)
        except InputError as err:
            self._drop(err.reason, str(err))
            return
        if msg.header.frame_id:
            self._frame_id = msg.header.frame_id
        self._note_outcomes(self.pipeline.on_image(stamp, rgb))

    def _on_image(self, msg: Image) -> None:
        self._image_in(msg, image_from_msg)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._image_in(msg, image_from_compressed)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera = camera_from_info(msg)
        except InputError as err:
            self._drop(err.reason, f"camera_info: {err}")
            return
        if self.pipeline.on_camera_info(camera) and self.pipeline.config.model_aspect == 0:
            h, w = self.pipeline.resolution
            self.get_logger().info(f"model input {w}x{h} (width x height) for the {camera.width}x{camera.height} "
                                   "camera")

    def _on_pose(self, msg) -> None:
        try:
            stamp, c2w = pose_from_msg(msg, self.pipeline.config.pose_type, self._camera_from_pose)
        except InputError as err:
            self._drop(err.reason, f"pose: {err}")
            return
        self._note_outcomes(self.pipeline.on_pose(stamp, c2w))

    def _on_render_pose(self, msg: PoseStamped) -> None:
        try:
            _, c2w = pose_from_msg(msg, "PoseStamped", None)
        except InputError as err:
            self._drop(err.reason, f"render_pose: {err}")
            return
        self._render_pose = c2w
        if self._node_params["render.pose_source"] == "topic":
            self._trigger_render()

    # ------------------------------------------------------------------ outputs
    def _on_refresh(self, gaussians, version: int) -> None:
        """After each scene update (worker thread): publish the point cloud and the window's poses."""
        frames = list(self.pipeline.window.frames)
        # Stamped with the newest keyframe's time: the scene shows the world as of that image.
        stamp = max((f.stamp_ns for f in frames), default=self.get_clock().now().nanoseconds)
        start = time.perf_counter()
        points = self.pipeline.points()
        self._pub_points.publish(pointcloud_msg(points, POINT_FIELDS, stamp, self._world_frame))
        self.pipeline.stats.latency("points", time.perf_counter() - start)
        self._trigger_render()  # show the new scene now, not at the next camera frame
        self._pub_keyframes.publish(pose_array_msg([f.cam_to_world for f in frames], stamp, self._world_frame))
        if self._viewer is not None and not self._viewer_paused:
            self._viewer.update_scene(gaussians)
            self._viewer.set_keyframes([(f.cam_to_world, f.K, f.image) for f in frames])

    def _render_camera(self):
        """(stamp, cam_to_world, K (pixel centres at +0.5), width, height, real frame or None) or None."""
        frame = self.pipeline.latest_frame
        if frame is None:
            return None
        height, width = frame.image.shape[:2]
        source = self._node_params["render.pose_source"]
        if source == "latest":
            stamp, c2w, real = frame.stamp_ns, frame.cam_to_world, frame
        elif source == "topic":
            if self._render_pose is None:
                return None
            stamp, c2w, real = self.get_clock().now().nanoseconds, self._render_pose, None
        else:
            stamp, real = frame.stamp_ns, None
            c2w = chase_pose(frame.cam_to_world, self._node_params["render.chase_distance"],
                             self._node_params["render.chase_height"])
        K = np.array(frame.K, dtype=np.float64)
        out_w = self._node_params["render.width"] or width
        out_h = self._node_params["render.height"] or height
        if (out_w, out_h) != (width, height):
            K[0] *= out_w / width
            K[1] *= out_h / height
            real = None
        return stamp, c2w, K, out_w, out_h, real

    def _render_tick(self) -> None:
        try:
            self._render_once()
        except Exception:  # noqa: BLE001 - a failed render (e.g. CUDA out of memory) must not stop rendering
            self.pipeline.stats.count("render_errors")
            self.get_logger().error(f"render failed, skipped:\n{traceback.format_exc()}", throttle_duration_sec=30.0)

    def _render_once(self) -> None:
        camera = self._render_camera()
        _, version = self.pipeline.scene_snapshot()
        if camera is None or version == 0:
            return
        stamp, c2w, K, width, height, real = camera
        key = (stamp, version, tuple(np.round(np.asarray(c2w).ravel(), 9)))
        if key == self._last_render_key:
            return
        self._last_render_key = key
        start = time.perf_counter()
        result = self.pipeline.render(c2w, K, width, height)
        rgb = (result.rgb[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
        depth = result.depth[0].float().cpu().numpy()
        self.pipeline.stats.latency("render", time.perf_counter() - start)
        frame_id = self._node_params["camera_frame"] or self._frame_id or "camera_optical_frame"
        self._pub_image.publish(image_msg(rgb, stamp, frame_id))
        self._pub_depth.publish(depth_msg(depth, stamp, frame_id))
        K_ros = K.copy()
        K_ros[0, 2] -= 0.5
        K_ros[1, 2] -= 0.5
        self._pub_info.publish(camera_info_msg(K_ros, width, height, stamp, frame_id))
        if real is not None:
            err = np.mean((rgb.astype(np.float32) - real.image.astype(np.float32)) ** 2) / 255.0**2
            value = float(10.0 * math.log10(1.0 / max(err, 1e-10)))
            self._pub_psnr.publish(Float32(data=value))
            if stamp not in self._keyframe_stamps:
                self._psnr_novel.append(value)

    def _configure_render(self) -> None:
        """(Re)create the render timer: only with render.trigger timer and a positive rate."""
        if self._render_timer is not None:
            self.destroy_timer(self._render_timer)
            self._render_timer = None
        rate_hz = self._node_params["render.rate_hz"]
        if self._node_params["render.trigger"] == "timer" and rate_hz > 0:
            self._render_timer = self.create_timer(1.0 / rate_hz, self._render_wanted.set)

    def _publish_diagnostics(self) -> None:
        snap = self.pipeline.stats.snapshot()
        values: dict[str, object] = {}
        for topic, rate in snap.get("rates", {}).items():
            values[f"rate_{topic}_hz"] = f"{rate:.2f}"
        for reason, n in snap.get("drops", {}).items():
            values[f"dropped_{reason}"] = n
        counts = snap.get("counts", {})
        for name in ("synced", "keyframes", "refreshes", "refresh_superseded", "refresh_errors", "refresh_oom",
                     "refined", "refine_superseded", "refine_errors", "render_errors", "sync_resets"):
            values[name] = counts.get(name, 0)
        values["refine_steps"] = self.pipeline.refine_steps  # scene.refine_steps, -1 (auto) resolved
        for name, pct in snap.get("latency", {}).items():
            for q, v in pct.items():
                values[f"{name}_latency_{q}_ms"] = f"{v * 1e3:.1f}" if v == v else "nan"
        gaussians, version = self.pipeline.scene_snapshot()
        values["scene_gaussians"] = len(gaussians)
        values["scene_version"] = version
        values["device"] = str(self._device)
        h, w = self.pipeline.resolution
        values["model_input"] = f"{w}x{h}"  # width x height; follows the camera with model_aspect 0
        fast = self.pipeline.fast_forward
        values["model_fast_path"] = f"{fast.mode} {fast.shape[-1]}x{fast.shape[-2]}" if fast is not None else "none"
        if self._device.type == "cuda":
            values["gpu_memory_allocated_mb"] = f"{torch.cuda.memory_allocated(self._device) / 2**20:.0f}"
            values["gpu_memory_peak_mb"] = f"{torch.cuda.max_memory_allocated(self._device) / 2**20:.0f}"
        if self._psnr_novel:
            values["online_psnr_novel_db"] = f"{float(np.mean(list(self._psnr_novel))):.2f}"  # render thread appends
        errors = counts.get("refresh_errors", 0)
        level = DiagnosticStatus.WARN if errors or sum(snap.get("drops", {}).values()) else DiagnosticStatus.OK
        message = "ok" if version else "waiting for a full keyframe window"
        if errors:
            message = f"{errors} refresh errors"
        if self._viewer is not None:
            self._viewer.set_stats(values)
            frame = self.pipeline.latest_frame
            if frame is not None:
                self._viewer.set_live_camera(frame.cam_to_world, frame.K, frame.image.shape[1], frame.image.shape[0])
        self._pub_diag.publish(diagnostics_msg(f"{self.get_name()}: ilrm", self.get_fully_qualified_name(), level,
                                               message, values, self.get_clock().now().nanoseconds))

    # ------------------------------------------------------------------ services
    def _save_scene(self, request, response):
        gaussians, version = self.pipeline.scene_snapshot()
        if version == 0 or len(gaussians) == 0:
            response.success, response.message = False, "the scene is empty: nothing saved"
            return response
        out_dir = Path(self._node_params["output_dir"]).expanduser().resolve()
        self._save_count += 1
        name = f"scene_{datetime.now().strftime('%Y%m%d_%H%M%S')}_{self._save_count:03d}"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            ply = out_dir / f"{name}.ply"
            save_ply(ply, gaussians.to("cpu"))
            frames = list(self.pipeline.window.frames)
            keyframes = [{"stamp_ns": f.stamp_ns, "cam_to_world": np.asarray(f.cam_to_world).tolist(),
                          "K": np.asarray(f.K).tolist()} for f in frames]
            (out_dir / f"{name}.json").write_text(json.dumps(
                {"frame_id": self._world_frame, "scene_version": version, "num_gaussians": len(gaussians),
                 "keyframes": keyframes}, indent=1))
        except OSError as err:
            response.success, response.message = False, f"cannot write under {out_dir}: {err}"
            return response
        response.success, response.message = True, str(ply)
        self.get_logger().info(f"scene saved: {ply} ({len(gaussians)} Gaussians)")
        return response

    def _reset(self, request, response):
        self.pipeline.reset()
        self._last_render_key = None
        response.success, response.message = True, "buffers, keyframes and scene cleared"
        return response

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        pipeline_changes, node_changes = {}, {}
        known = {p.name: p for p in ALL_PARAMS}
        for param in params:
            spec = known.get(param.name)
            if spec is None:
                continue
            if spec.choices and param.value not in spec.choices:
                return SetParametersResult(successful=False,
                                           reason=f"{param.name} must be one of {', '.join(spec.choices)}")
            (pipeline_changes if spec in PARAMS else node_changes)[param.name] = param.value
        camera_from_pose = self._camera_from_pose
        if "camera_from_pose_frame" in pipeline_changes:  # parsed here: it converts the pose messages
            try:
                camera_from_pose = parse_camera_from_pose(pipeline_changes["camera_from_pose_frame"])
            except InputError as err:
                return SetParametersResult(successful=False, reason=f"camera_from_pose_frame: {err}")
        if pipeline_changes:
            try:
                self.pipeline.apply(pipeline_changes)
            except ValueError as err:
                return SetParametersResult(successful=False, reason=str(err))
        self._camera_from_pose = camera_from_pose
        self._node_params.update(node_changes)
        if {"render.rate_hz", "render.trigger"} & set(node_changes):
            self._configure_render()
        if any(name.startswith("render.") for name in node_changes):
            self._trigger_render()  # the new settings show at once
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        if getattr(self, "_render_thread", None) is not None:
            self._render_stop = True
            self._render_wanted.set()
            self._render_thread.join(timeout=10.0)
        if getattr(self, "_viewer", None) is not None:
            self._viewer.close()
        if self.pipeline is not None:
            self.pipeline.close(timeout=10.0)
        super().destroy_node()
