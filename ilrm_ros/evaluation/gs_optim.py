"""Baseline: per-scene 3D Gaussian Splatting optimisation with gsplat under a wall-clock budget.

Deliberately simple (what a robot could run per window without a learned prior): ``num_points``
Gaussians initialised uniformly at random in the room's bounds with isotropic scales of about
the mean point spacing, random colours and opacity 0.1; Adam on means, log-scales, quaternions,
opacity logits and degree-0 SH colours with the classic 3DGS loss ``0.8 L1 + 0.2 (1 - SSIM)``
over the context views; no densification or pruning. CUDA only (gsplat's rasterizer).
"""

from __future__ import annotations

import math
import time

import torch

from ilrm_ros.gaussians import SH_C0, Gaussians
from ilrm_ros.scene.refine import activate, photometric_loss


def optimise_gaussians(
    images: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_world: torch.Tensor,
    bounds: tuple[torch.Tensor, torch.Tensor],
    budget_s: float,
    num_points: int = 50_000,
    seed: int = 0,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[Gaussians, int]:
    """Fit Gaussians to posed views ``images [V, 3, H, W]`` for ``budget_s`` seconds of wall clock.

    ``bounds`` = (min xyz, max xyz) of the region to initialise in. Returns the Gaussians (world
    frame, detached) and the number of optimisation steps taken.
    """
    from gsplat import rasterization

    from ilrm_ros.render.gsplat_backend import load_kernels

    dev = images.device
    if dev.type != "cuda":
        raise RuntimeError("the 3DGS optimisation baseline needs CUDA (gsplat)")
    load_kernels()
    v, _, h, w = images.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    lo, hi = (b.to(torch.float32).cpu() for b in bounds)
    extent = float((hi - lo).norm())
    spacing = float(torch.prod(hi - lo)) ** (1.0 / 3.0) / num_points ** (1.0 / 3.0)
    means = (lo + (hi - lo) * torch.rand(num_points, 3, generator=gen)).to(dev)
    params = {
        "means": means.requires_grad_(),
        "log_scales": torch.full((num_points, 3), math.log(0.5 * spacing), device=dev).requires_grad_(),
        "quats": torch.randn(num_points, 4, generator=gen).to(dev).requires_grad_(),
        "opacity_logits": torch.full((num_points,), math.log(0.1 / 0.9), device=dev).requires_grad_(),
        "sh": ((torch.rand(num_points, 1, 3, generator=gen) - 0.5) / SH_C0).to(dev).requires_grad_(),
    }
    lrs = {"means": 2e-3 * extent, "log_scales": 1e-2, "quats": 2e-3, "opacity_logits": 5e-2, "sh": 1e-2}
    optimizer = torch.optim.Adam([{"params": [p], "lr": lrs[k]} for k, p in params.items()], eps=1e-15)
    viewmats = torch.linalg.inv(cam_to_world.to(dev, torch.float64)).float()
    Ks = intrinsics.to(dev, torch.float32)
    bg = torch.tensor(background, device=dev, dtype=torch.float32).expand(v, 3)
    target = images.to(torch.float32)
    steps = 0
    torch.cuda.synchronize(dev)
    start = time.perf_counter()
    while True:
        with torch.enable_grad():  # callers may evaluate under no_grad
            loss = _loss(rasterization, params, viewmats, Ks, w, h, bg, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        torch.cuda.synchronize(dev)
        if time.perf_counter() - start >= budget_s:
            break
    with torch.no_grad():
        g = activate(params).detach()
    return g, steps


def _loss(rasterization, params, viewmats, Ks, w, h, bg, target) -> torch.Tensor:
    g = activate(params)
    colors, _, _ = rasterization(
        g.means,
        g.quats,
        g.scales,
        g.opacities,
        g.sh,
        viewmats,
        Ks,
        w,
        h,
        sh_degree=0,
        backgrounds=bg,
        rasterize_mode="classic",
        packed=False,
    )
    return photometric_loss(colors.permute(0, 3, 1, 2), target)
