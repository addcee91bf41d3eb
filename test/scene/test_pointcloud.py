"""pack_points: the PointCloud2 layout, RViz colour packing, opacity filter and cap."""

from __future__ import annotations

import numpy as np
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.scene import POINT_FIELDS, benchmark_pack_points, pack_points, unpack_rgb


def make(n: int, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        scales=torch.full((n, 3), 0.01), opacities=torch.rand(n, generator=gen),
        sh=torch.randn(n, 1, 3, generator=gen) * 2,  # some colours beyond [0, 1] before clipping
    )


def test_fields_and_dtype():
    assert POINT_FIELDS == (("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1), ("opacity", 16, 7, 1))
    pts = pack_points(make(10), min_opacity=0.0)
    assert pts.dtype.itemsize == 20 and pts.dtype.names == ("x", "y", "z", "rgb", "opacity")
    assert all(pts.dtype[name] == np.float32 for name in pts.dtype.names)
    assert pts.shape == (10,) and len(pts.tobytes()) == 200  # the PointCloud2 data blob, point_step 20


def test_values_and_packed_colour():
    g = make(500)
    pts = pack_points(g, min_opacity=0.0, max_points=10_000)
    assert np.array_equal(np.stack([pts["x"], pts["y"], pts["z"]], -1), g.means.numpy())
    assert np.array_equal(pts["opacity"], g.opacities.numpy())
    expect = np.round(g.colors().numpy().astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(unpack_rgb(pts), expect)
    u = pts["rgb"].view(np.uint32)
    assert (u >> 24 == 0).all()  # 0x00RRGGBB
    red = Gaussians(g.means[:1], g.quats[:1], g.scales[:1], torch.ones(1), torch.tensor([[[10.0, -10.0, -10.0]]]))
    assert pack_points(red)["rgb"].view(np.uint32)[0] == 0x00FF0000


def test_filter_and_cap_keep_the_most_opaque():
    g = make(2000, seed=3)
    pts = pack_points(g, min_opacity=0.3, max_points=10_000)
    assert np.array_equal(np.sort(pts["opacity"]), np.sort(g.opacities[g.opacities >= 0.3].numpy()))
    capped = pack_points(g, min_opacity=0.3, max_points=100)
    assert len(capped) == 100
    assert np.array_equal(np.sort(capped["opacity"]), np.sort(g.opacities.numpy())[-100:])
    kept = {tuple(p) for p in np.stack([capped["x"], capped["y"], capped["z"]], -1).tolist()}
    top = torch.topk(g.opacities, 100).indices
    assert kept == {tuple(p) for p in g.means[top].tolist()}  # each kept point has its own position
    assert len(pack_points(g, min_opacity=1.5)) == 0


def test_benchmark_pack_points_runs():
    assert benchmark_pack_points(n=20_000, repeats=2, max_points=5_000) > 0
