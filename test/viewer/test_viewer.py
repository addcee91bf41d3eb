"""Viewer conversions, the viser server side of `SceneViewer` and `ilrm view` (no browser needed)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from scenes import plate_scene  # noqa: E402

from ilrm_ros.geometry import quat_normalize, quat_to_rotmat  # noqa: E402
from ilrm_ros.scene import save_ply  # noqa: E402
from ilrm_ros.viewer import (  # noqa: E402
    cam_to_world_from_viser,
    covariances,
    frame_view,
    splats_from_gaussians,
    stats_markdown,
    vertical_fov,
    viser_pose,
)

viser = pytest.importorskip("viser", reason="viser is not installed (pip install -r requirements.txt)")
from ilrm_ros.viewer import SceneViewer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _random_c2w(gen: torch.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quat_to_rotmat(quat_normalize(torch.randn(4, generator=gen, dtype=torch.float64))).numpy()
    T[:3, 3] = torch.randn(3, generator=gen, dtype=torch.float64).numpy()
    return T


def test_covariances_match_rotated_scales():
    gen = torch.Generator().manual_seed(0)
    q, s = quat_normalize(torch.randn(50, 4, generator=gen)), torch.rand(50, 3, generator=gen) + 0.1
    cov = covariances(q, s)
    R = quat_to_rotmat(q)
    expected = torch.stack([R[i] @ torch.diag(s[i] ** 2) @ R[i].T for i in range(50)])
    assert torch.allclose(cov, expected, atol=1e-6)
    assert torch.allclose(torch.linalg.eigvalsh(cov), (s**2).sort(-1).values, atol=1e-5)


def test_splats_keep_the_most_opaque_finite_gaussians():
    g = plate_scene((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), n=1000)
    g.opacities = torch.linspace(0.01, 0.99, 1000)
    g.means[5, 0] = float("nan")
    g.scales[999, 1] = float("inf")  # the most opaque one, but broken
    splats = splats_from_gaussians(g, max_splats=100)
    assert splats.total == 998 and len(splats) == 100
    assert np.isclose(splats.opacities.min(), g.opacities[899].item())  # 899..998 kept (999 is broken)
    assert splats.centers.dtype == np.float32 and splats.covariances.shape == (100, 3, 3)
    keep = torch.arange(899, 999)
    order = np.argsort(splats.opacities[:, 0])
    assert np.allclose(splats.centers[order], g.means[keep].numpy())
    assert np.allclose(splats.rgbs[order], g.colors()[keep].numpy())
    assert len(splats_from_gaussians(g, max_splats=5000)) == 998
    with pytest.raises(ValueError):
        splats_from_gaussians(g._map(lambda t: t[None]))  # batched


def test_poses_round_trip_in_viser_convention():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        T = _random_c2w(gen)
        wxyz, position = viser_pose(T)
        assert np.allclose(viser.transforms.SO3(wxyz).as_matrix(), T[:3, :3], atol=1e-9)  # viser's own reading
        assert np.allclose(cam_to_world_from_viser(wxyz, position), T, atol=1e-9)
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    assert math.isclose(vertical_fov(K, 240), 2 * math.atan(120 / 300))


def test_frame_view_looks_at_the_scene_from_above():
    centers = plate_scene((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)).means.numpy() + np.array([5.0, -2.0, 1.0])
    position, target = frame_view(centers, math.radians(75))
    assert np.allclose(target, [5.0, -2.0, 1.0], atol=0.1)
    assert position[2] > target[2] + 0.5 and 1.5 < np.linalg.norm(position - target) < 10


def test_stats_markdown_formats_nested_values():
    text = stats_markdown({"Gaussians": 51234, "online PSNR dB": 27.314, "latency": {"p50 ms": 0.41234}})
    assert "| Gaussians | 51,234 |" in text and "| online PSNR dB | 27.3 |" in text
    assert "| latency p50 ms | 0.412 |" in text


def test_scene_viewer_serves_and_replaces_splats():
    viewer = SceneViewer("127.0.0.1", 0, max_splats=1500, max_rate_hz=0)
    try:
        with NO_PROXY.open(viewer.url, timeout=10) as reply:
            assert reply.status == 200 and b"<html" in reply.read().lower()
        assert viewer._controls["save"].disabled and viewer._controls["render_pose"].disabled  # no callbacks
        viewer.on_save = lambda: "/tmp/x.ply"
        assert not viewer._controls["save"].disabled

        viewer.update_scene(plate_scene((1.0, 0.0, 0.0), (1.0, 0.0, 0.0), n=1000))
        assert viewer.flush(10) and viewer.last_error is None and viewer.shown == 1000
        assert (viewer._splats.rgbs[:, 0] == 255).all() and (viewer._splats.rgbs[:, 1:] == 0).all()
        first = viewer._splats
        viewer.update_scene(plate_scene((0.0, 1.0, 0.0), (0.0, 1.0, 0.0), n=3000))
        assert viewer.flush(10) and viewer.shown == 1500 and viewer._splats is first  # replaced in place, capped
        assert (viewer._splats.rgbs[:, 1] == 255).all() and "(the 1,500 most opaque shown)" in viewer._status.content

        gen = torch.Generator().manual_seed(2)
        K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])
        images = [np.full((120, 160, 3), 40 * i, np.uint8) for i in range(3)]
        frames = [(_random_c2w(gen), K, im) for im in images]
        viewer.set_keyframes(frames)
        handles = [h for _, h in viewer._keyframes]
        assert len(handles) == 3 and np.allclose(handles[1].position, frames[1][0][:3, 3])
        viewer.set_keyframes(frames[:2] + [(frames[2][0], K, images[0])])  # only the last one changed
        again = [h for _, h in viewer._keyframes]
        assert again[:2] == handles[:2] and again[2] is not handles[2]
        viewer.set_keyframes(frames[:1])
        assert len(viewer._keyframes) == 1

        viewer.set_live_camera(frames[0][0], K, 160, 120)
        viewer.set_live_camera(frames[1][0], K, 160, 120)
        assert np.allclose(viewer._live.position, frames[1][0][:3, 3])
        assert math.isclose(viewer._live.fov, vertical_fov(K, 120), rel_tol=1e-6)

        viewer._max.value = 2000  # as if typed in the panel: the current scene is sent again with the new cap
        assert viewer.flush(10) and viewer.max_splats == 2000 and viewer.shown == 2000

        def hammer(seed: int) -> None:  # the node's worker and timers call in from their own threads
            for i in range(10):
                viewer.update_scene(plate_scene((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), n=50 + i, seed=seed))
                viewer.set_keyframes(frames[: 1 + (i + seed) % 3])
                viewer.set_live_camera(frames[i % 3][0], K, 160, 120)
                viewer.set_stats({"i": i, "seed": seed})

        threads = [threading.Thread(target=hammer, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        viewer.update_scene(plate_scene((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), n=777))
        assert viewer.flush(10) and viewer.last_error is None and viewer.shown == 777

        viewer.update_scene(plate_scene((0.0, 1.0, 0.0), (0.0, 1.0, 0.0), n=10)._map(lambda t: t[:0]))
        assert viewer.flush(10) and viewer.shown == 0 and not viewer._splats.visible
        with pytest.raises(ValueError):
            viewer.set_scene_mode("octree")
    finally:
        viewer.close()
    viewer.close()  # idempotent
    with pytest.raises(urllib.error.URLError):
        NO_PROXY.open(viewer.url, timeout=2)
    # A node's timers can still call in while it shuts down: no message is queued to the stopped
    # server (viser warns about each one), and nothing raises.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viewer.set_keyframes(frames)
        viewer.set_live_camera(frames[0][0], K, 160, 120)
        viewer.set_stats({"after": "close"})
        viewer.set_scene_mode("map")
        viewer.set_paused(True)
        viewer.update_scene(plate_scene((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), n=5))


def test_ilrm_view_serves_a_saved_scene(tmp_path):
    ply = tmp_path / "scene.ply"
    save_ply(ply, plate_scene((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), n=500))
    cmd = [sys.executable, "-m", "ilrm_ros.cli", "view", str(ply), "--port", "0"]
    # A shell starts background jobs with SIGINT ignored, and children inherit that: give this one
    # the default Ctrl-C, so the test does not depend on how pytest was started.
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline, line = time.monotonic() + 60, ""
        while "viewing" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "500 Gaussians" in line, line
        url = line.split(" at ")[1].split()[0]
        with NO_PROXY.open(url, timeout=10) as reply:
            assert reply.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    bad = tmp_path / "bad.ply"
    bad.write_text("not a ply")
    result = subprocess.run([*cmd[:4], str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not a PLY" in result.stderr
