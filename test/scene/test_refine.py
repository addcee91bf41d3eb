"""Test-time refinement of Gaussians on the views they were built from (CPU renderer here; gsplat on a GPU)."""

from __future__ import annotations

import pytest
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.render import render
from ilrm_ros.scene.refine import depth_scale, photometric_loss, refine_gaussians

SIZE = 24


def _cameras(device="cpu"):
    K = torch.tensor([[20.0, 0.0, SIZE / 2], [0.0, 20.0, SIZE / 2], [0.0, 0.0, 1.0]]).repeat(2, 1, 1)
    c2w = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    c2w[1, 0, 3] = 0.3  # a second camera 30 cm to the right, same orientation
    return K.to(device), c2w.to(device)


def _scene(seed: int, device="cpu") -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    n = 80
    means = torch.rand(n, 3, generator=gen) * torch.tensor([1.6, 1.6, 1.0]) - torch.tensor([0.8, 0.8, -2.5])
    return Gaussians(
        means=means, quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=torch.rand(n, 3, generator=gen) * 0.08 + 0.04, opacities=torch.rand(n, generator=gen) * 0.5 + 0.4,
        sh=torch.randn(n, 1, 3, generator=gen),
    ).to(device)


def _loss(g: Gaussians, images: torch.Tensor, K, c2w) -> float:
    pred = render(g, K, c2w, SIZE, SIZE).rgb.permute(0, 3, 1, 2)
    return float(photometric_loss(pred, images))


def _start(truth: Gaussians, seed: int) -> Gaussians:
    """The true scene with wrong colours and opacities and slightly wrong sizes (a model's first guess)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(truth)
    return Gaussians(
        means=truth.means.clone(), quats=truth.quats.clone(),
        scales=truth.scales * (1 + 0.3 * torch.rand(n, 1, generator=gen).to(truth.scales.device)),
        opacities=truth.opacities * 0.6, sh=truth.sh + 0.8 * torch.randn(n, 1, 3, generator=gen).to(truth.sh.device),
    )


def _fits(device: str) -> None:
    K, c2w = _cameras(device)
    truth = _scene(1, device)
    images = render(truth, K, c2w, SIZE, SIZE).rgb.permute(0, 3, 1, 2)
    start = _start(truth, 2)
    refined = refine_gaussians(start, images, K, c2w, steps=40)
    before, after = _loss(start, images, K, c2w), _loss(refined, images, K, c2w)
    assert after < 0.5 * before, (before, after)
    assert len(refined) == len(start) and not refined.means.requires_grad
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in vars(refined).values())
    assert torch.allclose(refined.quats.norm(dim=-1), torch.ones(len(refined), device=device), atol=1e-5)
    assert ((refined.opacities > 0) & (refined.opacities < 1)).all() and (refined.scales > 0).all()


def test_refinement_fits_the_views_it_is_given():
    _fits("cpu")


def test_refinement_works_under_inference_mode_and_leaves_its_input():
    K, c2w = _cameras()
    truth = _scene(3)
    images = render(truth, K, c2w, SIZE, SIZE).rgb.permute(0, 3, 1, 2)
    with torch.inference_mode():  # as the node's and the benchmark's model outputs are made
        start = _start(truth, 4)
        kept = {k: t.clone() for k, t in vars(start).items()}
        refined = refine_gaussians(start, images, K, c2w, steps=5)
    assert all(torch.equal(getattr(start, k), t) for k, t in kept.items())
    assert _loss(refined, images, K, c2w) < _loss(start, images, K, c2w)
    assert not torch.equal(refined.sh, start.sh)


def test_zero_steps_returns_the_input_and_bad_arguments_are_refused():
    K, c2w = _cameras()
    g = _scene(5)
    images = torch.ones(2, 3, SIZE, SIZE)
    assert refine_gaussians(g, images, K, c2w, steps=0) is g
    empty = g.select(torch.zeros(len(g), dtype=torch.bool))
    assert refine_gaussians(empty, images, K, c2w, steps=3) is empty
    with pytest.raises(ValueError, match="steps"):
        refine_gaussians(g, images, K, c2w, steps=-1)
    with pytest.raises(ValueError, match="lr_scale"):
        refine_gaussians(g, images, K, c2w, steps=1, lr_scale=0.0)
    batched = Gaussians(**{k: t[None] for k, t in vars(g).items()})
    with pytest.raises(ValueError, match="unbatched"):
        refine_gaussians(batched, images, K, c2w, steps=1)


def test_depth_scale_is_the_median_distance_from_the_first_camera():
    _, c2w = _cameras()
    g = _scene(6)
    expected = float((g.means - c2w[0, :3, 3].float()).norm(dim=-1).median())
    assert depth_scale(g, c2w) == pytest.approx(expected)
    assert depth_scale(g.select(torch.zeros(len(g), dtype=torch.bool)), c2w) == 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_refinement_fits_the_views_on_the_gpu():
    _fits("cuda")
