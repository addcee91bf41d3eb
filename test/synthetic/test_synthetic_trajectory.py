"""Camera trajectories: inside the room, clear of objects, smooth, level (robot), valid frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ilrm_ros.geometry import rotation_angle_deg
from ilrm_ros.synthetic import (
    SyntheticRoom,
    default_intrinsics,
    ground_robot_trajectory,
    handheld_sweep,
    interpolate_poses,
)
from ilrm_ros.synthetic.trajectory import DEFAULT_START_NS, camera_rotation


def _check_rotations(T: torch.Tensor) -> None:
    R = T[:, :3, :3]
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R.transpose(1, 2) @ R, eye, atol=1e-9, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(R), dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(T[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(len(T), 4))


def _check_inside(room: SyntheticRoom, T: torch.Tensor, clearance: float) -> None:
    p = T[:, :3, 3].numpy()
    lo, hi = (b.double().numpy() for b in room.bounds)
    assert (p > lo + clearance * np.array([1, 1, 0])).all() and (p < hi - clearance * np.array([1, 1, 0])).all()
    assert (p[:, 2] > 0.2).all() and (p[:, 2] < hi[2] - 0.2).all()
    assert room.free_distance_2d(p[:, :2]).min() >= clearance
    assert (room.sdf(torch.from_numpy(p).float()) > clearance - 1e-3).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_ground_robot_stays_clear_smooth_and_level(seed):
    room = SyntheticRoom(seed)
    rate, speed, turn = 15.0, 0.4, 0.6
    stamps, T = ground_robot_trajectory(room, 300, rate, seed, height=1.0, speed=speed, turn_rate=turn)
    assert stamps.dtype == np.int64 and T.dtype == torch.float64 and T.shape == (300, 4, 4)
    assert stamps[0] == DEFAULT_START_NS
    np.testing.assert_allclose(np.diff(stamps), 1e9 / rate, atol=1)
    _check_rotations(T)
    _check_inside(room, T, 0.35)
    p = T[:, :3, 3].numpy()
    step = np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1)
    assert step.max() <= speed / rate * 1.001 + 1e-9
    assert step.sum() > 0.3 * speed * 300 / rate  # it really drives (not stuck), > 30% of top speed
    assert np.abs(p[:, 2] - 1.0).max() < 0.01
    rot_step = rotation_angle_deg(T[:-1, :3, :3], T[1:, :3, :3]).numpy()
    assert rot_step.max() < math.degrees(turn / rate) + 0.5  # bounded turn rate (+ tiny vibration)
    fwd, right = T[:, :3, 2].numpy(), T[:, :3, 0].numpy()
    assert np.degrees(np.abs(np.arcsin(fwd[:, 2]))).max() < 6.0  # looks horizontally (pitch -3 +- 0.5)
    assert np.degrees(np.abs(np.arcsin(right[:, 2]))).max() < 1.0  # no roll to speak of
    # It turns around over time: headings cover a good part of the circle.
    yaw = np.degrees(np.arctan2(fwd[:, 1], fwd[:, 0]))
    assert np.ptp(np.unwrap(np.radians(yaw))) > math.radians(60)


@pytest.mark.parametrize("seed", [0, 3])
def test_handheld_sweep_stays_clear_and_smooth(seed):
    room = SyntheticRoom(seed)
    rate = 10.0
    stamps, T = handheld_sweep(room, 200, rate, seed)
    _check_rotations(T)
    _check_inside(room, T, 0.4)
    p = T[:, :3, 3].numpy()
    step = np.linalg.norm(np.diff(p, axis=0), axis=1)
    assert step.max() < 0.3 / rate + 0.03  # walking speed plus a few cm of shake
    rot_step = rotation_angle_deg(T[:-1, :3, :3], T[1:, :3, :3]).numpy()
    assert rot_step.max() < 12.0
    fwd, right = T[:, :3, 2].numpy(), T[:, :3, 0].numpy()
    pitch = np.degrees(np.arcsin(fwd[:, 2]))
    roll = np.degrees(np.arcsin(right[:, 2]))
    assert np.abs(pitch).max() < 30 and np.ptp(pitch) > 2.0  # jitters, not level like the robot
    assert np.abs(roll).max() < 10 and np.ptp(roll) > 1.0


def test_trajectories_are_deterministic_per_seed():
    room = SyntheticRoom(4)
    a = ground_robot_trajectory(room, 50, 10.0, 4)
    b = ground_robot_trajectory(room, 50, 10.0, 4)
    c = ground_robot_trajectory(room, 50, 10.0, 5)
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[1], c[1])


def test_optical_frame_axes():
    # yaw 0, level: forward +x, right -y, down -z (OpenCV optical frame in a z-up world).
    R = camera_rotation(np.array(0.0), np.array(0.0), np.array(0.0))
    np.testing.assert_allclose(R, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    R = camera_rotation(np.array(math.pi / 2), np.array(0.2), np.array(0.0))
    assert R[2, 2] == pytest.approx(math.sin(0.2))  # positive pitch looks up
    np.testing.assert_allclose(np.linalg.det(R), 1.0)


def test_default_intrinsics():
    K = default_intrinsics(160, 120, hfov_deg=90.0)
    assert K.dtype == torch.float64
    torch.testing.assert_close(K, torch.tensor([[80.0, 0, 80], [0, 80.0, 60], [0, 0, 1]], dtype=torch.float64))


def test_interpolate_poses():
    room = SyntheticRoom(1)
    stamps, T = ground_robot_trajectory(room, 40, 10.0, 1)
    # At the knots: the poses themselves.
    torch.testing.assert_close(interpolate_poses(stamps, T, stamps), T, atol=1e-9, rtol=0)
    # Between knots: translation on the segment, rotation between the two ends.
    mid = (stamps[:-1] + stamps[1:]) // 2
    Tm = interpolate_poses(stamps, T, mid)
    torch.testing.assert_close(Tm[:, :3, 3], (T[:-1, :3, 3] + T[1:, :3, 3]) / 2, atol=1e-6, rtol=0)
    a = rotation_angle_deg(T[:-1, :3, :3], Tm[:, :3, :3])
    b = rotation_angle_deg(Tm[:, :3, :3], T[1:, :3, :3])
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)
    # Outside: clamped to the ends.
    out = interpolate_poses(stamps, T, np.array([stamps[0] - 10**9, stamps[-1] + 10**9]))
    torch.testing.assert_close(out, T[[0, -1]], atol=1e-9, rtol=0)


def test_scalar_clip_matches_numpy_including_signed_zeros():
    from ilrm_ros.synthetic.trajectory import _clip

    values = [-0.0, 0.0, 0.5, -0.5, 1.0, -1.0, 2.0, math.inf, -math.inf, math.nan]
    bounds = [(-0.0, 0.0), (0.0, 0.0), (0.0, -0.0), (-1.0, 1.0), (0.0, 0.7), (-0.5, -0.0)]
    for x in values:
        for lo, hi in bounds:
            got, want = _clip(x, lo, hi), float(np.clip(x, lo, hi))
            same = got == want or (math.isnan(got) and math.isnan(want))
            assert same and math.copysign(1, got) == math.copysign(1, want), (x, lo, hi)
