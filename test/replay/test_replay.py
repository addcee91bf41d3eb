"""`ilrm replay` over a small synthetic bag: all outputs, deterministic, trained weights beat random ones, and
the model input shaped like the camera covers the whole frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ilrm_ros.bag import bag_summary, iter_bag, write_synthetic_bag
from ilrm_ros.cli import main as cli_main
from ilrm_ros.io.convert import image_from_msg, stamp_ns
from ilrm_ros.replay import Topics, read_params_file, run_replay
from ilrm_ros.scene import load_ply


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "room"
    write_synthetic_bag(path, frames=45, rate_hz=10.0, width=128, height=96, seed=11, storage="sqlite3")
    return path


def test_replay_writes_all_outputs(bag, tmp_path):
    out = tmp_path / "replay"
    assert cli_main(["replay", str(bag), "--out", str(out), "--device", "cpu", "--outputs-bag", "--no-progress",
                     "--params", "config/ilrm.yaml"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["novel_views"] > 10 and report["refreshes"] >= 2
    assert report["psnr_mean"] is not None and report["refresh_latency_ms"]["p95"] > 0
    assert len(load_ply(out / "scene.ply")) == report["scene_gaussians"] > 0
    assert sorted(p.name for p in (out / "renders").glob("*.png"))
    topics = bag_summary(out / "outputs.mcap")
    assert topics["/ilrm/points"] == ("sensor_msgs/msg/PointCloud2", report["refreshes"])
    assert topics["/ilrm/render/image"][1] == report["novel_views"]
    assert topics["/ilrm/keyframes"][0] == "geometry_msgs/msg/PoseArray"


def test_replay_is_deterministic_and_trained_beats_random(bag, tmp_path):
    params = read_params_file("config/ilrm.yaml")
    first = run_replay(bag, tmp_path / "a", params, device="cpu", progress=False)
    again = run_replay(bag, tmp_path / "b", params, device="cpu", progress=False)
    assert first["psnr_mean"] == again["psnr_mean"] and first["scene_gaussians"] == again["scene_gaussians"]
    assert (tmp_path / "a" / "scene.ply").read_bytes() == (tmp_path / "b" / "scene.ply").read_bytes()
    untrained = run_replay(bag, tmp_path / "c", {**params, "checkpoint": "small"}, device="cpu", progress=False)
    assert first["psnr_mean"] > untrained["psnr_mean"] + 3.0, (first["psnr_mean"], untrained["psnr_mean"])


def test_model_aspect_of_the_camera_covers_the_whole_frame(bag, tmp_path):
    """With the square crop the model never sees the frame's sides (a 128x96 camera: 16 columns each
    side), so the renders there are poor; with model_aspect = the camera's they are reconstructed too.
    Scored on the replay's own full-resolution renders (outputs bag) against the bag's images."""
    frames = {stamp_ns(m.msg.header): image_from_msg(m.msg) for m in iter_bag(bag, topics=[Topics.image])}

    def side_psnr(aspect: float) -> tuple[float, list[int]]:
        out = tmp_path / f"aspect_{aspect:.2f}"
        report = run_replay(bag, out, {"model_aspect": aspect}, device="cpu", progress=False, outputs_bag=True)
        errors = []
        for m in iter_bag(out / "outputs.mcap", topics=["/ilrm/render/image"]):
            real = frames[stamp_ns(m.msg.header)]
            diff = image_from_msg(m.msg).astype(np.float64) / 255 - real.astype(np.float64) / 255
            errors.append(np.mean(np.concatenate([diff[:, :16], diff[:, -16:]], axis=1) ** 2))
        assert len(errors) == report["novel_views"] > 10
        return float(np.mean(-10 * np.log10(errors))), report["model_resolution"]

    cropped, square = side_psnr(1.0)
    whole, wide = side_psnr(128 / 96)
    assert square == [128, 128] and wide == [128, 168]
    assert whole > cropped + 1.0, (whole, cropped)
