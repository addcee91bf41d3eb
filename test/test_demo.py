"""`ilrm demo` (the README's first command), shortened: all its files appear and the node exits 0."""

import json

from ilrm_ros.demo import run_demo
from ilrm_ros.scene import load_ply


def test_demo_leaves_its_files(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(out, frames=60, rate_hz=15.0, device="cpu", viewer=False)
    assert report["node_exit_code"] == 0
    for name in ("scene.ply", "contact_sheet.png", "report.json", "node.log", "scene_keyframes.json"):
        assert (out / name).exists(), name
    assert len(load_ply(out / "scene.ply")) > 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["point_clouds_received"] >= 1 and saved["renders_received"] >= 1
    assert saved["novel_psnr_mean"] is not None and saved["novel_psnr_mean"] > 12.0
