"""Rotation/pose helpers: conversions round-trip and compose like matrices."""

import math

import torch

from ilrm_ros.geometry import (
    invert_pose,
    pose_from_quat,
    quat_multiply,
    quat_normalize,
    quat_slerp,
    quat_to_rotmat,
    rotation_angle_deg,
    rotmat_to_quat,
    world_to_camera,
)


def _random_quats(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return quat_normalize(torch.randn(n, 4, generator=g, dtype=torch.float64))


def test_quat_matrix_round_trip():
    q = _random_quats(500)
    R = quat_to_rotmat(q)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(500, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(500, dtype=torch.float64))
    assert torch.allclose(rotmat_to_quat(R), q, atol=1e-10)


def test_quat_multiply_matches_matrix_product():
    a, b = _random_quats(50, 1), _random_quats(50, 2)
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), quat_to_rotmat(a) @ quat_to_rotmat(b), atol=1e-12)


def test_slerp_midpoint_of_known_rotation():
    a = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    b = torch.tensor([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)], dtype=torch.float64)  # 90 deg about z
    mid = quat_slerp(a, b, 0.5)
    expected = torch.tensor([math.cos(math.pi / 8), 0, 0, math.sin(math.pi / 8)], dtype=torch.float64)
    assert torch.allclose(mid, expected, atol=1e-12)
    assert torch.allclose(quat_slerp(a, -b, 0.5), expected, atol=1e-12)  # short arc despite the sign flip
    angle = rotation_angle_deg(quat_to_rotmat(a), quat_to_rotmat(mid))
    assert abs(angle.item() - 45.0) < 1e-9


def test_invert_pose():
    T = pose_from_quat(_random_quats(10, 3), torch.randn(10, 3, dtype=torch.float64))
    assert torch.allclose(invert_pose(T) @ T, torch.eye(4, dtype=torch.float64).expand(10, 4, 4), atol=1e-12)


def test_world_to_camera_matches_the_inverse_pose():
    T = pose_from_quat(_random_quats(6, 4), torch.randn(6, 3, dtype=torch.float64)).reshape(2, 3, 4, 4)
    pts = torch.randn(2, 3, 5, 3, dtype=torch.float64)
    homo = torch.cat([pts, torch.ones(2, 3, 5, 1, dtype=torch.float64)], -1)
    expected = (homo @ invert_pose(T).transpose(-1, -2))[..., :3]
    assert torch.allclose(world_to_camera(pts, T), expected, atol=1e-12)
    assert torch.allclose(world_to_camera(pts[0, 1], T[0, 1]), expected[0, 1], atol=1e-12)  # one camera, [N, 3]
    camera_centre = T[..., None, :3, 3]
    assert torch.allclose(world_to_camera(camera_centre, T), torch.zeros(2, 3, 1, 3, dtype=torch.float64), atol=1e-12)
