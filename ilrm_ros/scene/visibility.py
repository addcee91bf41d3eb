"""Which Gaussians lie on a surface that a camera sees: the content of an honest point cloud.

A feed-forward model also places Gaussians that its own renders never show: behind a wall that
other Gaussians already draw. They cost a render almost nothing, but in a point cloud they are
points past the walls (docs/quality.md, "in room").
"""

from __future__ import annotations

import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import world_to_camera


def seen_by(
    points: torch.Tensor, K: torch.Tensor, cam_to_world: torch.Tensor, depth: torch.Tensor,
    margin: float, near: float = 0.01,
) -> torch.Tensor:
    """Bool ``[N]``: world ``points [N,3]`` that one camera (``K [3,3]``, pixel centres at x + 0.5;
    OpenCV ``cam_to_world [4,4]``) sees: inside its image, in front of it (z > ``near``) and no
    farther than ``depth [H,W]`` at their pixel times ``1 + margin`` (so never where depth <= 0)."""
    height, width = depth.shape
    seen = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    cam = world_to_camera(points, cam_to_world)
    z = cam[:, 2]
    zs = z.clamp_min(near)
    col = torch.floor(K[0, 0] * cam[:, 0] / zs + K[0, 1] * cam[:, 1] / zs + K[0, 2])
    row = torch.floor(K[1, 1] * cam[:, 1] / zs + K[1, 2])
    inside = (z > near) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    idx = torch.nonzero(inside).squeeze(1)
    d = depth[row[idx].long(), col[idx].long()]
    seen[idx[z[idx] <= d * (1.0 + margin)]] = True
    return seen


def surface_mask(
    g: Gaussians, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int,
    margin: float = 0.1, near: float = 0.01,
) -> torch.Tensor:
    """Bool ``[N]``: Gaussians whose centre at least one camera sees, i.e. it projects inside that
    camera's ``height x width`` image, in front of it, and no farther than the rendered expected
    depth at its pixel times ``1 + margin``. ``intrinsics [V,3,3]`` (pixel centres at x + 0.5),
    ``cam_to_world [V,4,4]`` (OpenCV). One render of the V views: about 3 ms on an H100, a few hundred ms on a CPU.
    """
    from ilrm_ros.render import render

    if g.batched:
        raise ValueError("surface_mask takes unbatched Gaussians")
    visible = torch.zeros(len(g), dtype=torch.bool, device=g.means.device)
    if len(g) == 0:
        return visible
    K = torch.as_tensor(intrinsics, dtype=torch.float32, device=g.means.device).reshape(-1, 3, 3)
    c2w = torch.as_tensor(cam_to_world, dtype=torch.float32, device=g.means.device).reshape(-1, 4, 4)
    depth = render(g, K, c2w, width, height).depth  # 0 where empty: nothing is seen there
    for v in range(K.shape[0]):
        visible |= seen_by(g.means.float(), K[v], c2w[v], depth[v], margin, near)
    return visible
