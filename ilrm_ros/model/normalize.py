"""Pose normalisation into the frame the published model was trained in, and back.

Given the context cameras' camera-to-world matrices (OpenCV):

* ``p`` = mean camera position, ``f`` = normalised mean forward axis (third rotation column),
  ``d`` = mean down axis (second column) made orthogonal to ``f`` and normalised, ``r = d x f``;
* ``A = [r d f p; 0 0 0 1]`` (the "average camera"); every camera becomes ``A^-1 @ c2w``;
* translations are then multiplied by ``s = 1 / max |translation component|`` of the ORIGINAL
  context translations (before ``A^-1``), guarded to ``s = 1`` when they are all ~0.

Outputs go back to the caller's world with :func:`denormalize_gaussians` (means
``A @ (x / s)``, scales ``/ s``, rotations by ``A``'s rotation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..gaussians import Gaussians
from ..geometry import invert_pose, make_pose, quat_multiply, rotmat_to_quat

_MIN_EXTENT = 1e-6  # below this max |translation component| the scale is left at 1


@dataclass
class PoseTransform:
    """The normalisation ``c2w_norm = S(s) @ A^-1 @ c2w`` (``S`` scales translations by ``s``).

    matrix: ``A`` ``[..., 4, 4]`` (the average camera, a rigid transform); scale: ``s`` ``[...]``.
    """

    matrix: torch.Tensor
    scale: torch.Tensor

    def to_normalized(self, cam_to_world: torch.Tensor) -> torch.Tensor:
        """World-frame poses ``[..., V, 4, 4]`` -> the normalised frame (e.g. target cameras)."""
        out = invert_pose(self.matrix)[..., None, :, :] @ cam_to_world
        out[..., :3, 3] = out[..., :3, 3] * self.scale[..., None, None]
        return out

    def to_world(self, cam_to_world: torch.Tensor) -> torch.Tensor:
        """Normalised-frame poses ``[..., V, 4, 4]`` -> the caller's world frame."""
        out = cam_to_world.clone()
        out[..., :3, 3] = out[..., :3, 3] / self.scale[..., None, None]
        return self.matrix[..., None, :, :] @ out


def normalize_poses(
    cam_to_world: torch.Tensor, context: torch.Tensor | None = None
) -> tuple[torch.Tensor, PoseTransform]:
    """Normalise camera-to-world poses ``[..., V, 4, 4]``.

    ``context`` optionally selects (index or bool mask over V) the cameras that define the frame;
    by default all of them do. Returns (normalised poses, transform).
    """
    if cam_to_world.shape[-2:] != (4, 4) or cam_to_world.dim() < 3:
        raise ValueError(f"cam_to_world must be [..., V, 4, 4], got {tuple(cam_to_world.shape)}")
    if not cam_to_world.is_floating_point() or cam_to_world.dtype in (torch.float16, torch.bfloat16):
        cam_to_world = cam_to_world.float()
    ctx = cam_to_world if context is None else cam_to_world[..., context, :, :]
    pos = ctx[..., :3, 3]
    p = pos.mean(-2)
    f = F.normalize(ctx[..., :3, 2].mean(-2), dim=-1)
    d = ctx[..., :3, 1].mean(-2)
    d = F.normalize(d - (d * f).sum(-1, keepdim=True) * f, dim=-1)
    r = torch.linalg.cross(d, f, dim=-1)
    A = make_pose(torch.stack((r, d, f), dim=-1), p)
    extent = pos.abs().amax(dim=(-2, -1))
    scale = torch.where(extent > _MIN_EXTENT, 1.0 / extent.clamp_min(_MIN_EXTENT), torch.ones_like(extent))
    transform = PoseTransform(A, scale)
    return transform.to_normalized(cam_to_world), transform


def _map_gaussians(g: Gaussians, rot: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Gaussians:
    """Apply ``x -> scale * (rot @ x) + shift`` (rot ``[..., 3, 3]``, shift ``[..., 3]``, scale ``[...]``)."""
    k = scale[..., None, None]
    q = rotmat_to_quat(rot)[..., None, :]
    return Gaussians(
        means=k * (g.means @ rot.transpose(-1, -2)) + shift[..., None, :],
        quats=quat_multiply(q.expand_as(g.quats), g.quats),
        scales=g.scales * k,
        opacities=g.opacities,
        sh=g.sh,
    )


def denormalize_gaussians(g: Gaussians, transform: PoseTransform) -> Gaussians:
    """Map Gaussians from the normalised frame back to the world: means ``A @ (x / s)``, scales
    ``/ s``, rotations by ``A``'s rotation.

    ``g`` is batched ``[B, N]`` with a transform of batch ``[B]``, or unbatched with an
    unbatched transform.
    """
    A = transform.matrix.to(g.means)
    return _map_gaussians(g, A[..., :3, :3], A[..., :3, 3], 1.0 / transform.scale.to(g.means))


def normalize_gaussians(g: Gaussians, transform: PoseTransform) -> Gaussians:
    """The inverse of :func:`denormalize_gaussians` (world frame -> normalised frame)."""
    A_inv = invert_pose(transform.matrix.to(g.means))
    s = transform.scale.to(g.means)
    return _map_gaussians(g, A_inv[..., :3, :3], s[..., None] * A_inv[..., :3, 3], s)
