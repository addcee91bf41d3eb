"""Conversions between the project's Gaussians / OpenCV cameras and what viser draws.

viser takes splats as centres, 3x3 covariances, RGB and opacity arrays; its cameras (client
cameras and frustums) use the OpenCV convention (x right, y down, z forward) as a rotation
``wxyz`` and a ``position`` with ``p_world = R(wxyz) p_camera + position``, so a pose maps
one to one onto an OpenCV cam_to_world matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import quat_to_rotmat, rotmat_to_quat


@dataclass
class Splats:
    """Arrays ready for ``viser``'s ``add_gaussian_splats``: float32 numpy on the CPU."""

    centers: np.ndarray  # [N, 3]
    covariances: np.ndarray  # [N, 3, 3]
    rgbs: np.ndarray  # [N, 3] in [0, 1]
    opacities: np.ndarray  # [N, 1] in [0, 1]
    total: int  # finite Gaussians in the input before the cap

    def __len__(self) -> int:
        return self.centers.shape[0]


def covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Covariances ``R diag(s^2) R^T`` [N, 3, 3] from (w, x, y, z) quaternions [N, 4] and std-devs [N, 3]."""
    m = quat_to_rotmat(quats) * scales[..., None, :]  # R @ diag(s)
    return m @ m.transpose(-1, -2)


def splats_from_gaussians(gaussians: Gaussians, max_splats: int = 200_000) -> Splats:
    """The ``max_splats`` most opaque finite Gaussians of an unbatched set as viser splat arrays.

    Non-finite Gaussians are dropped first (one NaN would break the browser's sort). The work runs
    on the Gaussians' device; only the kept ones are copied to the CPU.
    """
    if gaussians.batched:
        raise ValueError("splats_from_gaussians takes unbatched Gaussians")
    g = gaussians.detach()
    finite = (
        g.means.isfinite().all(-1) & g.quats.isfinite().all(-1) & g.scales.isfinite().all(-1)
        & g.opacities.isfinite() & g.sh[:, 0, :].isfinite().all(-1)
    )
    if not bool(finite.all()):
        g = g.select(finite)
    total = len(g)
    if max_splats >= 0 and total > max_splats:
        g = g.select(torch.topk(g.opacities, max_splats, sorted=False).indices)
    g = g.float()
    cpu = lambda t: t.to("cpu", torch.float32).contiguous().numpy()  # noqa: E731
    return Splats(
        centers=cpu(g.means),
        covariances=cpu(covariances(g.quats, g.scales)),
        rgbs=cpu(g.colors()),
        opacities=cpu(g.opacities.clamp(0.0, 1.0)[:, None]),
        total=total,
    )


def viser_pose(cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of a viser camera or frustum from an OpenCV cam_to_world 4x4."""
    T = torch.as_tensor(np.asarray(cam_to_world, dtype=np.float64))
    return rotmat_to_quat(T[:3, :3]).numpy(), T[:3, 3].numpy().copy()


def cam_to_world_from_viser(wxyz, position) -> np.ndarray:
    """OpenCV cam_to_world 4x4 (float64) from a viser camera's ``wxyz`` and ``position``."""
    T = np.eye(4)
    T[:3, :3] = quat_to_rotmat(torch.as_tensor(np.asarray(wxyz, dtype=np.float64))).numpy()
    T[:3, 3] = np.asarray(position, dtype=np.float64)
    return T


def vertical_fov(K: np.ndarray, height: int) -> float:
    """Vertical field of view in radians of a pinhole camera (principal point assumed central)."""
    return 2.0 * math.atan2(0.5 * height, float(np.asarray(K)[1, 1]))


def frame_view(centers: np.ndarray, fov: float = math.radians(60.0)) -> tuple[np.ndarray, np.ndarray]:
    """(camera position, look-at point) that shows most of the given points from above at an angle (z up).

    Uses the 2nd-98th percentile box so a few stray Gaussians do not push the camera away.
    """
    if len(centers) == 0:
        return np.array([3.0, 3.0, 3.0]), np.zeros(3)
    lo, hi = np.percentile(centers, [2.0, 98.0], axis=0)
    target = 0.5 * (lo + hi)
    radius = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-3)
    direction = np.array([-0.5, -0.7, 0.6])
    direction /= np.linalg.norm(direction)
    return target + direction * radius / math.sin(0.5 * fov) * 1.4, target  # the bounding sphere fits with a margin
