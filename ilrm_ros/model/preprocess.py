"""Fitting camera images to the model's input size with exact intrinsics."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_to_model(
    image: torch.Tensor | np.ndarray, intrinsics: torch.Tensor | np.ndarray, size: int | tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize so the image covers ``size`` (short side to target), then centre-crop to it.

    image: a torch ``[..., 3, H, W]`` or a numpy ``H x W x 3`` RGB array, float in [0, 1] or uint8;
    intrinsics: ``[..., 3, 3]`` in pixels (torch or numpy); size: ``(H, W)`` or one int.
    Returns (float32 torch image ``[..., 3, Ht, Wt]`` in [0, 1], adjusted torch intrinsics).
    Intrinsics use the model's pixel-centre convention (centre of pixel x at x + 0.5), under which
    a resize by factor k maps fx, cx to k * fx, k * cx exactly and a crop shifts cx by its offset.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"numpy images must be H x W x 3 RGB, got shape {image.shape}")
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    intrinsics = torch.as_tensor(intrinsics)
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = image.shape[-2:]
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif not image.is_floating_point():
        raise TypeError(f"image must be float in [0, 1] or uint8, got {image.dtype}")
    else:
        image = image.float()
    factor = max(th / h, tw / w)
    # Round to the nearest pixel, but never below the target (the crop must fit).
    nh, nw = max(th, round(h * factor)), max(tw, round(w * factor))
    if (nh, nw) != (h, w):
        lead = image.shape[:-3]
        flat = image.reshape(-1, *image.shape[-3:])
        flat = F.interpolate(flat, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        image = flat.reshape(*lead, *flat.shape[-3:]).clamp(0.0, 1.0)
    top, left = (nh - th) // 2, (nw - tw) // 2
    image = image[..., top : top + th, left : left + tw]
    sx, sy = nw / w, nh / h
    if not intrinsics.is_floating_point():
        intrinsics = intrinsics.double()
    K = intrinsics.clone()
    K[..., 0, :2] = intrinsics[..., 0, :2] * sx  # fx (and skew)
    K[..., 1, 1] = intrinsics[..., 1, 1] * sy
    K[..., 0, 2] = intrinsics[..., 0, 2] * sx - left
    K[..., 1, 2] = intrinsics[..., 1, 2] * sy - top
    return image.contiguous(), K
