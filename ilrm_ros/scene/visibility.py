"""Which Gaussians lie on a surface that a camera sees: the content of an honest point cloud.

A feed-forward model also places Gaussians that its own renders never show: behind a wall that
other Gaussians already draw. They cost a render almost nothing, but in a point cloud they are
points past the walls (docs/quality.md, "in room").
"""

from __future__ import annotations

import torch

from ilrm_ros.gaussians import Gaussians


def surface_mask(
    g: Gaussians, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int,
    margin: float = 0.1, near: float = 0.01,
) -> torch.Tensor:
    """Bool ``[N]``: Gaussians whose centre at least one camera sees, i.e. it projects inside that
    camera's ``height x width`` image, in front of it, and no farther than the rendered expected
    depth at its pixel times ``1 + margin``. ``intrinsics [V,3,3]`` (pixel centres at x + 0.5),
    ``cam_to_world [V,4,4]`` (OpenCV). One render of the V views: ~ms on a GPU, seconds on a CPU.
    """
    from ilrm_ros.render import render

    if g.batched:
        raise ValueError("surface_mask takes unbatched Gaussians")
    visible = torch.zeros(len(g), dtype=torch.bool, device=g.means.device)
    if len(g) == 0:
        return visible
    K = torch.as_tensor(intrinsics, dtype=torch.float32, device=g.means.device).reshape(-1, 3, 3)
    c2w = torch.as_tensor(cam_to_world, dtype=torch.float32, device=g.means.device).reshape(-1, 4, 4)
    depth = render(g, K, c2w, width, height).depth
    for v in range(K.shape[0]):
        cam = (g.means.float() - c2w[v, :3, 3]) @ c2w[v, :3, :3]  # world -> camera: R^T (x - t)
        z = cam[:, 2]
        zs = z.clamp_min(near)
        col = torch.floor(K[v, 0, 0] * cam[:, 0] / zs + K[v, 0, 1] * cam[:, 1] / zs + K[v, 0, 2])
        row = torch.floor(K[v, 1, 1] * cam[:, 1] / zs + K[v, 1, 2])
        inside = (z > near) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        idx = torch.nonzero(inside).squeeze(1)
        d = depth[v][row[idx].long(), col[idx].long()]
        visible[idx[(d > 0) & (z[idx] <= d * (1.0 + margin))]] = True
    return visible
