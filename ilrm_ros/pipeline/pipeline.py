"""The pipeline both drivers (the rclpy node and ``ilrm replay``) feed: messages in, a live scene out.

Flow: ``on_camera_info`` sets the calibration; ``on_image`` pairs each image with the pose at its
stamp (``PoseBuffer``; an image newer than the latest pose waits up to ``sync.max_pose_age`` of
message time in a small pending queue, retried on every pose); synced frames go through the
``KeyframeSelector``; keyframes enter the ``Window``. Whenever a full window changes, a refresh is
requested: ``reconstruct`` runs on the window's frames (fitted to the model resolution) and the
``Scene`` is updated. With refinement (``scene.refine_steps``, CUDA) the refresh then fits those
Gaussians to the window's images and revises the scene with them: the model's scene is out at once,
the refined one follows, unless a newer window is waiting by then (it goes first).

Refreshes run on one worker thread, so message callbacks never wait for the model. There is one
slot for the next refresh: a newer window replaces a waiting one (latest wins, nothing queues).
``synchronous=True`` runs each refresh inline instead (deterministic: bag replay and tests).
On CUDA the constructor returns after one warm-up refresh of a made-up window on that thread, so
the first real keyframe window does not pay one-time costs.
A failing refresh keeps the last good scene; CUDA out-of-memory retries with fewer views (oldest
dropped), then at lower resolution (``fallback_plans``).

Thread safety: the ``on_*`` callbacks, ``reset``, ``render`` and ``scene_snapshot`` may be
called from any threads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.model import CompiledForward, fit_to_model, reconstruct
from ilrm_ros.model.reconstruct import model_device
from ilrm_ros.pipeline.camera import CameraModel, to_pixel_corner_convention
from ilrm_ros.pipeline.config import AUTO_REFINE_STEPS, PARAMS, PipelineConfig
from ilrm_ros.pipeline.keyframes import Frame, KeyframeSelector, Window
from ilrm_ros.pipeline.metrics import psnr, ssim
from ilrm_ros.pipeline.stats import Stats
from ilrm_ros.pipeline.sync import DropFrame, PoseBuffer
from ilrm_ros.render import RenderResult, render
from ilrm_ros.scene import Scene, pack_points
from ilrm_ros.scene.refine import refine_gaussians
from ilrm_ros.transfer import upload

log = logging.getLogger(__name__)

MAX_PENDING_IMAGES = 32
"""Hard bound on images waiting for a later pose (time already bounds it to ``max_pose_age``)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one image: ``keyframe``, ``synced``, ``pending`` (waiting for a pose) or ``dropped``.

    ``reason``: the keyframe decision (first, translation, rotation, no_motion, blurry) or the drop reason.
    """

    stamp_ns: int
    status: str
    reason: str = ""


@dataclass(frozen=True)
class _Synced:
    stamp_ns: int
    image: np.ndarray
    cam_to_world: np.ndarray
    camera: CameraModel


@dataclass(frozen=True)
class _Job:
    frames: tuple[Frame, ...]
    epoch: int
    requested: float = field(default_factory=time.perf_counter)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_finite(gaussians: Gaussians, source: str = "the model") -> None:
    """Raise ``FloatingPointError`` naming the fields with NaN/inf: in the scene they would stay
    there (map mode) and poison every render."""
    names = ("means", "quats", "scales", "opacities", "sh")
    bad = [n for n in names if not torch.isfinite(getattr(gaussians, n)).all()]
    if bad:
        raise FloatingPointError(f"{source} produced non-finite Gaussian {', '.join(bad)}")


def fallback_plans(num_views: int, size: tuple[int, int], patch: int) -> Iterator[tuple[int, tuple[int, int]]]:
    """(views, (H, W)) to try in turn after out-of-memory: all views, then one fewer down to
    ``min(2, num_views)``, then that many views at 3/4 of the resolution each time (multiples of
    ``patch``, not below 4 patches a side)."""
    views = num_views
    yield views, size
    while views > min(2, num_views):
        views -= 1
        yield views, size
    h, w = size
    while True:
        nh, nw = (max(4 * patch, int(s * 0.75) // patch * patch) for s in (h, w))
        if (nh, nw) == (h, w):
            return
        h, w = nh, nw
        yield views, (h, w)


def model_input_size(trained: Sequence[int], patch: int, short_side: int = 0, aspect: float = 1.0) -> tuple[int, int]:
    """(H, W) of the model input: short side ``short_side`` (0 = the shorter of the ``trained`` (H, W)),
    the other side ``aspect`` (W / H) times as long, rounded to a multiple of ``patch``."""
    if short_side and short_side % patch:
        raise ValueError(f"model_resolution {short_side} is not a multiple of the patch size {patch}")
    side = short_side or min(trained)
    if short_side == 0 and abs(aspect - 1.0) < 1e-9:
        return int(trained[0]), int(trained[1])  # the checkpoint's own shape
    longer = max(patch, round(side * max(aspect, 1.0 / aspect) / patch) * patch)
    return (side, longer) if aspect >= 1.0 else (longer, side)


class Pipeline:
    """Sync, keyframes, window and background refreshes of the scene from ``model``.

    ``on_refresh(gaussians, version)`` is called after each scene update (on the worker thread, or
    inline when synchronous): with refinement twice per refresh, the model's scene then the refined one.
    ``on_warning(message)`` receives warnings (default: this module's logger). Both must not block for long.

    Drop reasons counted in ``stats.drops``: no_camera_info, camera_size_mismatch (image vs
    CameraInfo size), no_pose, pose_too_old, pose_gap (see ``sync.DropFrame``), time_reset (waiting
    images discarded when time jumped back), and for poses nan_pose, pose_repeated, pose_out_of_order.
    """

    def __init__(
        self,
        config: PipelineConfig,
        model,
        device: str | torch.device | None = None,  # where frames are prepared; None = the model's device
        on_refresh: Callable[[Gaussians, int], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        synchronous: bool = False,
        on_warmup: Callable[[Gaussians], None] | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.device = resolve_device(device) if device is not None else model_device(model)
        self.on_refresh = on_refresh
        self.on_warning = on_warning
        self.synchronous = synchronous
        model_cfg = model.config
        self.num_views = config.num_views or model_cfg.num_views
        if 0.0 < config.model_aspect < 0.25:
            raise ValueError(f"model_aspect {config.model_aspect} is out of range: 0 (the camera's) or 0.25 to 4")
        # With model_aspect 0 the checkpoint's aspect until a CameraInfo gives the camera's.
        self.resolution = self._input_size(config.model_aspect or 1.0)
        self.stats = Stats()
        self.poses = PoseBuffer(config.sync_max_pose_age, config.sync_max_pose_gap, reset_jump_s=config.sync_reset_jump)
        self.selector = KeyframeSelector(config.keyframe_min_translation, config.keyframe_min_rotation_deg,
                                         config.keyframe_blur_threshold)
        self.window = Window(self.num_views, config.window_selection, config.window_history)
        self.scene = self._new_scene()
        self._lock = threading.RLock()  # sync, keyframe and window state
        self._scene_lock = threading.Lock()  # the scene's gaussians + version read together, and the epoch
        self._cond = threading.Condition()  # the refresh slot and the worker's state
        self._camera: CameraModel | None = None
        self._pending: deque[tuple[int, np.ndarray]] = deque()
        self._newest_image_ns: int | None = None
        self._latest: _Synced | None = None
        self._latest_frame: Frame | None = None
        self._epoch = 0
        self._job: _Job | None = None
        self._busy = False
        self._closing = False
        self._warned: Counter[str] = Counter()
        self._warn_lock = threading.Lock()
        self._reshape = False  # the worker is to rebuild the fixed-shape forward for a new input shape
        self.fast_forward = self._compile()
        self.on_warmup = on_warmup
        self.warmup_s: float | None = None
        self._worker: threading.Thread | None = None
        if synchronous:
            self._warm_up()
        else:
            ready = threading.Event()
            self._worker = threading.Thread(target=self._work, args=(ready,), name="ilrm-refresh", daemon=True)
            self._worker.start()
            ready.wait()

    def _input_size(self, aspect: float) -> tuple[int, int]:
        """(H, W) of the model input for an aspect (W / H), at model_resolution or the checkpoint's short side."""
        cfg = self.model.config
        return model_input_size(cfg.image_size, cfg.patch_size, self.config.model_resolution, aspect)

    @property
    def _fast_path_wanted(self) -> bool:
        """Whether a fixed-shape forward is to be built: CUDA and a model_compile other than none."""
        return self.device.type == "cuda" and self.config.model_compile != "none"

    def _compile(self):
        """A fixed-shape CUDA-graph / compiled forward for full windows at the model resolution, or None.

        Built at start-up (capture and compilation must never happen at the first frame), or with
        model_aspect 0 at the first CameraInfo, when the camera's aspect sets the shape; any failure falls
        back to the plain forward with a warning.
        """
        if not self._fast_path_wanted:
            if self.config.model_fused_blocks:
                self._warn("model_fused_blocks needs CUDA and model_compile other than none; "
                           "running the exact block maths")
            return None
        if self.config.model_aspect == 0 and self._camera is None:
            return None
        mode = self.config.model_compile
        try:
            h, w = self.resolution
            return CompiledForward(self.model, self.num_views, h, w, mode=mode,
                                   fused_blocks=self.config.model_fused_blocks)
        except Exception as err:  # noqa: BLE001 - a speed-up must never stop the pipeline
            self._warn(f"model_compile={mode} failed ({type(err).__name__}: {err}); using the plain forward")
            return None

    def _new_scene(self) -> Scene:
        """An empty scene as the config describes it (the live one, or the warm-up's throwaway)."""
        return Scene(mode=self.config.scene_mode, budget=self.config.scene_budget,
                     track_surface=self.config.points_visible_only)

    def _warm_up(self) -> None:
        """On CUDA, one refresh of a made-up window, on the thread that will run the refreshes.

        The first real refresh would otherwise pay one-time costs: lazily loaded CUDA kernels
        (resize, normalisation, scene fusion, point packing) and this thread's cuBLAS handle.
        Sets ``warmup_s``; a failure only warns (the first refresh then pays instead).
        """
        if self.device.type != "cuda":
            return
        start = time.perf_counter()
        try:
            h, w = self.resolution
            rng = np.random.default_rng(0)
            K = np.array([[w, 0.0, w / 2], [0.0, w, h / 2], [0.0, 0.0, 1.0]])
            frames = []
            for i in range(self.num_views):
                c2w = np.eye(4)
                c2w[0, 3] = 0.1 * i
                # Not the model's size, so the resize path runs too.
                image = rng.integers(0, 256, (h + 2 * self.model.config.patch_size, w, 3), dtype=np.uint8)
                frames.append(Frame(i, image, K, c2w))
            gaussians, K_t, c2w_t, size, images = self._reconstruct_once(tuple(frames), self.resolution)
            _check_finite(gaussians)
            gaussians = self._refine(gaussians, images, K_t, c2w_t, min(self.refine_steps, 1), timed=False)
            self._new_scene().update(gaussians, K_t, c2w_t, *size)
            if self.on_warmup is not None:
                self.on_warmup(gaussians)
            torch.cuda.synchronize(self.device)
        except Exception as err:  # noqa: BLE001 - a warm-up must never stop the pipeline
            self._warn(f"refresh warm-up failed ({type(err).__name__}: {err}); the first refresh will be slower")
            return
        self.warmup_s = time.perf_counter() - start

    # ------------------------------------------------------------------ warnings
    def _warn(self, message: str, key: str | None = None) -> None:
        """Emit a warning; with a ``key``, only its 1st, 10th, 100th, ... occurrence (repeats are counted)."""
        if key is not None:
            with self._warn_lock:
                self._warned[key] += 1
                n = self._warned[key]
            if n != 10 ** int(round(math.log10(n))):
                return
            if n > 1:
                message = f"{message} ({n} times so far)"
        (self.on_warning or log.warning)(message)

    # ------------------------------------------------------------------ inputs
    def on_camera_info(self, camera: CameraModel) -> bool:
        """Set the calibration; returns whether it changed (identical CameraInfo messages cost nothing)."""
        with self._lock:
            if camera == self._camera:
                return False
            if self._camera is not None:
                self._warn(f"camera calibration changed to {camera.width}x{camera.height} {camera.distortion_model}")
            self._camera = camera
            if self.config.model_aspect == 0:
                self._follow_camera_aspect(camera)
            self._check_aspect(camera)
            self.stats.count("camera_changes")
            return True

    def _follow_camera_aspect(self, camera: CameraModel) -> None:
        """model_aspect 0: the model input takes the camera's aspect; on CUDA the fixed-shape forward is
        (re)built for it, inline when synchronous, else by the worker before its next refresh."""
        size = self.resolution = self._input_size(camera.width / camera.height)
        built = self.fast_forward is not None and tuple(self.fast_forward.shape[-2:]) == size
        if built or not self._fast_path_wanted:
            return
        if self.synchronous:
            self._build_fixed_shape()
        else:
            with self._cond:
                self._reshape = True
                self._cond.notify_all()

    def _build_fixed_shape(self) -> None:
        """The fixed-shape forward for the current input shape, then one warm-up refresh through it."""
        self.fast_forward = None  # the old shape's graph is released before the new one is captured
        self.fast_forward = self._compile()
        self._warm_up()

    def _check_aspect(self, camera: CameraModel) -> None:
        """Warn when the model input's aspect leaves part of the camera frame out (renders lack Gaussians there)."""
        h, w = self.resolution
        seen = min(1.0, (w / h) / (camera.width / camera.height), (h / w) / (camera.height / camera.width))
        if seen < 0.95:
            self._warn(f"the model sees {seen:.0%} of each {camera.width}x{camera.height} frame (input {w}x{h}, "
                       f"centre-cropped): renders lack Gaussians outside it; set model_aspect: "
                       f"{camera.width / camera.height:.3f} to give the model the whole frame", key="model_aspect")

    @property
    def camera(self) -> CameraModel | None:
        return self._camera

    def on_image(self, stamp_ns: int, rgb: np.ndarray) -> list[Outcome]:
        """Feed one uint8 ``HxWx3`` RGB image; returns what happened to it and to any waiting image it expired."""
        stamp_ns = int(stamp_ns)
        self.stats.tick("image")
        with self._lock:
            out: list[Outcome] = []
            newest = self._newest_image_ns
            if newest is not None and newest - stamp_ns > self.poses.reset_jump_ns:
                self._reset_sync(f"image time jumped back {(newest - stamp_ns) / 1e9:.3f} s", out)
                newest = None
            self._newest_image_ns = stamp_ns if newest is None else max(newest, stamp_ns)
            camera = self._camera
            if camera is None:
                return out + [self._drop(stamp_ns, "no_camera_info")]
            if rgb.shape[:2] != (camera.height, camera.width) or rgb.ndim != 3 or rgb.shape[2] != 3:
                self._warn(f"image {rgb.shape} does not match the camera {camera.width}x{camera.height}",
                           key="camera_size_mismatch")
                return out + [self._drop(stamp_ns, "camera_size_mismatch")]
            # Waiting is bounded by the pose history (a pose stream lagging behind the images under load
            # must not lose frames); whether the poses around an image are close enough is lookup's call.
            while self._pending and self._pending[0][0] < stamp_ns - self.poses.max_age_ns:
                out.append(self._drop(self._pending.popleft()[0], "pose_gap" if len(self.poses) else "no_pose"))
            try:
                out.append(self._synced(stamp_ns, rgb, self.poses.lookup(stamp_ns), camera))
            except DropFrame as drop:
                if drop.reason not in ("pose_not_yet", "no_pose"):  # otherwise wait for a later pose
                    out.append(self._drop(stamp_ns, drop.reason))
                else:
                    if len(self._pending) >= MAX_PENDING_IMAGES:
                        out.append(self._drop(self._pending.popleft()[0], "pose_gap"))
                    self._pending.append((stamp_ns, rgb))
                    out.append(Outcome(stamp_ns, "pending"))
            return out

    def on_pose(self, stamp_ns: int, cam_to_world: np.ndarray) -> list[Outcome]:
        """Feed one camera pose (OpenCV cam_to_world 4x4); returns the outcomes of images it released."""
        stamp_ns = int(stamp_ns)
        self.stats.tick("pose")
        T = np.asarray(cam_to_world, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            self.stats.drop("nan_pose")
            return []
        with self._lock:
            out: list[Outcome] = []
            status = self.poses.add(stamp_ns, T)
            if status == "reset":
                self.stats.count("sync_resets")
                self._warn("pose time jumped back: sync buffers reset", key="pose_reset")
                self._drop_pending("time_reset", out)
            elif status != "added":
                self.stats.drop(f"pose_{status}")
                self._warn(f"pose stamp {stamp_ns} {status.replace('_', ' ')}: ignored", key=f"pose_{status}")
            camera = self._camera
            while self._pending and camera is not None:
                stamp, rgb = self._pending[0]
                try:
                    T_img = self.poses.lookup(stamp)
                except DropFrame as drop:
                    if drop.reason == "pose_not_yet":
                        break
                    self._pending.popleft()
                    out.append(self._drop(stamp, drop.reason))
                    continue
                self._pending.popleft()
                out.append(self._synced(stamp, rgb, T_img, camera))
            return out

    def _drop(self, stamp_ns: int, reason: str) -> Outcome:
        self.stats.drop(reason)
        return Outcome(stamp_ns, "dropped", reason)

    def _drop_pending(self, reason: str, out: list[Outcome]) -> None:
        while self._pending:
            out.append(self._drop(self._pending.popleft()[0], reason))

    def _reset_sync(self, why: str, out: list[Outcome]) -> None:
        self.poses.clear()
        self._drop_pending("time_reset", out)
        self.stats.count("sync_resets")
        self._warn(f"{why}: sync buffers reset", key="image_reset")

    def _synced(self, stamp_ns: int, rgb: np.ndarray, cam_to_world: np.ndarray, camera: CameraModel) -> Outcome:
        """A frame paired with its pose: keep it as the latest, and make it a keyframe if it qualifies."""
        self.stats.count("synced")
        synced = _Synced(stamp_ns, rgb, cam_to_world, camera)
        self._latest, self._latest_frame = synced, None
        decision = self.selector.consider(cam_to_world, rgb)
        if not decision.keyframe:
            return Outcome(stamp_ns, "synced", decision.reason)
        self.stats.count("keyframes")
        if self.window.add(self._frame(synced)) and self.window.full:
            self._request_refresh(_Job(tuple(self.window.frames), self._epoch))
        return Outcome(stamp_ns, "keyframe", decision.reason)

    def _frame(self, synced: _Synced) -> Frame:
        """The undistorted view (intrinsics in the model's pixel convention) of a synced image."""
        if self.config.undistort:
            image, K = synced.camera.undistort(synced.image)
        else:
            image, K = synced.image, synced.camera.K
        return Frame(synced.stamp_ns, image, to_pixel_corner_convention(K), synced.cam_to_world)

    @property
    def latest_frame(self) -> Frame | None:
        """The most recent synced frame, undistorted (computed on first use)."""
        with self._lock:
            if self._latest is not None and self._latest_frame is None:
                self._latest_frame = self._frame(self._latest)
            return self._latest_frame

    # ------------------------------------------------------------------ refreshes
    def _request_refresh(self, job: _Job) -> None:
        if self.synchronous:
            self._run(job)
            return
        with self._cond:
            if self._job is not None:
                self.stats.count("refresh_superseded")
            self._job = job
            self._cond.notify_all()

    @property
    def pending_refreshes(self) -> int:
        """Refreshes waiting for the worker: 0 or 1 (latest wins)."""
        with self._cond:
            return int(self._job is not None)

    @property
    def refresh_busy(self) -> bool:
        with self._cond:
            return self._busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no refresh is waiting or running; returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None and not self._busy, timeout)

    def _work(self, ready: threading.Event) -> None:
        try:
            self._warm_up()
        finally:
            ready.set()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._reshape or self._closing)
                if self._closing:
                    return
                reshape, self._reshape, self._busy = self._reshape, False, True
                if not reshape:  # a rebuild first; the waiting refresh then runs through it
                    job, self._job = self._job, None
            try:
                if reshape:
                    self._build_fixed_shape()
                else:
                    self._run(job)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, job: _Job) -> None:
        """One refresh: reconstruct the window, update the scene, notify; then, with refinement, refine
        the window's Gaussians, revise the scene with them and notify again. Never raises."""
        start = time.perf_counter()
        self.stats.latency("refresh_wait", start - job.requested)
        try:
            gaussians, K, c2w, (h, w), images = self._reconstruct(job.frames)
            _check_finite(gaussians)
            landed = self._land(job, gaussians, K, c2w, h, w)
        except Exception as exc:  # noqa: BLE001 - a failed refresh must not kill the worker
            self.stats.count("refresh_errors")
            self._warn(f"refresh failed, keeping the previous scene:\n{traceback.format_exc()}",
                       key=f"refresh_error:{type(exc).__name__}:{exc}")
            return
        if not landed:
            return
        self.stats.latency("refresh", time.perf_counter() - start)
        self.stats.count("refreshes")
        self._notify(*landed)
        refined = self._refine(gaussians, images, K, c2w, self.refine_steps, should_stop=self._refine_superseded)
        if refined is gaussians:
            return
        if self._refine_superseded():  # a newer window waits: it goes first, this refinement is dropped
            self.stats.count("refine_superseded")
            return
        try:
            landed = self._land(job, refined, K, c2w, h, w, revise=True)
        except Exception as exc:  # noqa: BLE001 - the model's scene stays
            self.stats.count("refine_errors")
            self._warn(f"refined scene update failed ({type(exc).__name__}: {exc}); keeping the model's scene",
                       key=f"refine_error:{type(exc).__name__}")
            return
        if landed:
            self.stats.count("refined")
            self._notify(*landed)

    def _land(self, job: _Job, g: Gaussians, K: torch.Tensor, c2w: torch.Tensor, h: int, w: int,
              revise: bool = False) -> tuple[Gaussians, int] | None:
        """Put ``g`` into the scene (``revise``: in place of the previous update, its unrefined self);
        the new snapshot and version, or None when a reset() came while the refresh ran."""
        with self._scene_lock:
            if job.epoch != self._epoch:
                return None
            self.scene.update(g, K, c2w, h, w, revise=revise)
            return self.scene.gaussians, self.scene.version

    def _notify(self, snapshot: Gaussians, version: int) -> None:
        if self.on_refresh is not None:
            try:
                self.on_refresh(snapshot, version)
            except Exception:  # noqa: BLE001
                self._warn(f"on_refresh callback failed:\n{traceback.format_exc()}", key="on_refresh_error")

    def _refine_superseded(self) -> bool:
        """A newer window waits for the worker (or the pipeline closes): refinement should yield."""
        return self._job is not None or self._closing

    @property
    def refine_steps(self) -> int:
        """Refinement steps per refresh: ``scene.refine_steps``, with -1 (auto) resolved for this device."""
        steps = self.config.scene_refine_steps
        if steps < 0:
            return AUTO_REFINE_STEPS if self.device.type == "cuda" else 0
        return steps

    def _reconstruct(self, frames: tuple[Frame, ...]):
        """Gaussians (unbatched, world frame) of the window, falling back on CUDA out-of-memory."""
        plans = fallback_plans(len(frames), self.resolution, self.model.config.patch_size)
        first = views, size = next(plans)
        while True:
            try:
                result = self._reconstruct_once(frames[len(frames) - views :], size)
                break
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.stats.count("refresh_oom")
                views, size = next(plans, (None, None))
                if views is None:
                    raise
        if (views, size) != first:
            self._warn(f"CUDA out of memory with {first[0]} views at {first[1][0]}x{first[1][1]}: "
                       f"reconstructed with {views} views at {size[0]}x{size[1]}", key="oom")
        return result

    def _reconstruct_once(self, frames: tuple[Frame, ...], size: tuple[int, int]):
        images, intrinsics = [], []
        for f in frames:
            image = upload(torch.from_numpy(np.ascontiguousarray(f.image)), self.device).permute(2, 0, 1)
            fitted, K = fit_to_model(image, torch.as_tensor(f.K, dtype=torch.float32, device=self.device), size)
            images.append(fitted)
            intrinsics.append(K)
        images_t = torch.stack(images)[None]
        K_t = torch.stack(intrinsics)[None]
        c2w_t = torch.as_tensor(np.stack([f.cam_to_world for f in frames]), dtype=torch.float32, device=self.device)
        fast = self.fast_forward
        fixed_shape = fast is not None and fast.shape[1:] == (len(frames), *size)
        model = fast if fixed_shape else self.model
        with torch.inference_mode():
            gaussians = reconstruct(model, images_t, K_t, c2w_t[None]).batch(0)
        return gaussians, K_t[0], c2w_t, size, images_t[0]

    def _refine(self, gaussians: Gaussians, images: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
                steps: int, timed: bool = True, should_stop: Callable[[], bool] | None = None) -> Gaussians:
        """``gaussians`` fitted to the window's images for ``steps`` steps (``scene.refine_steps``), or
        ``gaussians`` itself when there is nothing to do.

        CUDA only; on the CPU, or when a refinement fails or gives non-finite values, the model's
        Gaussians are kept (with a warning). ``timed``: record the ``refine`` latency (not the warm-up's).
        """
        if steps <= 0:
            return gaussians
        if self.device.type != "cuda":
            self._warn("scene.refine_steps needs CUDA (the CPU renderer's backward pass would need tens of GB): "
                       "refreshes are not refined", key="refine_cpu")
            return gaussians
        start = time.perf_counter()
        try:
            images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
            refined = refine_gaussians(gaussians, images, K, c2w, steps, should_stop=should_stop)
            _check_finite(refined, source="the refinement")
        except Exception as exc:  # noqa: BLE001 - keep the model's scene rather than lose the refresh
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            self.stats.count("refine_errors")
            self._warn(f"refinement failed, using the model's Gaussians ({type(exc).__name__}: {exc})",
                       key=f"refine_error:{type(exc).__name__}")
            return gaussians
        if timed:
            self.stats.latency("refine", time.perf_counter() - start)
        return refined

    # ------------------------------------------------------------------ outputs
    def scene_snapshot(self) -> tuple[Gaussians, int]:
        """The current scene's Gaussians (unbatched, world frame) and its version (bumped by every update)."""
        with self._scene_lock:
            return self.scene.gaussians, self.scene.version

    def points(self) -> np.ndarray:
        """The current scene as point-cloud records (``POINT_DTYPE``), filtered as ``points.*`` say."""
        with self._scene_lock:
            cloud = self.scene.cloud
        return pack_points(cloud, self.config.points_min_opacity, self.config.points_max_points)

    def render(self, cam_to_world, K, width: int, height: int, background=None) -> RenderResult:
        """Render the current scene from one camera (K with pixel centres at x + 0.5, see ``camera``)."""
        gaussians, _ = self.scene_snapshot()
        bg = self.config.render_background if background is None else background
        c2w = torch.as_tensor(np.asarray(cam_to_world, dtype=np.float64), device=gaussians.means.device)
        K_t = torch.as_tensor(np.asarray(K, dtype=np.float32), device=gaussians.means.device)
        return render(gaussians, K_t, c2w, int(width), int(height), background=bg)

    def evaluate_latest(self, full_frame: bool = False) -> dict | None:
        """PSNR/SSIM of the scene rendered at the latest synced frame vs that frame.

        At the model's input size (the part of the frame the model sees), or with ``full_frame`` at the
        camera's own size, as the node publishes and scores it on ``~/render/psnr``; then the render
        (``rgb``, float ``H x W x 3`` on the CPU) is returned too. None before the first scene or
        synced frame. The latest frame may be one of the window's views (then it measures fit, not
        novel-view quality).
        """
        frame = self.latest_frame
        gaussians, version = self.scene_snapshot()
        if frame is None or version == 0 or len(gaussians) == 0:
            return None
        image = torch.from_numpy(np.ascontiguousarray(frame.image))
        if full_frame:
            (h, w), K = image.shape[:2], frame.K
            target = image.float() / 255.0
        else:
            (h, w), K_t = self.resolution, torch.as_tensor(frame.K, dtype=torch.float32)
            target, K_t = fit_to_model(image.permute(2, 0, 1), K_t, self.resolution)
            target, K = target.permute(1, 2, 0), K_t.numpy()
        rendered = self.render(frame.cam_to_world, K, w, h).rgb[0].float().cpu()
        scores = {"psnr": psnr(rendered, target), "ssim": ssim(rendered, target), "stamp_ns": frame.stamp_ns,
                  "scene_version": version}
        if full_frame:
            scores["rgb"] = rendered
        return scores

    # ------------------------------------------------------------------ control
    def apply(self, changes: dict) -> PipelineConfig:
        """Change parameters at run time (dotted names); read-only ones raise ``ValueError``."""
        current = self.config.to_dict()
        merged = PipelineConfig.from_dict({**current, **changes})
        fixed = sorted(p.name for p in PARAMS if p.read_only and getattr(merged, p.field) != current[p.name])
        if fixed:
            raise ValueError(f"read-only parameter(s) cannot change at run time: {', '.join(fixed)}")
        with self._lock:
            self.config = merged
            self.poses.max_gap_ns = int(merged.sync_max_pose_gap * 1e9)
            self.poses.max_age_ns = int(merged.sync_max_pose_age * 1e9)
            self.poses.reset_jump_ns = int(merged.sync_reset_jump * 1e9)
            self.selector.min_translation = merged.keyframe_min_translation
            self.selector.min_rotation_deg = merged.keyframe_min_rotation_deg
            self.selector.blur_threshold = merged.keyframe_blur_threshold
        with self._scene_lock:
            self.scene.mode = merged.scene_mode  # window <-> map from the next refresh on
        return merged

    def reset(self) -> None:
        """Forget poses, waiting images, keyframes, the window and the scene (a refresh in flight is discarded)."""
        with self._lock:
            self.poses.clear()
            self._pending.clear()
            self._newest_image_ns = None
            self.selector.reset()
            self.window.clear()
            self._latest, self._latest_frame = None, None
            with self._cond:
                self._job = None
            with self._scene_lock:
                self._epoch += 1
                self.scene.clear()
            self.stats.count("resets")

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker (after the refresh in progress, if any) and join it."""
        with self._cond:
            self._closing = True
            self._job = None
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
