"""Rotation and pose helpers shared by the model, sync and scene code.

Quaternions are (w, x, y, z); poses are 4x4 camera-to-world matrices in the
OpenCV camera convention (x right, y down, z forward). All functions work on
torch tensors with arbitrary leading batch dimensions.
"""

from __future__ import annotations

import torch


def quat_normalize(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit quaternion with a non-negative w (a canonical sign)."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(eps)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] from quaternions [..., 4] (w, x, y, z); normalises first."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [..., 4] (w, x, y, z; w >= 0) from rotation matrices [..., 3, 3].

    Uses the numerically stable branch per element (largest diagonal term).
    """
    m = lambda i, j: R[..., i, j]  # noqa: E731
    m00, m11, m22 = m(0, 0), m(1, 1), m(2, 2)
    trace = m00 + m11 + m22
    cands = torch.stack(
        [
            torch.stack([1 + trace, m(2, 1) - m(1, 2), m(0, 2) - m(2, 0), m(1, 0) - m(0, 1)], -1),
            torch.stack([m(2, 1) - m(1, 2), 1 + m00 - m11 - m22, m(0, 1) + m(1, 0), m(0, 2) + m(2, 0)], -1),
            torch.stack([m(0, 2) - m(2, 0), m(0, 1) + m(1, 0), 1 - m00 + m11 - m22, m(1, 2) + m(2, 1)], -1),
            torch.stack([m(1, 0) - m(0, 1), m(0, 2) + m(2, 0), m(1, 2) + m(2, 1), 1 - m00 - m11 + m22], -1),
        ],
        dim=-2,
    )
    best = torch.stack([trace, m00, m11, m22], -1).argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return quat_normalize(q)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b (rotation b applied first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical linear interpolation between unit quaternions along the short arc."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    dot = (a * b).sum(-1, keepdim=True)
    b = torch.where(dot < 0, -b, b)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    t = t[..., None] if t.dim() == a.dim() - 1 else t
    small = sin_theta < 1e-6
    wa = torch.where(small, 1 - t, torch.sin((1 - t) * theta) / sin_theta.clamp_min(1e-12))
    wb = torch.where(small, t, torch.sin(t * theta) / sin_theta.clamp_min(1e-12))
    return quat_normalize(wa * a + wb * b)


def make_pose(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """4x4 homogeneous transforms [..., 4, 4] from rotations [..., 3, 3] and translations [..., 3]."""
    T = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1
    return T


def pose_from_quat(q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """4x4 transforms from (w, x, y, z) quaternions and translations."""
    return make_pose(quat_to_rotmat(q), t)


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid 4x4 transforms without a general matrix inverse."""
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    Rt = R.transpose(-1, -2)
    return make_pose(Rt, -(Rt @ t[..., None])[..., 0])


def world_to_camera(points: torch.Tensor, cam_to_world: torch.Tensor) -> torch.Tensor:
    """World points ``[..., N, 3]`` in the frame of cameras ``cam_to_world [..., 4, 4]``: R^T (x - t)."""
    return (points - cam_to_world[..., None, :3, 3]) @ cam_to_world[..., :3, :3]


def rotation_angle_deg(R_a: torch.Tensor, R_b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees of the relative rotation between two rotation matrices."""
    rel = R_a.transpose(-1, -2) @ R_b
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))
