"""gsplat (CUDA) against the PyTorch reference renderer; runs only where CUDA is available."""

from __future__ import annotations

import pytest
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.render import render, warmup
from ilrm_ros.render.bench import compare_backends, orbit_cameras, pinhole, random_gaussians

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_warmup_returns_seconds():
    assert warmup("cuda") >= 0.0
    assert warmup("cpu") == 0.0


def test_gsplat_matches_cpu_renderer_two_cameras():
    stats = compare_backends(num_gaussians=4000, width=128, height=128, num_cameras=2)
    assert stats["rgb_mad"] < 1 / 255, stats
    assert stats["alpha_mad"] < 1 / 255, stats
    assert stats["depth_mask_frac"] > 0.5, stats
    assert stats["depth_rel_mad"] < 1e-3, stats


def test_gsplat_batched_scenes_match_each_scene_and_its_gradient():
    """What the training loss relies on: one call for B scenes gives each scene's image and gradient."""
    w, h = 64, 48
    K = pinhole(w, h)
    c2w = orbit_cameras(2)
    scenes = [random_gaussians(2000, K, c2w[0], w, h, seed=s).to("cuda") for s in (3, 4)]
    fields = scenes[0].__dataclass_fields__
    Ks, poses = K.expand(2, 2, 3, 3).cuda(), torch.stack([c2w, c2w.flip(0)]).cuda()
    batched = {f: torch.stack([getattr(s, f) for s in scenes]).requires_grad_(f == "means") for f in fields}
    out = render(Gaussians(**batched), Ks, poses, w, h)
    assert out.rgb.shape == (2, 2, h, w, 3)
    (out.rgb.square().sum() + out.depth.sum()).backward()
    for b, s in enumerate(scenes):
        means = s.means.clone().requires_grad_(True)
        one = render(Gaussians(means, s.quats, s.scales, s.opacities, s.sh), Ks[b], poses[b], w, h)
        assert torch.allclose(one.rgb, out.rgb[b], atol=1e-5) and torch.allclose(one.depth, out.depth[b], atol=1e-4)
        (one.rgb.square().sum() + one.depth.sum()).backward()
        assert torch.allclose(means.grad, batched["means"].grad[b], rtol=1e-3, atol=1e-4)


def test_gsplat_batched_equals_single_and_background():
    w, h = 96, 64
    K = pinhole(w, h)
    c2w = orbit_cameras(3)
    g = random_gaussians(3000, K, c2w[0], w, h, seed=2).to("cuda")
    Ks, c2w = K.expand(3, 3, 3).cuda(), c2w.cuda()
    both = render(g, Ks, c2w, w, h, background=(0.0, 0.5, 1.0))
    assert both.rgb.is_cuda and both.rgb.shape == (3, h, w, 3) and both.depth.shape == (3, h, w)
    for i in range(3):
        one = render(g, Ks[i], c2w[i], w, h, background=(0.0, 0.5, 1.0))
        assert torch.allclose(one.rgb[0], both.rgb[i], atol=1e-5)
        assert torch.allclose(one.depth[0], both.depth[i], atol=1e-4)
    empty = render(Gaussians.empty("cuda"), Ks, c2w, w, h, background=(0.0, 0.5, 1.0))
    assert torch.allclose(empty.rgb, torch.tensor([0.0, 0.5, 1.0], device="cuda").expand_as(empty.rgb))
    assert (empty.alpha == 0).all() and (empty.depth == 0).all()
