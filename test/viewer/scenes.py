"""Known test scenes for the viewer tests."""

from __future__ import annotations

import torch

from ilrm_ros.gaussians import SH_C0, Gaussians


def plate_scene(near_rgb, far_rgb, n: int = 4000, seed: int = 0) -> Gaussians:
    """A 2 m x 2 m plate of flat, randomly turned Gaussians at z = 0 in two colours.

    The halves split across the viewer's default framing direction (from -x, -y, above), so the
    ``near_rgb`` half lies in front of the ``far_rgb`` half and both show left of the panel.
    """
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 2 - 1
    means = torch.cat([xy, 0.01 * torch.randn(n, 1, generator=gen)], 1)
    yaw = torch.rand(n, generator=gen) * torch.pi
    quats = torch.stack([torch.cos(yaw / 2), torch.zeros(n), torch.zeros(n), torch.sin(yaw / 2)], 1)
    scales = torch.tensor([0.07, 0.04, 0.01]).expand(n, 3).clone()
    near = (0.5 * xy[:, 0] + 0.7 * xy[:, 1] < 0)[:, None]
    rgb = torch.where(near, torch.tensor(near_rgb), torch.tensor(far_rgb))
    return Gaussians(means, quats, scales, torch.full((n,), 0.95), ((rgb - 0.5) / SH_C0)[:, None, :])
