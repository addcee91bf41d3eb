"""Regenerate docs/images/viewer_scene.png and viewer_panel.png with the real viewer in headless Chromium.

    .venv/bin/python test/viewer/make_docs_images.py [--out docs/images]

The scene is a synthetic room turned into Gaussians straight from its exact depth (one flat
Gaussian per pixel of 14 robot views; no model needed), with the views as keyframes.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from cdp_browser import HeadlessChromium, wait_for  # noqa: E402

from ilrm_ros.gaussians import SH_C0, Gaussians  # noqa: E402
from ilrm_ros.geometry import rotmat_to_quat  # noqa: E402
from ilrm_ros.synthetic import SyntheticRoom, default_intrinsics, ground_robot_trajectory  # noqa: E402
from ilrm_ros.viewer import SceneViewer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def depth_gaussians(room: SyntheticRoom, K: torch.Tensor, poses: torch.Tensor, h: int, w: int) -> tuple:
    """One camera-facing flat Gaussian per pixel with a hit, sized to the pixel footprint (ceiling dropped)."""
    rgb, depth = room.render(K.float(), poses.float(), h, w)
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    K = K.float()
    rays = torch.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], torch.ones_like(xs)], -1)
    parts = []
    for c in range(len(poses)):
        T = poses[c].float()
        pts = (rays * depth[c, ..., None]).reshape(-1, 3) @ T[:3, :3].T + T[:3, 3]
        d = depth[c].reshape(-1)
        keep = (d > 0) & (pts[:, 2] < room.hi[2] - 0.05)
        n = int(keep.sum())
        s = (d[keep] / K[0, 0] * 1.2)[:, None]
        parts.append(Gaussians(
            pts[keep], rotmat_to_quat(T[:3, :3]).expand(n, 4).clone(), torch.cat([s, s, 0.5 * s], 1),
            torch.full((n,), 0.9), ((rgb[c].reshape(-1, 3)[keep] - 0.5) / SH_C0)[:, None],
        ))
    return Gaussians.cat(parts), rgb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    from PIL import Image

    room = SyntheticRoom(3)
    h, w = 90, 120
    K = default_intrinsics(w, h)
    _, poses = ground_robot_trajectory(room, 160, 10.0, seed=3)
    poses = poses[::12]
    gaussians, rgb = depth_gaussians(room, K, poses, h, w)
    images = (rgb * 255).round().to(torch.uint8).numpy()

    viewer = SceneViewer("127.0.0.1", 0, max_rate_hz=0, on_save=lambda: "runs/scenes/scene_0007.ply",
                         on_pause=lambda p: None, on_scene_mode=lambda m: None, on_render_pose=lambda T: None)
    try:
        viewer.update_scene(gaussians)
        viewer.flush(60)
        viewer.set_keyframes([(poses[i].numpy(), K.numpy(), images[i]) for i in range(len(poses) - 1)])
        viewer.set_live_camera(poses[-1].numpy(), K.numpy(), w, h)
        viewer.set_stats({"refresh latency ms": {"p50": 184.0, "p95": 231.0}, "online PSNR dB": 24.6,
                          "Gaussians": len(gaussians), "keyframes": len(poses) - 1, "images Hz": 15.0})
        with HeadlessChromium(width=1100, height=680, timeout=60) as browser:
            browser.navigate(viewer.url)
            wait_for(lambda: viewer.server.get_clients(), 30)
            client = next(iter(viewer.server.get_clients().values()))
            lo, hi = room.lo, room.hi
            client.camera.position = (0.1 * hi[0], 1.2 * lo[1], 1.8 * hi[2])
            client.camera.look_at = (0.4 * hi[0], 0.3 * hi[1], 0.3)  # right of centre: the panel covers the right
            # Software WebGL fades the splats in over many seconds: wait until two shots agree.
            shots = [browser.screenshot()]
            wait_for(lambda: shots.append(browser.screenshot()) or (shots[-1] == shots[-2]).mean() > 0.995, 90, 3.0)
            browser.evaluate("document.querySelectorAll('.mantine-Notification-closeButton').forEach(b => b.click())")
            time.sleep(2.0)
            panel = browser.evaluate(
                "(() => { let e = [...document.querySelectorAll('*')].find(e => e.childElementCount === 0 &&"
                " e.textContent.trim() === 'ilrm_ros live scene');"
                " while (e && e.getBoundingClientRect().height < 300) e = e.parentElement;"
                " const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"
            )
            page = Image.open(io.BytesIO(browser.screenshot_png())).convert("RGB")  # crop here: a clipped
            # capture resizes the page, and the splats are still redrawing in the shot
    finally:
        viewer.close()
    x, y, pw, ph = (round(panel[k]) for k in ("x", "y", "width", "height"))
    crops = {"viewer_scene.png": (0, 0, x - 8, page.height), "viewer_panel.png": (x, y, x + pw, y + ph)}
    for name, box in crops.items():
        path = os.path.join(args.out, name)
        page.crop(box).quantize(256).save(path, optimize=True)
        print(f"{path}: {os.path.getsize(path) / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
