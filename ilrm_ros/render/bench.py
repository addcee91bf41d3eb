"""Renderer benchmark (gsplat on CUDA) and the gsplat-vs-PyTorch agreement check."""

from __future__ import annotations

import math
import statistics
import time

import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import pose_from_quat, quat_normalize
from ilrm_ros.render import render, warmup


def pinhole(width: int, height: int, fov_deg: float = 60.0) -> torch.Tensor:
    """Intrinsics [3,3] of a centred pinhole camera with the given horizontal field of view."""
    f = 0.5 * width / math.tan(math.radians(fov_deg / 2))
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def orbit_cameras(num: int, step_deg: float = 4.0, step_m: float = 0.15) -> torch.Tensor:
    """``num`` camera-to-world poses [num,4,4]: the first at the origin looking along +z, each next one
    shifted ``step_m`` along x and turned ``step_deg`` about y (so they share most of the view)."""
    poses = []
    for i in range(num):
        a = math.radians(step_deg * i)
        q = torch.tensor([math.cos(a / 2), 0.0, math.sin(a / 2), 0.0])
        poses.append(pose_from_quat(q, torch.tensor([step_m * i, 0.02 * i, 0.0])))
    return torch.stack(poses)


def random_gaussians(
    num: int, K: torch.Tensor, cam_to_world: torch.Tensor, width: int, height: int,
    depth_range: tuple[float, float] = (1.0, 6.0), footprint_px: float = 2.0, seed: int = 0,
) -> Gaussians:
    """Random Gaussians spread over a camera's view (world frame), sized like model output:
    projected std-dev about ``footprint_px`` pixels, random anisotropy, rotation, colour, opacity."""
    gen = torch.Generator().manual_seed(seed)
    z = depth_range[0] + (depth_range[1] - depth_range[0]) * torch.rand(num, generator=gen)
    u = torch.rand(num, generator=gen) * width * 1.1 - 0.05 * width
    v = torch.rand(num, generator=gen) * height * 1.1 - 0.05 * height
    cam = torch.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
    means = cam @ cam_to_world[:3, :3].T.float() + cam_to_world[:3, 3].float()
    scales = (footprint_px * z / K[0, 0])[:, None] * torch.exp(0.4 * torch.randn(num, 3, generator=gen))
    return Gaussians(
        means=means,
        quats=quat_normalize(torch.randn(num, 4, generator=gen)),
        scales=scales,
        opacities=0.02 + 0.97 * torch.rand(num, generator=gen),
        sh=torch.randn(num, 1, 3, generator=gen),
    )


def _time_gsplat(g, K, c2w, width, height, iters, packed) -> tuple[list[float], float]:
    from ilrm_ros.render import gsplat_backend

    viewmats = torch.linalg.inv(c2w.double()).float()
    bg = torch.ones(K.shape[0], 3, device=K.device)
    for _ in range(10):
        gsplat_backend.render(g, K, viewmats, width, height, bg, packed=packed)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        gsplat_backend.render(g, K, viewmats, width, height, bg, packed=packed)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times, (torch.cuda.max_memory_allocated() - base) / 2**20


def benchmark_render(
    num_gaussians: int = 131_072, width: int = 640, height: int = 480, iters: int = 200, device: str = "cuda",
    cpu_iters: int = 5,
) -> dict:
    """Time rendering (RGB + expected depth, one camera) of random model-like Gaussians.

    On CUDA: gsplat, timed with CUDA events, median/p90 over ``iters`` renders after 10 warm-up
    renders, for the default (``packed=False``) and the packed layout, with the peak extra GPU
    memory of a render and the one-off kernel warm-up time. On CPU: the PyTorch renderer, wall
    clock over ``cpu_iters`` renders after one warm-up.
    """
    dev = torch.device(device)
    K = pinhole(width, height)
    c2w = torch.eye(4)
    g = random_gaussians(num_gaussians, K, c2w, width, height).to(dev)
    out = {"num_gaussians": num_gaussians, "width": width, "height": height, "device": str(dev)}
    if dev.type != "cuda":
        render(g, K, c2w, width, height, backend="torch")
        times = []
        for _ in range(cpu_iters):
            t = time.perf_counter()
            render(g, K, c2w, width, height, backend="torch")
            times.append(1000.0 * (time.perf_counter() - t))
        out.update(backend="torch", iters=cpu_iters, median_ms=statistics.median(times), p90_ms=max(times),
                   threads=torch.get_num_threads())
        out["fps"] = 1000.0 / out["median_ms"]
        return out
    out.update(backend="gsplat", iters=iters, warmup_s=warmup(dev), device=torch.cuda.get_device_name(dev))
    K, c2w = K[None].to(dev), c2w[None].to(dev)
    for packed in (False, True):
        times, peak = _time_gsplat(g, K, c2w, width, height, iters, packed)
        key = "packed_" if packed else ""
        out[key + "median_ms"] = statistics.median(times)
        out[key + "p90_ms"] = sorted(times)[int(0.9 * (len(times) - 1))]
        out[key + "peak_mem_mb"] = peak
    out["fps"] = 1000.0 / out["median_ms"]
    return out


def compare_backends(
    num_gaussians: int = 4000, width: int = 128, height: int = 128, num_cameras: int = 2, seed: int = 0,
    device: str = "cuda",
) -> dict:
    """Render one random scene with gsplat (CUDA) and the PyTorch renderer (CPU) from ``num_cameras``
    cameras and report the mean/max absolute differences of RGB, alpha and expected depth (depth
    compared where both alphas exceed 0.5, relative to the depth)."""
    K = pinhole(width, height)
    c2w = orbit_cameras(num_cameras)
    g = random_gaussians(num_gaussians, K, c2w[0], width, height, seed=seed)
    Ks = K[None].expand(num_cameras, 3, 3)
    bg = (0.2, 0.4, 0.9)
    t0 = time.perf_counter()
    cpu = render(g, Ks, c2w, width, height, background=bg, backend="torch")
    cpu_s = time.perf_counter() - t0
    dev = torch.device(device)
    gpu = render(g.to(dev), Ks.to(dev), c2w.to(dev), width, height, background=bg, backend="gsplat")
    torch.cuda.synchronize(dev)
    gpu = type(gpu)(*(t.cpu() for t in (gpu.rgb, gpu.depth, gpu.alpha)))
    mask = (cpu.alpha > 0.5) & (gpu.alpha > 0.5)
    rel = ((cpu.depth - gpu.depth).abs() / cpu.depth.clamp_min(1e-6))[mask]
    return {
        "rgb_mad": float((cpu.rgb - gpu.rgb).abs().mean()),
        "rgb_max": float((cpu.rgb - gpu.rgb).abs().max()),
        "alpha_mad": float((cpu.alpha - gpu.alpha).abs().mean()),
        "depth_rel_mad": float(rel.mean()) if rel.numel() else 0.0,
        "depth_rel_max": float(rel.max()) if rel.numel() else 0.0,
        "depth_mask_frac": float(mask.float().mean()),
        "cpu_render_s": cpu_s,
        "num_gaussians": num_gaussians, "width": width, "height": height, "num_cameras": num_cameras,
    }
