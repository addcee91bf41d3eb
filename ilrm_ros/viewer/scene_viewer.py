"""`SceneViewer`: the live scene as real Gaussian splats in a web browser, served by viser.

The node (or ``ilrm view``) pushes the world-frame scene, keyframes, the live camera and stats;
the browser page shows them and offers controls that call back into the node. Scene updates
are converted and sent on the viewer's own thread, newest first: ``update_scene`` only stores
a reference, so a slow browser never stalls the caller and skipped intermediate scenes are
never sent.
"""

from __future__ import annotations

import hashlib
import logging
import math
import socket
import threading
import time
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.viewer.convert import Splats, cam_to_world_from_viser, frame_view, splats_from_gaussians, viser_pose
from ilrm_ros.viewer.convert import vertical_fov as _vertical_fov

log = logging.getLogger(__name__)

SCENE_MODES = ("window", "map")
KEYFRAME_COLOR = (40, 110, 220)
LIVE_COLOR = (255, 140, 0)


def _format_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.3g}"
    return str(value)


def _flatten(stats: Mapping, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in stats.items():
        if isinstance(value, Mapping):
            rows += _flatten(value, f"{prefix}{key} ")
        else:
            rows.append((f"{prefix}{key}", _format_value(value)))
    return rows


def stats_markdown(stats: Mapping) -> str:
    """A two-column markdown table of a (possibly nested) stats mapping."""
    rows = _flatten(stats)
    if not rows:
        return "*no stats yet*"
    return "| | |\n|:--|--:|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _callback_property(name: str, doc: str) -> property:
    return property(lambda self: self._callbacks[name], lambda self, fn: self._set_callback(name, fn), doc=doc)


class SceneViewer:
    """A viser server showing one scene; thread-safe (update_* may be called from any thread).

    Controls call ``on_scene_mode(mode)``, ``on_pause(paused)``, ``on_save() -> path`` and
    ``on_render_pose(cam_to_world)`` (the browser camera as an OpenCV cam_to_world 4x4); each can be
    passed here or assigned later, and its control is disabled while it is None. ``host`` is
    loopback by default: binding to other interfaces exposes the scene and controls to the network.
    """

    on_scene_mode = _callback_property("scene_mode", "Called with 'window' or 'map' when the user picks a mode.")
    on_pause = _callback_property("pause", "Called with True/False when the user toggles 'Pause updates'.")
    on_save = _callback_property("save", "Called by 'Save scene'; returns the saved file's path.")
    on_render_pose = _callback_property("render_pose", "Called with the browser camera's OpenCV cam_to_world.")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        max_splats: int = 200_000,
        scene_mode: str = "window",
        paused: bool = False,
        on_scene_mode: Callable[[str], None] | None = None,
        on_pause: Callable[[bool], None] | None = None,
        on_save: Callable[[], str] | None = None,
        on_render_pose: Callable[[np.ndarray], None] | None = None,
        max_rate_hz: float = 5.0,
        frustum_scale: float = 0.15,
        thumbnail_width: int = 160,
        title: str = "ilrm_ros live scene",
        verbose: bool = False,
    ) -> None:
        import viser  # here, so that importing ilrm_ros.viewer needs no viser

        if scene_mode not in SCENE_MODES:
            raise ValueError(f"scene_mode must be one of {SCENE_MODES}, got {scene_mode!r}")
        self.max_splats = int(max_splats)
        self.min_interval = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.frustum_scale = float(frustum_scale)
        self.thumbnail_width = int(thumbnail_width)
        self.last_error: str | None = None
        self._callbacks: dict[str, Callable | None] = {}
        self._api = threading.RLock()  # serialises our viser calls and handle bookkeeping
        self._cond = threading.Condition()  # guards the pending scene and the sender's progress
        self._latest: Gaussians | None = None
        self._requested = self._sent = 0
        self._closed = False
        self._splats = None
        self._centers = np.zeros((0, 3), np.float32)
        self._shown = 0
        self._framed = False
        self._keyframes: list[tuple[tuple, object]] = []  # (key, frustum handle)
        self._live = None
        self._live_pose: np.ndarray | None = None
        self._live_fov = 1.0

        self._server = viser.ViserServer(host=host, port=port, label=title, verbose=verbose)
        self.host, self.port = host, self._server.get_port()
        try:
            self._build_panel(viser, scene_mode, paused)
            for name, fn in (("scene_mode", on_scene_mode), ("pause", on_pause), ("save", on_save),
                             ("render_pose", on_render_pose)):
                self._set_callback(name, fn)
        except BaseException:
            self._server.stop()
            raise
        self._thread = threading.Thread(target=self._send_loop, name="scene-viewer", daemon=True)
        self._thread.start()

    def _build_panel(self, viser, scene_mode: str, paused: bool) -> None:
        server = self._server
        server.scene.set_up_direction("+z")
        server.gui.configure_theme(control_layout="floating", control_width="medium", show_share_button=False)

        gui = server.gui
        with gui.add_folder("Scene"):
            self._status = gui.add_markdown("*waiting for the first scene*")
            self._mode = gui.add_dropdown("Scene mode", SCENE_MODES, initial_value=scene_mode,
                                          hint="window: the current views only; map: a bounded growing map")
            self._pause = gui.add_checkbox("Pause updates", paused, hint="freeze the scene (the node keeps its inputs)")
            self._max = gui.add_number("Max splats", self.max_splats, min=1000, max=5_000_000, step=1000,
                                       hint="the most opaque Gaussians sent to the browser")
            self._save = gui.add_button("Save scene", icon=viser.Icon.DEVICE_FLOPPY, hint="write the scene as a PLY")
            self._save_result = gui.add_markdown("")
        with gui.add_folder("View"):
            self._render = gui.add_button("Render from here", icon=viser.Icon.CAMERA,
                                          hint="ask the node to render the scene from this view")
            self._frame = gui.add_button("Frame scene", icon=viser.Icon.FOCUS_2)
            self._show_keyframes = gui.add_checkbox("Show keyframes", True)
            self._follow = gui.add_checkbox("Follow live camera", False, hint="move this view with the camera")
        with gui.add_folder("Stats"):
            self._stats = gui.add_markdown(stats_markdown({}))

        self._mode.on_update(self._mode_changed)
        self._pause.on_update(self._pause_changed)
        self._max.on_update(self._max_changed)
        self._save.on_click(self._save_clicked)
        self._render.on_click(self._render_clicked)
        self._frame.on_click(self._frame_clicked)
        self._show_keyframes.on_update(self._show_keyframes_changed)
        self._follow.on_update(lambda event: self._follow_live())

        self._controls = {"scene_mode": self._mode, "pause": self._pause, "save": self._save,
                          "render_pose": self._render}

    # ------------------------------------------------------------------ public API
    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def shown(self) -> int:
        """How many Gaussians the page shows now (after the cap)."""
        return self._shown

    @property
    def server(self):
        """The underlying ``viser.ViserServer`` (for extra scene content)."""
        return self._server

    def update_scene(self, gaussians: Gaussians) -> None:
        """Show these unbatched world-frame Gaussians instead of the current ones (returns at once).

        The viewer keeps a reference and converts it on its own thread: treat it as read-only.
        """
        if gaussians.batched:
            raise ValueError("update_scene takes unbatched Gaussians")
        with self._cond:
            self._latest = gaussians
            self._requested += 1
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the newest scene given to ``update_scene`` has been sent; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._sent >= self._requested or self._closed, timeout)

    def set_keyframes(self, keyframes: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Show the window's keyframes as frusta with thumbnails: (cam_to_world 4x4, K 3x3, uint8 HxWx3 RGB)."""
        new = []
        for cam_to_world, K, image in keyframes:
            c2w, K = np.asarray(cam_to_world, np.float64), np.asarray(K, np.float64)
            image = np.ascontiguousarray(image, dtype=np.uint8)
            key = (c2w.tobytes(), K.tobytes(), image.shape, hashlib.blake2b(image, digest_size=16).digest())
            new.append((key, c2w, K, image))
        with self._api:
            if self._closed:  # the server is gone: nothing to show it on
                return
            self._set_keyframes(new)

    def _set_keyframes(self, new: list) -> None:
        """Replace the keyframe frusta, keeping those that did not change (the caller holds ``_api``)."""
        with self._server.atomic():
            old, self._keyframes = self._keyframes, []
            for i, (key, c2w, K, image) in enumerate(new):
                if i < len(old) and old[i][0] == key:
                    self._keyframes.append(old[i])
                    continue
                if i < len(old):
                    old[i][1].remove()
                h, w = image.shape[:2]
                thumb_w = min(self.thumbnail_width, w)
                thumb = cv2.resize(image, (thumb_w, max(1, round(h * thumb_w / w))),
                                   interpolation=cv2.INTER_AREA)
                wxyz, position = viser_pose(c2w)
                handle = self._server.scene.add_camera_frustum(
                    f"/keyframes/{i}", fov=_vertical_fov(K, h), aspect=w / h, scale=self.frustum_scale,
                    thickness=0.01 * self.frustum_scale, color=KEYFRAME_COLOR, image=thumb, format="jpeg",
                    jpeg_quality=80, wxyz=wxyz, position=position, visible=self._show_keyframes.value,
                )
                self._keyframes.append((key, handle))
            for _, handle in old[len(new):]:
                handle.remove()

    def set_live_camera(self, cam_to_world: np.ndarray, K: np.ndarray, width: int, height: int) -> None:
        """Show the camera's current pose as a highlighted frustum (and move following browser views)."""
        wxyz, position = viser_pose(cam_to_world)
        fov, aspect = _vertical_fov(K, height), width / height
        with self._api:
            if self._closed:
                return
            self._live_pose, self._live_fov = np.asarray(cam_to_world, np.float64), fov
            if self._live is None:
                self._live = self._server.scene.add_camera_frustum(
                    "/live_camera", fov=fov, aspect=aspect, scale=1.5 * self.frustum_scale,
                    thickness=0.02 * self.frustum_scale, color=LIVE_COLOR, wxyz=wxyz, position=position,
                )
            else:
                with self._server.atomic():
                    self._live.fov, self._live.aspect = fov, aspect
                    self._live.wxyz, self._live.position = wxyz, position
            self._follow_live()

    def set_stats(self, stats: Mapping) -> None:
        """Show these stats (a possibly nested mapping of name -> value) in the panel's Stats table."""
        text = stats_markdown(stats)
        with self._api:
            if not self._closed:
                self._stats.content = text

    def set_scene_mode(self, mode: str) -> None:
        """Reflect the node's scene mode in the panel (does not call ``on_scene_mode``)."""
        if mode not in SCENE_MODES:
            raise ValueError(f"scene mode must be one of {SCENE_MODES}, got {mode!r}")
        with self._api:
            if not self._closed:
                self._mode.value = mode

    def set_paused(self, paused: bool) -> None:
        """Reflect the node's pause state in the panel (does not call ``on_pause``)."""
        with self._api:
            if not self._closed:
                self._pause.value = bool(paused)

    def close(self) -> None:
        """Stop the sender thread and the server (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10.0)
        with self._api:  # setters check _closed under this lock, so none queues to a stopped server
            self._server.stop()

    def __enter__(self) -> "SceneViewer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ sending scenes
    def _send_loop(self) -> None:
        last = -math.inf
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._requested > self._sent)
                if self._closed:
                    return
            time.sleep(max(0.0, last + self.min_interval - time.monotonic()))  # rate limit; newest wins
            with self._cond:
                gaussians, seq = self._latest, self._requested
            last = time.monotonic()
            try:
                self._push(splats_from_gaussians(gaussians, self.max_splats), time.monotonic() - last)
                self.last_error = None
            except Exception as err:  # keep serving; the next update may be fine
                self.last_error = f"{type(err).__name__}: {err}"
                log.exception("scene viewer: sending the scene failed")
            with self._cond:
                self._sent = max(self._sent, seq)
                self._cond.notify_all()

    def _push(self, splats: Splats, convert_s: float) -> None:
        with self._api:
            if len(splats) == 0:
                if self._splats is not None:
                    self._splats.visible = False
            elif self._splats is None:
                self._splats = self._server.scene.add_gaussian_splats(
                    "/scene", splats.centers, splats.covariances, splats.rgbs, splats.opacities)
            else:
                self._splats.set_gaussians(splats.centers, splats.covariances, splats.rgbs, splats.opacities)
                self._splats.visible = True
            self._centers, self._shown = splats.centers, len(splats)
            capped = f" (the {len(splats):,} most opaque shown)" if len(splats) < splats.total else ""
            self._status.content = (f"**{splats.total:,}** Gaussians{capped}  \n"
                                    f"updated {time.strftime('%H:%M:%S')}, converted in {1e3 * convert_s:.0f} ms")
            if len(splats) and not self._framed:
                self._framed = True
                self._frame_clients(list(self._server.get_clients().values()), initial=True)

    # ------------------------------------------------------------------ controls
    def _set_callback(self, name: str, fn: Callable | None) -> None:
        self._callbacks[name] = fn
        with self._api:
            self._controls[name].disabled = fn is None

    def _call(self, name: str, *args):
        fn = self._callbacks.get(name)
        return None if fn is None else fn(*args)

    def _mode_changed(self, event) -> None:
        if event.client is not None:  # programmatic sets (set_scene_mode) have no client
            self._call("scene_mode", self._mode.value)

    def _pause_changed(self, event) -> None:
        if event.client is not None:
            self._call("pause", bool(self._pause.value))

    def _max_changed(self, event) -> None:
        self.max_splats = int(self._max.value)
        with self._cond:
            if self._latest is not None:
                self._requested += 1  # re-send the current scene with the new cap
                self._cond.notify_all()

    def _save_clicked(self, event) -> None:
        self._save.disabled = True
        try:
            path = self._call("save")
            self._save_result.content = f"Saved `{path}`" if path else "*nothing saved*"
        except Exception as err:
            self._save_result.content = f"**Save failed:** {err}"
        finally:
            self._save.disabled = self._callbacks.get("save") is None

    def _render_clicked(self, event) -> None:
        if event.client is None:
            return
        try:
            wxyz, position = event.client.camera.wxyz, event.client.camera.position
        except AssertionError:  # viser: this page has not reported its camera yet
            return
        self._call("render_pose", cam_to_world_from_viser(wxyz, position))

    def _frame_clicked(self, event) -> None:
        if event.client is not None:
            self._frame_clients([event.client])

    def _frame_clients(self, clients: list, initial: bool = False) -> None:
        fov = float(self._server.initial_camera.fov)
        position, target = frame_view(self._centers, fov)
        if initial:  # new pages and "Reset View" start here
            self._server.initial_camera.position, self._server.initial_camera.look_at = position, target
        for client in clients:
            with client.atomic():
                client.camera.position, client.camera.look_at = position, target
                client.camera.up_direction = (0.0, 0.0, 1.0)

    def _show_keyframes_changed(self, event) -> None:
        with self._api:
            for _, handle in self._keyframes:
                handle.visible = bool(self._show_keyframes.value)

    def _follow_live(self) -> None:
        if not self._follow.value or self._live_pose is None:
            return
        wxyz, position = viser_pose(self._live_pose)
        for client in self._server.get_clients().values():
            with client.atomic():
                client.camera.wxyz, client.camera.position = wxyz, position
                client.camera.fov = self._live_fov
