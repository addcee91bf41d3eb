"""The pure-PyTorch renderer against analytic cases and an independent per-pixel reference."""

from __future__ import annotations

import math

import pytest
import torch

from ilrm_ros.gaussians import SH_C0, Gaussians
from ilrm_ros.geometry import invert_pose, pose_from_quat, quat_normalize
from ilrm_ros.render import render, torch_backend
from ilrm_ros.render.bench import orbit_cameras, pinhole, random_gaussians

W = H = 33
F = 50.0
K = torch.tensor([[F, 0.0, 16.5], [0.0, F, 16.5], [0.0, 0.0, 1.0]])  # principal point on pixel (16, 16)'s centre
C2W = pose_from_quat(quat_normalize(torch.tensor([0.9, 0.1, -0.3, 0.2])), torch.tensor([0.5, -1.0, 2.0]))


def sh_for(rgb) -> torch.Tensor:
    """Degree-0 SH coefficients [1,3] giving colour ``rgb``."""
    return ((torch.tensor(rgb, dtype=torch.float32) - 0.5) / SH_C0)[None]


def gaussians_in_camera(points, scales, opacities, colors, c2w=C2W) -> Gaussians:
    """Isotropic Gaussians placed at camera-frame points (world frame through ``c2w``)."""
    p = torch.tensor(points, dtype=torch.float32)
    world = p @ c2w[:3, :3].T + c2w[:3, 3]
    n = p.shape[0]
    return Gaussians(
        means=world,
        quats=quat_normalize(torch.randn(n, 4, generator=torch.Generator().manual_seed(1))),  # any rotation
        scales=torch.tensor(scales, dtype=torch.float32)[:, None].expand(n, 3).contiguous(),
        opacities=torch.tensor(opacities, dtype=torch.float32),
        sh=torch.stack([sh_for(c) for c in colors]),
    )


def test_projection_matches_pinhole_and_ewa():
    X = torch.tensor([0.3, -0.2, 2.5])
    s = 0.02
    g = gaussians_in_camera([X.tolist()], [s], [0.8], [(0.2, 0.4, 0.6)])
    proj = torch_backend.project(g, K, invert_pose(C2W), W, H)
    uvw = K @ X
    assert torch.allclose(proj["means2d"][0], uvw[:2] / uvw[2], atol=1e-4)
    assert proj["depths"][0].item() == pytest.approx(2.5, abs=1e-5)
    # Isotropic covariance s^2 I through J = [[f/z, 0, -f x/z^2], [0, f/z, -f y/z^2]]: s^2 J J^T + 0.3 I.
    x, y, z = X.tolist()
    J = torch.tensor([[F / z, 0.0, -F * x / z**2], [0.0, F / z, -F * y / z**2]])
    cov = s**2 * J @ J.T + 0.3 * torch.eye(2)
    assert torch.allclose(proj["cov2d"][0], torch.tensor([cov[0, 0], cov[0, 1], cov[1, 1]]), rtol=1e-4)
    assert torch.allclose(proj["conics"][0], torch.tensor([*torch.linalg.inv(cov)[0], torch.linalg.inv(cov)[1, 1]]),
                          rtol=1e-4)


def test_single_gaussian_footprint_colour_and_depth():
    s, z, op = 0.04, 2.0, 0.8
    color, bg = (0.9, 0.3, 0.1), torch.tensor([0.2, 0.5, 1.0])
    g = gaussians_in_camera([[0.0, 0.0, z]], [s], [op], [color])
    r = render(g, K, C2W, W, H, background=bg)
    assert r.rgb.shape == (1, H, W, 3) and r.depth.shape == (1, H, W) and r.alpha.shape == (1, H, W)
    var = (F * s / z) ** 2 + 0.3  # sigma_px^2 = (f s / z)^2 plus the 0.3 px^2 low-pass
    centre_row = r.alpha[0, 16]
    for dx in range(-16, 17):
        expected = op * math.exp(-0.5 * dx * dx / var)
        expected = expected if expected >= 1 / 255 else 0.0
        # 1e-5: float32 through a rotated, translated pose moves the values by a few ulps, more on
        # some CPUs' vector paths (2.3e-6 seen on an AMD EPYC); leaving out the 0.3 low-pass moves them by up to 0.06
        assert centre_row[16 + dx].item() == pytest.approx(expected, abs=1e-5), dx
    assert r.alpha[0].argmax().item() == 16 * W + 16  # peak at K @ X / z
    expect_rgb = op * torch.tensor(color) + (1 - op) * bg
    assert torch.allclose(r.rgb[0, 16, 16], expect_rgb, atol=1e-6)
    hit = r.alpha[0] > 0
    assert torch.allclose(r.depth[0][hit], torch.full_like(r.depth[0][hit], z), rtol=1e-5)
    assert (r.depth[0][~hit] == 0).all() and torch.allclose(r.rgb[0][~hit], bg.expand(int((~hit).sum()), 3))


@pytest.mark.parametrize("swap", [False, True])
def test_two_gaussians_composite_front_to_back(swap):
    za, zb = (3.0, 2.0) if swap else (2.0, 3.0)
    oa, ob = 0.6, 0.7
    ca, cb, bg = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0])
    g = gaussians_in_camera([[0, 0, za], [0, 0, zb]], [0.05, 0.05], [oa, ob], [ca.tolist(), cb.tolist()])
    r = render(g, K, C2W, W, H, background=bg)
    if not swap:  # a in front
        w_a, w_b = oa, (1 - oa) * ob
    else:
        w_b, w_a = ob, (1 - ob) * oa
    T = (1 - oa) * (1 - ob)
    assert torch.allclose(r.rgb[0, 16, 16], w_a * ca + w_b * cb + T * bg, atol=1e-6)
    assert r.alpha[0, 16, 16].item() == pytest.approx(1 - T, abs=1e-6)
    assert r.depth[0, 16, 16].item() == pytest.approx((w_a * za + w_b * zb) / (w_a + w_b), rel=1e-6)
    front = ca if not swap else cb
    assert int(r.rgb[0, 16, 16].argmax()) == int(front.argmax())  # the front colour dominates


def test_compositing_stops_before_transmittance_drops_below_1e4():
    # alpha is capped at 0.999: after the first Gaussian T = 1e-3; the second would take it to 1e-6 <= 1e-4,
    # so (as in gsplat) it and everything behind it are skipped.
    cols = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    g = gaussians_in_camera([[0, 0, 2.0], [0, 0, 2.5], [0, 0, 3.0]], [0.05] * 3, [1.0, 1.0, 1.0], cols)
    bg = torch.tensor([0.5, 0.5, 0.5])
    r = render(g, K, C2W, W, H, background=bg)
    assert torch.allclose(r.rgb[0, 16, 16], 0.999 * torch.tensor(cols[0]) + 0.001 * bg, atol=1e-6)
    assert r.alpha[0, 16, 16].item() == pytest.approx(0.999, abs=1e-6)
    assert r.depth[0, 16, 16].item() == pytest.approx(2.0, rel=1e-6)


def test_culling_near_plane_behind_and_transparent():
    g = gaussians_in_camera([[0, 0, 0.005], [0, 0, -2.0], [0, 0, 2.0]], [0.05] * 3, [0.9, 0.9, 0.003],
                            [(1, 0, 0)] * 3)
    r = render(g, K, C2W, W, H, background=(0.1, 0.2, 0.3))
    assert (r.alpha == 0).all() and (r.depth == 0).all()
    assert torch.allclose(r.rgb, torch.tensor([0.1, 0.2, 0.3]).expand_as(r.rgb))
    empty = render(Gaussians.empty(), K, C2W, W, H, background=(0.1, 0.2, 0.3))
    assert torch.equal(empty.rgb, r.rgb) and (empty.alpha == 0).all()


def naive_render(proj: dict, width: int, height: int, bg: torch.Tensor):
    """Per-pixel sequential front-to-back loop over all Gaussians (no tiles), gsplat's rules."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    px, py = xs.flatten(), ys.flatten()
    T = torch.ones(px.numel())
    done = torch.zeros(px.numel(), dtype=torch.bool)
    acc = torch.zeros(px.numel(), 4)
    feats = torch.cat([proj["colors"], proj["depths"][:, None]], 1)
    for k in range(proj["ids"].numel()):
        (mx, my), (a, b, c) = proj["means2d"][k], proj["conics"][k]
        dx, dy = mx - px, my - py
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(proj["opacities"][k] * torch.exp(-sigma), max=0.999)
        ok = (alpha >= 1 / 255) & ~done
        next_T = T * (1 - alpha)
        stop = ok & (next_T <= 1e-4)
        done |= stop
        ok &= ~stop
        acc[ok] += (alpha * T)[ok, None] * feats[k]
        T = torch.where(ok, next_T, T)
    alpha = 1 - T
    rgb = (acc[:, :3] + T[:, None] * bg).clamp(0, 1).view(height, width, 3)
    return rgb, (acc[:, 3] / alpha.clamp_min(1e-10)).view(height, width), alpha.view(height, width)


@pytest.mark.parametrize("opaque", [False, True])
def test_tiled_renderer_matches_per_pixel_reference(opaque):
    w, h = 40, 36
    Kr = pinhole(w, h)
    c2w = orbit_cameras(2)[1]
    g = random_gaussians(250, Kr, c2w, w, h, footprint_px=2.5, seed=3)
    if opaque:
        g.opacities = 0.95 + 0.05 * torch.rand(250, generator=torch.Generator().manual_seed(0))
    bg = torch.tensor([0.3, 0.6, 0.9])
    proj = torch_backend.project(g, Kr, invert_pose(c2w), w, h)
    ref = naive_render(proj, w, h, bg)
    for tile, chunk, max_el in [(8, 256, 1 << 21), (16, 256, 1 << 21), (8, 3, 500), (16, 7, 1 << 14), (4, 5, 400)]:
        out = torch_backend.rasterize(proj, w, h, bg, max_elements=max_el, gaussians_per_chunk=chunk, tile=tile)
        assert (out[0] - ref[0]).abs().max() < 2e-6, (tile, chunk)
        assert (out[2] - ref[2]).abs().max() < 2e-6, (tile, chunk)
        hit = ref[2] > 1e-3
        assert ((out[1] - ref[1]).abs()[hit] / ref[1][hit]).max() < 1e-5, (tile, chunk)


def test_batched_cameras_and_unbatched_inputs_agree():
    w, h = 32, 24
    Kr = pinhole(w, h)
    c2w = orbit_cameras(2)
    g = random_gaussians(150, Kr, c2w[0], w, h, seed=5)
    both = render(g, Kr.expand(2, 3, 3), c2w, w, h, background=[[1, 1, 1], [0, 0, 0]])
    for i, bg in enumerate([(1, 1, 1), (0, 0, 0)]):
        one = render(g, Kr, c2w[i], w, h, background=bg)
        assert torch.equal(one.rgb[0], both.rgb[i]) and torch.equal(one.depth[0], both.depth[i])
        assert torch.equal(one.alpha[0], both.alpha[i])
    assert not torch.equal(both.alpha[0], both.alpha[1])


def _two_scenes(n: int, K: torch.Tensor, c2w: torch.Tensor, w: int, h: int) -> Gaussians:
    """Two different random scenes of ``n`` Gaussians, batched ``[2, n, ...]``."""
    a, b = (random_gaussians(n, K, c2w[0], w, h, seed=s) for s in (7, 8))
    return Gaussians(**{f: torch.stack([getattr(a, f), getattr(b, f)]) for f in a.__dataclass_fields__})


def test_batched_scenes_render_like_each_scene_alone():
    w, h = 32, 24
    K = pinhole(w, h)
    c2w = orbit_cameras(3)
    g = _two_scenes(120, K, c2w, w, h)
    Ks, poses = K.expand(2, 3, 3, 3), torch.stack([c2w, c2w.flip(0)])  # [B=2, C=3, ...]
    out = render(g, Ks, poses, w, h, background=[[1, 1, 1], [0, 0, 0], [0, 1, 0]])
    assert out.rgb.shape == (2, 3, h, w, 3) and out.depth.shape == (2, 3, h, w)
    for b in range(2):
        one = render(g.batch(b), Ks[b], poses[b], w, h, background=[[1, 1, 1], [0, 0, 0], [0, 1, 0]])
        assert torch.equal(one.rgb, out.rgb[b]) and torch.equal(one.depth, out.depth[b])
    assert not torch.equal(out.rgb[0], out.rgb[1])
    with pytest.raises(ValueError, match=r"\[B,C,3,3\]"):
        render(g, K.expand(3, 3, 3), c2w, w, h)  # batched scenes need a camera set per scene


def test_backend_selection():
    g = random_gaussians(10, pinhole(16, 16), torch.eye(4), 16, 16)
    with pytest.raises(ValueError):
        render(g, pinhole(16, 16), torch.eye(4), 16, 16, backend="gsplat")
    with pytest.raises(ValueError):
        render(g, pinhole(16, 16), torch.eye(4), 16, 16, backend="nope")
    auto = render(g, pinhole(16, 16), torch.eye(4), 16, 16)
    assert torch.equal(auto.rgb, render(g, pinhole(16, 16), torch.eye(4), 16, 16, backend="torch").rgb)


def test_cpu_benchmark_reports_timings():
    from ilrm_ros.render.bench import benchmark_render

    out = benchmark_render(num_gaussians=500, width=32, height=24, device="cpu", cpu_iters=2)
    assert out["backend"] == "torch" and out["median_ms"] > 0 and out["fps"] > 0
