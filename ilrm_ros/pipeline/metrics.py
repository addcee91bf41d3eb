"""Image quality metrics on [0, 1] images, channels last (``HxWx3`` or ``[N, H, W, 3]``), numpy or torch."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from pytorch_msssim import ssim as _ssim


def _pair(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).float()
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).float().to(a.device)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB over all pixels (inf for identical images)."""
    a, b = _pair(a, b)
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def ssim(a, b) -> float:
    """Mean structural similarity (``pytorch_msssim.ssim``, 11x11 Gaussian window), averaged over the batch."""
    a, b = _pair(a, b)
    if a.dim() == 3:
        a, b = a[None], b[None]
    return float(_ssim(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2), data_range=1.0, size_average=True))


@functools.lru_cache(maxsize=16)
def ssim_window(device: torch.device, channels: int, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """pytorch_msssim's default SSIM window (1-D Gaussian, 11 taps, sigma 1.5) for ``channels`` channels,
    kept on ``device``: pass it as ``win`` in loss terms. Left to the library it is built on the host at
    every call and copied over, a copy from pageable memory that waits for the GPU: once per
    optimisation step."""
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).reshape(1, 1, 1, size).repeat(channels, 1, 1, 1).to(device)
