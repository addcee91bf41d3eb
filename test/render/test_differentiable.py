"""The CPU renderer's autograd path computes the same image as the fast path, with gradients."""

import torch

from ilrm_ros.geometry import invert_pose
from ilrm_ros.render import torch_backend
from ilrm_ros.render.bench import pinhole, random_gaussians


def test_differentiable_path_matches_fast_path_and_has_gradients():
    W = H = 40
    K, c2w = pinhole(W, H), torch.eye(4, dtype=torch.float64)
    g = random_gaussians(800, K, c2w, W, H, footprint_px=3.0, seed=4)
    viewmats, bg = invert_pose(c2w).float()[None], torch.tensor([[0.2, 0.5, 1.0]])
    fast = torch_backend.render(g, K[None], viewmats, W, H, bg)
    for name in ("means", "quats", "scales", "opacities", "sh"):
        getattr(g, name).requires_grad_(True)
    slow = torch_backend.render(g, K[None], viewmats, W, H, bg)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b.detach(), atol=2e-6)
    assert slow[0].requires_grad
    (slow[0].square().sum() + slow[1].sum()).backward()
    for name in ("means", "scales", "opacities", "sh"):
        grad = getattr(g, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
