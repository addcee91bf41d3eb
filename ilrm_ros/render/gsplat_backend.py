"""GPU rendering with gsplat's ``rasterization`` (classic 3DGS, RGB + expected depth)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from ilrm_ros.gaussians import Gaussians


@contextlib.contextmanager
def exclusive_file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the enclosed block.

    The kernel drops the lock when its holder exits, however it exits, so a killed process never
    leaves a stale lock behind. Without ``fcntl`` (not POSIX) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@functools.cache  # once per process (a failed attempt is not cached: it is tried again)
def load_kernels() -> None:
    """Build (first use on a machine) or load gsplat's CUDA kernels, one process at a time.

    gsplat's JIT build deletes its build folder whenever it finds no finished library, so two
    processes starting together on a fresh machine (a node and a replay, two benchmark lanes)
    undo each other's builds. A file lock beside torch's extension folder serialises them: the
    second process waits, then loads what the first built.
    """
    from torch.utils.cpp_extension import get_default_build_root

    with exclusive_file_lock(Path(get_default_build_root()) / "ilrm_ros_gsplat_build.lock"):
        import gsplat.cuda._backend  # noqa: F401 - the import builds or loads the kernels


def render(
    g: Gaussians, Ks: torch.Tensor, viewmats: torch.Tensor, width: int, height: int,
    backgrounds: torch.Tensor, near: float = 0.01, far: float = 500.0, packed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render CUDA Gaussians into C cameras in one call: unbatched ``[N,...]`` into ``Ks [C,3,3]``,
    or batched ``[B,N,...]`` into ``Ks [B,C,3,3]`` (gsplat's leading batch dimensions).

    Ks in pixels, world-to-camera ``viewmats`` and ``backgrounds [...,C,3]`` like Ks.
    Colours are passed as degree-0 SH coefficients ``[N,1,3]`` with ``sh_degree=0``, so gsplat
    evaluates ``max(0, 0.5 + C0 sh)``; the RGB output is then clipped to [0, 1]. ``packed=False``
    (dense ``[C,N]`` intermediates) is the faster layout for one scene seen by a few cameras.
    Returns ``rgb [...,C,H,W,3]``, expected depth ``[...,C,H,W]`` (0 where empty), ``alpha [...,C,H,W]``.
    Differentiable (training renders through it); inference callers run it under ``inference_mode``.
    """
    load_kernels()
    from gsplat import rasterization  # compiled CUDA kernels; imported only when used

    dev = g.means.device
    f32 = lambda t: t.to(dev, torch.float32).contiguous()  # noqa: E731
    cams = tuple(Ks.shape[:-2])  # (C,) or (B, C)
    if len(g) == 0:
        bg = f32(backgrounds)[..., None, None, :].expand(*cams, height, width, 3).clamp(0.0, 1.0)
        zeros = torch.zeros(*cams, height, width, device=dev)
        return bg.contiguous(), zeros, zeros.clone()
    colors, alphas, _ = rasterization(
        f32(g.means), f32(g.quats), f32(g.scales), f32(g.opacities), f32(g.sh[..., :1, :]),
        f32(viewmats), f32(Ks), int(width), int(height),
        near_plane=near, far_plane=far, sh_degree=0, packed=packed, backgrounds=f32(backgrounds),
        render_mode="RGB+ED", rasterize_mode="classic",
    )
    return colors[..., :3].clamp(0.0, 1.0), colors[..., 3], alphas[..., 0]


def warmup(device: torch.device | str = "cuda") -> float:
    """Render a tiny scene once so gsplat builds/loads its CUDA kernels; returns the seconds it took."""
    device = torch.device(device)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    n = 64
    means = torch.rand(n, 3, generator=gen) - 0.5
    means[:, 2] += 3.0
    g = Gaussians(
        means=means, quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1), scales=torch.full((n, 3), 0.05),
        opacities=torch.full((n,), 0.8), sh=torch.rand(n, 1, 3, generator=gen) - 0.5,
    ).to(device)
    K = torch.tensor([[[32.0, 0.0, 16.0], [0.0, 32.0, 16.0], [0.0, 0.0, 1.0]]], device=device)
    render(g, K, torch.eye(4, device=device)[None], 32, 32, torch.ones(1, 3, device=device))
    torch.cuda.synchronize(device)
    return time.perf_counter() - start
