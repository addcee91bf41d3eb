"""Rendering of Gaussian scenes: gsplat on CUDA, a gsplat-equivalent pure-PyTorch renderer elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import invert_pose

NEAR = 0.01
FAR = 500.0
WHITE = (1.0, 1.0, 1.0)  # the background the models are trained and evaluated against


@dataclass
class RenderResult:
    """Rendered views: ``rgb [C,H,W,3]`` in [0, 1], expected ``depth [C,H,W]`` in metres (0 where
    empty), accumulated ``alpha [C,H,W]``."""

    rgb: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor


def render(
    gaussians: Gaussians, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, width: int, height: int,
    background: Sequence[float] | torch.Tensor = WHITE, backend: str = "auto",
) -> RenderResult:
    """Render Gaussians from C cameras (``intrinsics [C,3,3]`` in pixels, rigid OpenCV ``cam_to_world
    [C,4,4]``; unbatched ``[3,3]``/``[4,4]`` means C = 1). Batched Gaussians ``[B,N,...]`` take
    cameras ``[B,C,...]`` and give results ``[B,C,...]``: one gsplat call for all B scenes (the
    training loss renders a whole batch), a loop over them in the PyTorch renderer.

    ``background`` is one RGB colour or one per camera ``[C,3]``. ``backend``: "gsplat", "torch",
    or "auto" (gsplat for CUDA tensors, the PyTorch renderer otherwise). Both backends compute the
    same classic-3DGS image (near 0.01, far 500, no antialiasing).
    """
    dev = gaussians.means.device
    K = torch.as_tensor(intrinsics, dtype=torch.float32, device=dev)
    c2w = torch.as_tensor(cam_to_world, dtype=torch.float64, device=dev)
    lead = 2 if gaussians.batched else 1  # camera dims: [B,C] or [C]
    if K.dim() == 2 and not gaussians.batched:
        K = K[None]
    if c2w.dim() == 2 and not gaussians.batched:
        c2w = c2w[None]
    if (K.dim() != lead + 2 or c2w.dim() != lead + 2 or K.shape[-2:] != (3, 3) or c2w.shape[-2:] != (4, 4)
            or K.shape[:-2] != c2w.shape[:-2]
            or (gaussians.batched and K.shape[0] != gaussians.opacities.shape[0])):
        want = "[B,C,3,3] and [B,C,4,4] for batched Gaussians" if gaussians.batched else "[C,3,3] and [C,4,4]"
        raise ValueError(f"need intrinsics and cam_to_world {want}, got {tuple(K.shape)}, {tuple(c2w.shape)}")
    viewmats = invert_pose(c2w).float()  # rigid: no general inverse (whose error check waits for the GPU)
    bg = torch.as_tensor(background, dtype=torch.float32, device=dev).reshape(-1, 3).expand(*K.shape[:-2], 3)

    if backend == "auto":
        backend = "gsplat" if dev.type == "cuda" else "torch"
    if backend == "gsplat":
        if dev.type != "cuda":
            raise ValueError("the gsplat backend needs CUDA tensors")
        from ilrm_ros.render import gsplat_backend

        rgb, depth, alpha = gsplat_backend.render(gaussians, K, viewmats, width, height, bg, NEAR, FAR)
    elif backend == "torch":
        from ilrm_ros.render import torch_backend

        if gaussians.batched:
            parts = [torch_backend.render(gaussians.batch(b), K[b], viewmats[b], width, height, bg[b], NEAR, FAR)
                     for b in range(K.shape[0])]
            rgb, depth, alpha = (torch.stack(x) for x in zip(*parts))
        else:
            rgb, depth, alpha = torch_backend.render(gaussians, K, viewmats, width, height, bg, NEAR, FAR)
    else:
        raise ValueError(f"unknown backend {backend!r} (auto, gsplat, torch)")
    return RenderResult(rgb=rgb, depth=depth, alpha=alpha)


def warmup(device: torch.device | str) -> float:
    """Build/load gsplat's CUDA kernels on ``device`` with one tiny render; seconds taken (0.0 on CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0.0
    from ilrm_ros.render import gsplat_backend

    return gsplat_backend.warmup(device)


__all__ = ["RenderResult", "render", "warmup", "NEAR", "FAR"]
