"""Posed world-frame images -> world-frame Gaussians (normalise, run the model, map back)."""

from __future__ import annotations

import torch

from ..gaussians import Gaussians
from .normalize import denormalize_gaussians, normalize_poses


def model_device(model) -> torch.device:
    """Device of a model (an ``nn.Module`` or anything with a ``device`` attribute)."""
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else next(model.parameters()).device


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_world: torch.Tensor) -> Gaussians:
    """Gaussians in the caller's world frame from context views.

    images ``[B, V, 3, H, W]`` (float in [0, 1] or uint8), intrinsics ``[B, V, 3, 3]`` in pixels,
    cam_to_world ``[B, V, 4, 4]`` OpenCV in any world frame; or the same without the batch
    dimension, which gives unbatched Gaussians. ``H, W`` must already suit the model (see
    :func:`fit_to_model`). ``model`` is an iLRM/GS-LRM module or a :class:`CompiledForward`.
    On CUDA the model runs its transformer under bf16 autocast.
    """
    unbatched = images.dim() == 4
    if unbatched:
        images, intrinsics, cam_to_world = images[None], intrinsics[None], cam_to_world[None]
    device = model_device(model)
    images = images.to(device)
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    normalized, transform = normalize_poses(cam_to_world.to(device, torch.float32))
    g = model(images, intrinsics.to(device, torch.float32), normalized)
    g = denormalize_gaussians(g, transform)
    return g.batch(0) if unbatched else g
