"""Test-time refinement: a few Adam steps on a model's Gaussians against the views it was given.

A feed-forward model does not reproduce its own input views exactly (v26 renders its context
views at about 28 dB on the held-out benchmark), and nothing it renders elsewhere can be sharper.
Per-scene 3DGS optimisation fits them closely but needs seconds from random points. Started from
the model's Gaussians instead, tens of steps (milliseconds each with gsplat) refine colours,
opacities, shapes and positions where the context views disagree with the render. The loss is the
classic 3DGS one (``0.8 L1 + 0.2 (1 - SSIM)``), shared with the per-scene baseline of ``ilrm eval``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ilrm_ros.gaussians import Gaussians

LEARNING_RATES = {"means": 1.6e-4, "log_scales": 5e-3, "quats": 1e-3, "opacity_logits": 2.5e-2, "sh": 2.5e-3}
"""Adam learning rates of the original 3DGS recipe (Kerbl et al. 2023: position, scaling, rotation,
opacity, base colour); the position rate is per metre of the scene's depth scale (median camera
distance of the Gaussians), as 3DGS scales it by the scene's extent."""

DEFAULT_LR_SCALE = 4.0
"""Rates used: 4x the recipe's. At 5-20 steps on the held-out benchmark (v26, 2 and 4 views, H100) it
beat 1x and 2x between the context views; 8x scored up to 0.3 dB higher there but lower beyond them
(docs/quality.md, twenty-fourth session)."""

OPACITY_EPS = 1e-4  # opacities are clamped into [eps, 1 - eps] before taking their logit


def photometric_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The 3DGS image loss ``0.8 L1 + 0.2 (1 - SSIM)`` of ``[N, 3, H, W]`` images in [0, 1]."""
    from pytorch_msssim import ssim

    from ilrm_ros.pipeline.metrics import ssim_window

    win = ssim_window(pred.device, pred.shape[1])
    return 0.8 * (pred - target).abs().mean() + 0.2 * (1.0 - ssim(pred, target, data_range=1.0, win=win))


def depth_scale(g: Gaussians, cam_to_world: torch.Tensor) -> float:
    """Median distance of the Gaussians from the first camera, in the scene's units (1.0 if none)."""
    if len(g) == 0:
        return 1.0
    centre = cam_to_world.reshape(-1, 4, 4)[0, :3, 3].to(g.means.device, torch.float32)
    return max(float((g.means.float() - centre).norm(dim=-1).median()), 1e-3)


def refine_gaussians(
    g: Gaussians,
    images: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_world: torch.Tensor,
    steps: int,
    lr_scale: float = DEFAULT_LR_SCALE,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    should_stop: Callable[[], bool] | None = None,
) -> Gaussians:
    """``g`` (unbatched) after ``steps`` Adam steps fitting its renders to ``images [V, 3, H, W]``.

    ``intrinsics [V, 3, 3]`` in pixels and OpenCV ``cam_to_world [V, 4, 4]`` are the cameras of
    ``images`` (the model's context views). ``lr_scale`` multiplies every rate of
    :data:`LEARNING_RATES`. Renders with gsplat on CUDA, the PyTorch renderer elsewhere (slow and
    memory-hungry there: meant for GPUs). Works under ``no_grad`` and ``inference_mode`` callers;
    returns detached float32 Gaussians, ``g`` itself when ``steps`` is 0 or it is empty.
    ``should_stop``, asked before each step, ends the refinement early (the steps taken so far count).
    """
    from ilrm_ros.render import render

    if steps < 0 or lr_scale <= 0 or not math.isfinite(lr_scale):
        raise ValueError(f"need steps >= 0 and a positive lr_scale, got {steps}, {lr_scale}")
    if g.batched:
        raise ValueError("refine_gaussians takes unbatched Gaussians")
    if steps == 0 or len(g) == 0:
        return g
    h, w = images.shape[-2:]
    dev = g.means.device
    with torch.inference_mode(False), torch.enable_grad():
        # Clones made outside inference mode are ordinary tensors that autograd can use.
        params = {
            "means": g.means.float().clone(),
            "log_scales": g.scales.float().clamp_min(1e-12).log(),
            "quats": g.quats.float().clone(),
            "opacity_logits": torch.logit(g.opacities.float().clamp(OPACITY_EPS, 1 - OPACITY_EPS)),
            "sh": g.sh.float().clone(),
        }
        for p in params.values():
            p.requires_grad_(True)
        rates = dict(LEARNING_RATES, means=LEARNING_RATES["means"] * depth_scale(g, cam_to_world))
        optimizer = torch.optim.Adam(
            [{"params": [p], "lr": rates[k] * lr_scale} for k, p in params.items()], eps=1e-15,
            fused=dev.type == "cuda",  # one kernel per group and step, not a dozen
        )
        target = images.to(dev, torch.float32).clone()
        K = intrinsics.to(dev, torch.float32).clone()
        c2w = cam_to_world.to(dev, torch.float64).clone()
        bg = torch.as_tensor(background, dtype=torch.float32).to(dev)  # once, not a host copy per step
        for _ in range(steps):
            if should_stop is not None and should_stop():
                break
            pred = render(activate(params), K, c2w, w, h, background=bg).rgb
            loss = photometric_loss(pred.permute(0, 3, 1, 2), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return activate(params).detach()


def activate(params: dict[str, torch.Tensor]) -> Gaussians:
    """The Gaussians of raw optimisation parameters ``means``, ``log_scales``, ``quats`` (any norm),
    ``opacity_logits`` and ``sh``, as refinement and the per-scene 3DGS baseline optimise them."""
    return Gaussians(
        means=params["means"],
        quats=F.normalize(params["quats"], dim=-1),
        scales=params["log_scales"].exp(),
        opacities=torch.sigmoid(params["opacity_logits"]),
        sh=params["sh"],
    )
