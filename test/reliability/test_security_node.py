"""Security at node level: where ~/save_scene may write, and parameters validated through the real service.

Checkpoint loading without unpickling code is proven in test/model/test_checkpoint.py
(test_pickled_code_is_refused_and_never_runs); it is not repeated here.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from live_node import Frames, LiveNode, attempts, feed, image_msg, info_msg, pose_msg
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from ilrm_ros.io.convert import CAMERA_FROM_POSE_PRESETS

T0 = 1_700_000_000 * 10**9
FRAME_NS = 66_666_667
HOSTILE = "../../../../tmp/ilrm_escape/x"  # what a message could try to pass as a name


@pytest.fixture(scope="module")
def frames():
    return Frames.get(n=24, seed=5)


def _save(h: LiveNode):
    assert h.save.wait_for_service(timeout_sec=10)
    return h.result(h.save.call_async(Trigger.Request()), 30)


def test_save_scene_writes_only_inside_the_resolved_output_dir(tmp_path, frames):
    given = tmp_path / "a" / "b" / ".." / ".." / "scenes"  # resolves to tmp_path/scenes
    resolved = (tmp_path / "scenes").resolve()
    h = LiveNode({"output_dir": str(given), "keyframe.min_translation": 0.01})
    try:
        empty = _save(h)
        assert not empty.success and "empty" in empty.message
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]
        # Frames whose every frame id tries to steer a path.
        ns = T0
        for i in range(3):
            tried = attempts(h)
            info, pose, image = (info_msg(frames.K, frames.width, frames.height, ns), pose_msg(frames.pose(i), ns),
                                 image_msg(frames.image(i), ns))
            for msg in (info, pose, image):
                msg.header.frame_id = HOSTILE
            h.pub_info.publish(info)
            assert h.wait_for(lambda: h.node.pipeline.camera is not None, 10)
            h.pub_pose.publish(pose)
            h.pub_image.publish(image)
            if i:
                assert h.wait_for(lambda n=tried: attempts(h) > n, 30)
            ns += FRAME_NS
        assert h.node.pipeline.wait_idle(30) and h.scene_version() >= 1
        replies = [_save(h), _save(h)]
        for reply in replies:
            assert reply.success, reply.message
            ply = Path(reply.message)
            assert ply.parent == resolved and re.fullmatch(r"scene_\d{8}_\d{6}_\d{3}\.ply", ply.name), ply
            meta = json.loads(ply.with_suffix(".json").read_text())
            assert meta["frame_id"] == "world"  # the parameter, never a message's frame id
        assert replies[0].message != replies[1].message
        written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
        assert len(written) == 4 and all(p.parent == resolved for p in written), written
        assert not (tmp_path / "a").exists()
        # Where it writes cannot change at run time.
        result = h.set_parameters([Parameter("output_dir", value="/tmp")])[0]
        assert not result.successful and "read-only" in result.reason
        assert h.get_parameter("output_dir").string_value == str(given)
    finally:
        h.close()


REJECTED = [
    # (name, value, words expected in the reason)
    ("keyframe.min_translation", -1.0, "out of range"),
    ("keyframe.min_rotation_deg", math.nan, "out of range"),
    ("sync.max_pose_gap", 1e9, "out of range"),
    ("render.width", 100_000, "out of range"),
    ("render.rate_hz", -5.0, "out of range"),
    ("render.rate_hz", "fast", "type"),
    ("render.pose_source", "bogus", "must be one of"),
    ("render.background", [0.5], "3 values"),
    ("render.background", [2.0, 0.0, 0.0], "within"),
    ("camera_from_pose_frame", "bogus", "camera_from_pose_frame"),
    ("scene.mode", "mesh", "must be one of"),
    ("pose_type", "Odometry", "read-only"),
    ("checkpoint", "/etc/passwd", "read-only"),
    ("device", "cuda", "read-only"),
    ("scene.budget", 10, "read-only"),
    ("image_transport", "compressed", "read-only"),
    ("not_a_parameter", 1.0, "undeclared"),
]


def test_bad_parameter_changes_are_rejected_with_a_reason(frames):
    h = LiveNode()
    try:
        before = h.node.pipeline.config.to_dict()
        for name, value, words in REJECTED:
            result = h.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and words in result.reason.lower(), (name, value, result.reason)
        assert h.node.pipeline.config.to_dict() == before
        assert h.get_parameter("keyframe.min_translation").double_value == before["keyframe.min_translation"]
        assert h.node._node_params["render.pose_source"] == "latest"
        # Valid changes go through and take effect.
        results = h.set_parameters([Parameter("keyframe.min_translation", value=0.01),
                                    Parameter("render.background", value=[0.0, 0.0, 0.0]),
                                    Parameter("camera_from_pose_frame", value="camera_link")])
        assert all(r.successful for r in results), [r.reason for r in results]
        assert h.node.pipeline.selector.min_translation == 0.01
        assert h.node.pipeline.config.render_background == [0.0, 0.0, 0.0]
        # The new camera_from_pose converts the next poses: cam_to_world = pose @ camera_link preset.
        feed(h, frames, 0, T0, refresh=False)
        np.testing.assert_allclose(h.node.pipeline.latest_frame.cam_to_world,
                                   frames.pose(0) @ CAMERA_FROM_POSE_PRESETS["camera_link"], atol=1e-9)
        assert h.alive
    finally:
        h.close()
