"""Synthetic bag writing and reading back with rosbags: types, counts, bytes, poses, errors, CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from ilrm_ros.bag import BagError, bag_custom_data, bag_summary, iter_bag, synthetic_sequence, write_synthetic_bag
from ilrm_ros.bag.writer import (
    DEPTH_TOPIC,
    IMAGE_TOPIC,
    INFO_TOPIC,
    POSE_TOPIC,
    camera_info_k,
    intrinsics_from_camera_info,
    to_rgb8,
)
from ilrm_ros.cli import synth_bag
from ilrm_ros.geometry import quat_to_rotmat

FRAMES, RATE, W, H = 8, 10.0, 40, 30


def _pose_matrix(msg) -> torch.Tensor:
    o, p = msg.pose.orientation, msg.pose.position
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = quat_to_rotmat(torch.tensor([o.w, o.x, o.y, o.z], dtype=torch.float64))
    T[:3, 3] = torch.tensor([p.x, p.y, p.z], dtype=torch.float64)
    return T


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / f"synth_{request.param}"
    seq = write_synthetic_bag(path, frames=FRAMES, rate_hz=RATE, width=W, height=H, seed=3, storage=request.param)
    return path, seq, request.param


def test_types_counts_and_storage(bag):
    path, _, storage = bag
    assert bag_summary(path) == {
        IMAGE_TOPIC: ("sensor_msgs/msg/Image", FRAMES),
        INFO_TOPIC: ("sensor_msgs/msg/CameraInfo", FRAMES),
        DEPTH_TOPIC: ("sensor_msgs/msg/Image", FRAMES),
        POSE_TOPIC: ("geometry_msgs/msg/PoseStamped", FRAMES),
    }
    suffix = {"mcap": ".mcap", "sqlite3": ".db3"}[storage]
    assert len(list(path.glob(f"*{suffix}"))) == 1
    assert '"seed": 3' in bag_custom_data(path)["ilrm_ros.synthetic"]


def test_messages_match_the_rendered_sequence(bag):
    path, seq, _ = bag
    msgs = list(iter_bag(path))
    stamps = [m.stamp_ns for m in msgs]
    assert stamps == sorted(stamps)
    rgb, depth = seq.render(slice(None))
    images = [m for m in msgs if m.topic == IMAGE_TOPIC]
    for i, m in enumerate(images):
        img = m.msg
        assert (img.encoding, img.width, img.height, img.step) == ("rgb8", W, H, 3 * W)
        assert img.header.frame_id == "camera_optical_frame"
        assert _stamp(img) == m.stamp_ns == seq.image_stamps_ns[i]
        np.testing.assert_array_equal(np.asarray(img.data).reshape(H, W, 3), to_rgb8(rgb[i]))
    depths = [m.msg for m in msgs if m.topic == DEPTH_TOPIC]
    for i, d in enumerate(depths):
        assert d.encoding == "32FC1" and d.step == 4 * W and d.is_bigendian == 0
        values = np.frombuffer(np.asarray(d.data).tobytes(), "<f4").reshape(H, W)
        np.testing.assert_array_equal(values, depth[i].numpy())
    infos = [m for m in msgs if m.topic == INFO_TOPIC]
    for i, m in enumerate(infos):
        info = m.msg
        assert _stamp(info) == m.stamp_ns == seq.image_stamps_ns[i]
        assert (info.width, info.height, info.distortion_model) == (W, H, "plumb_bob")
        np.testing.assert_array_equal(info.d, np.zeros(5))
        K = np.asarray(info.k).reshape(3, 3)
        assert K[0, 2] == W / 2 - 0.5 and K[1, 2] == H / 2 - 0.5  # ROS: pixel centres at integers
        torch.testing.assert_close(intrinsics_from_camera_info(info.k), seq.intrinsics)
        np.testing.assert_array_equal(np.asarray(info.r).reshape(3, 3), np.eye(3))
        P = np.asarray(info.p).reshape(3, 4)
        np.testing.assert_array_equal(P[:, :3], K)
        np.testing.assert_array_equal(P[:, 3], 0)
    poses = [m for m in msgs if m.topic == POSE_TOPIC]
    for i, m in enumerate(poses):
        assert m.msg.header.frame_id == "world"
        assert _stamp(m.msg) == m.stamp_ns == seq.image_stamps_ns[i]
        torch.testing.assert_close(_pose_matrix(m.msg), seq.cam_to_world[i], atol=1e-9, rtol=0)


def test_topic_filter_and_raw_bytes(bag):
    path, _, _ = bag
    msgs = list(iter_bag(path, topics=[POSE_TOPIC], deserialize=False))
    assert len(msgs) == FRAMES and {m.topic for m in msgs} == {POSE_TOPIC}
    assert all(m.msg is None and isinstance(m.rawdata, bytes) and m.rawdata[:4] == b"\x00\x01\x00\x00" for m in msgs)


def test_pose_rate_gives_interpolated_odometry_between_images(tmp_path):
    path = tmp_path / "odom"
    seq = write_synthetic_bag(path, frames=12, rate_hz=10.0, width=16, height=12, seed=1, pose_rate_hz=25.0)
    plain = synthetic_sequence(frames=12, rate_hz=10.0, width=16, height=12, seed=1)
    # Image poses do not depend on the pose rate.
    torch.testing.assert_close(seq.cam_to_world, plain.cam_to_world)
    poses = [m for m in iter_bag(path, topics=[POSE_TOPIC])]
    stamps = np.array([m.stamp_ns for m in poses])
    np.testing.assert_allclose(np.diff(stamps), 4e7, atol=1)  # 25 Hz
    assert not np.isin(stamps, seq.image_stamps_ns).any()
    assert stamps[0] < seq.image_stamps_ns[0] and stamps[-1] > seq.image_stamps_ns[-1]  # they bracket the images
    assert len(stamps) == pytest.approx(11 * 2.5 + 2, abs=1)
    for m, T in zip(poses, seq.pose_cam_to_world):
        torch.testing.assert_close(_pose_matrix(m.msg), T, atol=1e-9, rtol=0)
    # Odometry interpolated back to the image stamps lands on the image poses (smooth path).
    from ilrm_ros.synthetic import interpolate_poses

    back = interpolate_poses(stamps, seq.pose_cam_to_world, seq.image_stamps_ns)
    assert (back[:, :3, 3] - seq.cam_to_world[:, :3, 3]).norm(dim=-1).max() < 2e-3


def test_not_a_bag_errors(tmp_path):
    with pytest.raises(BagError, match="no such file"):
        bag_summary(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="not a rosbag2"):
        list(iter_bag(tmp_path / "plain"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.yaml").write_text("not: [a, bag")
    with pytest.raises(BagError, match="cannot read"):
        bag_summary(tmp_path / "broken")


def test_existing_output_is_not_overwritten_unless_a_bag(tmp_path):
    target = tmp_path / "b"
    write_synthetic_bag(target, frames=2, width=8, height=6)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic_bag(target, frames=2, width=8, height=6)
    write_synthetic_bag(target, frames=3, width=8, height=6, overwrite=True, depth=False)
    assert bag_summary(target)[IMAGE_TOPIC][1] == 3 and DEPTH_TOPIC not in bag_summary(target)
    other = tmp_path / "not_a_bag"
    other.mkdir()
    with pytest.raises(FileExistsError):
        write_synthetic_bag(other, frames=2, width=8, height=6, overwrite=True)


def test_camera_info_k_round_trip():
    K = torch.tensor([[100.0, 0, 32], [0, 101.0, 24], [0, 0, 1]], dtype=torch.float64)
    k = camera_info_k(K)
    assert k[2] == 31.5 and k[5] == 23.5
    torch.testing.assert_close(intrinsics_from_camera_info(k), K)


@pytest.mark.parametrize("storage,trajectory", [("mcap", "handheld"), ("sqlite3", "robot")])
def test_synth_bag_cli(tmp_path, capsys, storage, trajectory):
    parser = argparse.ArgumentParser()
    synth_bag.add_arguments(parser)
    out = tmp_path / "cli_bag"
    args = parser.parse_args(
        [str(out), "--frames", "5", "--rate", "15", "--width", "24", "--height", "18", "--seed", "2",
         "--storage", storage, "--trajectory", trajectory]
    )
    assert synth_bag.run(args) == 0
    assert "wrote" in capsys.readouterr().out
    summary = bag_summary(out)
    assert summary[IMAGE_TOPIC] == ("sensor_msgs/msg/Image", 5)
    assert summary[POSE_TOPIC] == ("geometry_msgs/msg/PoseStamped", 5)
    seq = synthetic_sequence(frames=5, rate_hz=15, width=24, height=18, seed=2, trajectory=trajectory)
    first = next(iter_bag(out, topics=[IMAGE_TOPIC])).msg
    rgb, _ = seq.render(0)
    np.testing.assert_array_equal(np.asarray(first.data).reshape(18, 24, 3), to_rgb8(rgb))
    pose = next(iter_bag(out, topics=[POSE_TOPIC])).msg
    torch.testing.assert_close(_pose_matrix(pose), seq.cam_to_world[0], atol=1e-9, rtol=0)
    # Existing output: a clear error, exit code 2.
    assert synth_bag.run(args) == 2
    assert "exists" in capsys.readouterr().out
    # Defaults are small enough for a CPU demo.
    d = parser.parse_args(["x"])
    assert (d.frames, d.rate, d.width, d.height, d.storage, d.trajectory) == (300, 30.0, 160, 120, "mcap", "robot")
