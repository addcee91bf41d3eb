"""Per-pixel camera rays, Plücker features and (un)patchifying.

Conventions (as the published model was trained): pixel centres at ``(x + 0.5, y + 0.5)``,
direction ``d = normalise(R @ [(x + 0.5 - cx) / fx, (y + 0.5 - cy) / fy, 1])``, origin ``o`` =
camera centre, moment ``m = o x d``. Everything is vectorised over batch, views and pixels and
is channels-last (``[B, V, H, W, C]``) so that patchifying is one reshape/permute.
"""

from __future__ import annotations

import torch

_GRID_CACHE: dict[tuple, torch.Tensor] = {}


def pixel_centres(height: int, width: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[H, W, 2]`` pixel-centre coordinates ``(x + 0.5, y + 0.5)``, cached per shape/device.

    Under ``torch.compile`` the grid is built inside the graph instead: a traced cache lookup would
    make each compiled graph depend on what the cache held when it was traced (a recompile later).
    """
    if _compiling():
        return _grid(height, width, device, dtype)
    key = (height, width, str(device), dtype)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        grid = _GRID_CACHE[key] = _grid(height, width, device, dtype)
    return grid


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling is not None and is_compiling())


def _grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def camera_rays(
    intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins ``[..., 3]`` and unit world directions ``[..., H, W, 3]``.

    intrinsics: ``[..., 3, 3]`` in pixels (fx, fy, cx, cy used; no skew); cam_to_world:
    ``[..., 4, 4]`` OpenCV convention.
    """
    grid = pixel_centres(height, width, intrinsics.device, intrinsics.dtype)  # [H, W, 2]
    focal = torch.stack((intrinsics[..., 0, 0], intrinsics[..., 1, 1]), dim=-1)[..., None, None, :]
    centre = intrinsics[..., :2, 2][..., None, None, :]
    xy = (grid - centre) / focal  # [..., H, W, 2]
    rot = cam_to_world[..., :3, :3]
    # R @ [x, y, 1] = x * R[:, 0] + y * R[:, 1] + R[:, 2], without materialising [x, y, 1].
    dirs = (
        xy[..., 0:1] * rot[..., None, None, :, 0]
        + xy[..., 1:2] * rot[..., None, None, :, 1]
        + rot[..., None, None, :, 2]
    )
    dirs = dirs * torch.rsqrt((dirs * dirs).sum(-1, keepdim=True))
    return cam_to_world[..., :3, 3], dirs


def plucker(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """``[m, d]`` (6 channels) for origins ``[..., 3]`` and directions ``[..., H, W, 3]``."""
    o = origins[..., None, None, :].expand_as(dirs)
    return torch.cat((torch.linalg.cross(o, dirs, dim=-1), dirs), dim=-1)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, V, H, W, C]`` -> ``[B, V * (H/p) * (W/p), p * p * C]``.

    Tokens are ordered (view, patch row, patch column); each token's features are ordered
    (row in patch, column in patch, channel).
    """
    b, v, h, w, c = x.shape
    x = x.reshape(b, v, h // patch, patch, w // patch, patch, c).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, v * (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, views: int, height: int, width: int, patch: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, T, p * p * C]`` -> ``[B, V * H * W, C]`` (view, row, col)."""
    b = tokens.shape[0]
    hh, ww = height // patch, width // patch
    c = tokens.shape[-1] // (patch * patch)
    x = tokens.reshape(b, views, hh, ww, patch, patch, c).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, views * height * width, c)
