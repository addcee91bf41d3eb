"""Gaussian centres as a packed point array for sensor_msgs/PointCloud2 (no ROS import here)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from ilrm_ros.gaussians import SH_C0, Gaussians

FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
POINT_DTYPE = np.dtype(
    {"names": ["x", "y", "z", "rgb", "opacity"], "formats": ["<f4"] * 5, "offsets": [0, 4, 8, 12, 16], "itemsize": 20}
)
POINT_FIELDS: tuple[tuple[str, int, int, int], ...] = tuple(
    (name, POINT_DTYPE.fields[name][1], FLOAT32, 1) for name in POINT_DTYPE.names
)
"""(name, offset, datatype, count) per field, as sensor_msgs/PointField wants; point_step = 20 bytes."""


def pack_points(g: Gaussians, min_opacity: float = 0.1, max_points: int = 200_000) -> np.ndarray:
    """Structured array (``POINT_DTYPE``) of the Gaussians with opacity >= ``min_opacity``, at most
    ``max_points`` of them (the most opaque are kept; order otherwise unspecified).

    ``rgb`` is RViz's packed colour: the uint32 ``0x00RRGGBB`` (8-bit channels, rounded from
    ``g.colors()``) reinterpreted as float32.
    """
    if g.batched:
        raise ValueError("pack_points takes unbatched Gaussians")
    op = g.opacities.detach()
    idx = torch.nonzero(op >= min_opacity).squeeze(1)
    if idx.numel() > max_points:
        top = torch.topk(op[idx], max(int(max_points), 0), sorted=False).indices
        idx = idx[top]
    full = idx.numel() == len(g)
    pick = (lambda t: t.detach()) if full else (lambda t: t.detach()[idx])  # noqa: E731
    colors = (0.5 + SH_C0 * pick(g.sh[:, 0, :]).float()).clamp(0.0, 1.0)  # == Gaussians.colors()
    rgb8 = (colors * 255.0 + 0.5).to(torch.int32)
    packed = (rgb8[:, 0] << 16) | (rgb8[:, 1] << 8) | rgb8[:, 2]
    out = np.empty((idx.numel(), 5), dtype="<f4")
    out[:, 0:3] = pick(g.means).to("cpu", torch.float32).numpy()
    out[:, 3] = packed.cpu().numpy().view(np.float32)
    out[:, 4] = pick(op).to("cpu", torch.float32).numpy()
    return out.view(POINT_DTYPE).reshape(-1)


def unpack_rgb(points: np.ndarray) -> np.ndarray:
    """uint8 [N,3] colours back from the packed ``rgb`` field."""
    u = np.ascontiguousarray(points["rgb"]).view(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], -1).astype(np.uint8)


def benchmark_pack_points(n: int = 500_000, repeats: int = 7, max_points: int = 200_000, seed: int = 0) -> float:
    """Median seconds of :func:`pack_points` on ``n`` random Gaussians (uniform opacities: a tenth
    below the default cut of 0.1, the rest capped to ``max_points``)."""
    gen = torch.Generator().manual_seed(seed)
    g = Gaussians(
        means=torch.randn(n, 3, generator=gen), quats=torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4),
        scales=torch.full((n, 3), 0.01), opacities=torch.rand(n, generator=gen), sh=torch.randn(n, 1, 3, generator=gen),
    )
    pack_points(g, max_points=max_points)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pack_points(g, max_points=max_points)
        times.append(time.perf_counter() - t)
    return statistics.median(times)
