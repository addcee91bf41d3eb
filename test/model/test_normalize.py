"""Pose normalisation: the spec's formula, round trips, and equivariance of reconstruct."""

from __future__ import annotations

import numpy as np
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import quat_multiply, quat_normalize, quat_to_rotmat
from ilrm_ros.model import (
    denormalize_gaussians,
    load_model,
    normalize_gaussians,
    normalize_poses,
    reconstruct,
)


def spec_normalize(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The spec's recipe for one scene [V, 4, 4], written out plainly in float64."""
    pos = c2w[:, :3, 3]
    p = pos.mean(0)
    f = c2w[:, :3, 2].mean(0)
    f = f / np.linalg.norm(f)
    d = c2w[:, :3, 1].mean(0)
    d = d - d.dot(f) * f
    d = d / np.linalg.norm(d)
    r = np.cross(d, f)
    A = np.eye(4)
    A[:3, 0], A[:3, 1], A[:3, 2], A[:3, 3] = r, d, f, p
    s = 1.0 / np.abs(pos).max()
    out = np.linalg.inv(A) @ c2w
    out[:, :3, 3] *= s
    return out, A, s


def test_matches_the_spec_recipe(poses, gen):
    c2w = poses(3, 4, generator=gen, spread=3.0).double()
    normed, tf = normalize_poses(c2w)
    for b in range(3):
        ref, A, s = spec_normalize(c2w[b].numpy())
        np.testing.assert_allclose(normed[b].numpy(), ref, atol=1e-10)
        np.testing.assert_allclose(tf.matrix[b].numpy(), A, atol=1e-12)
        assert abs(tf.scale[b].item() - s) < 1e-12


def test_normalised_context_is_centred_and_facing_z(scene, gen):
    _, _, c2w = scene(2, 3, 8, 8, gen)
    normed, tf = normalize_poses(c2w)
    torch.testing.assert_close(normed[..., :3, 3].mean(-2), torch.zeros(2, 3), atol=1e-6, rtol=0)
    f = torch.nn.functional.normalize(normed[..., :3, 2].mean(-2), dim=-1)
    torch.testing.assert_close(f, torch.tensor([0.0, 0.0, 1.0]).expand(2, 3), atol=1e-6, rtol=0)
    assert torch.allclose(normed[..., :3, 1].mean(-2)[..., 0], torch.zeros(2), atol=1e-6)  # down axis in y-z plane
    # A is a proper rigid transform.
    R = tf.matrix[..., :3, :3]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2), atol=1e-6, rtol=0)


def test_scale_uses_the_original_translations(gen):
    c2w = torch.eye(4).repeat(1, 2, 1, 1)
    c2w[0, 0, :3, 3] = torch.tensor([10.0, 0.0, 0.0])
    c2w[0, 1, :3, 3] = torch.tensor([12.0, 0.0, -3.0])
    _, tf = normalize_poses(c2w)
    assert torch.allclose(tf.scale, torch.tensor([1.0 / 12.0]))  # not 1 / 1 (the centred half-baseline)


def test_single_camera_at_origin_is_guarded():
    normed, tf = normalize_poses(torch.eye(4)[None, None])
    assert torch.isfinite(normed).all() and tf.scale.item() == 1.0
    torch.testing.assert_close(normed[0, 0], torch.eye(4))


def test_context_selection(poses, gen):
    c2w = poses(5, generator=gen)
    normed, tf = normalize_poses(c2w, context=torch.tensor([0, 2]))
    ref, ref_tf = normalize_poses(c2w[[0, 2]])
    torch.testing.assert_close(normed[[0, 2]], ref)
    torch.testing.assert_close(tf.to_normalized(c2w), normed)


def random_gaussians(batch: int, n: int, gen: torch.Generator) -> Gaussians:
    return Gaussians(
        means=torch.randn(batch, n, 3, generator=gen, dtype=torch.float64) * 3,
        quats=quat_normalize(torch.randn(batch, n, 4, generator=gen, dtype=torch.float64)),
        scales=torch.rand(batch, n, 3, generator=gen, dtype=torch.float64) + 0.01,
        opacities=torch.rand(batch, n, generator=gen, dtype=torch.float64),
        sh=torch.randn(batch, n, 1, 3, generator=gen, dtype=torch.float64),
    )


def test_round_trips(poses, gen):
    c2w = poses(2, 3, generator=gen, spread=5.0)
    normed, tf = normalize_poses(c2w)
    torch.testing.assert_close(tf.to_world(normed), c2w, atol=1e-5, rtol=0)

    g = random_gaussians(2, 100, gen).float()
    back = denormalize_gaussians(normalize_gaussians(g, tf), tf)
    torch.testing.assert_close(back.means, g.means, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.scales, g.scales, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(quat_normalize(back.quats), quat_normalize(g.quats), atol=1e-5, rtol=0)
    assert back.opacities is g.opacities and back.sh is g.sh


def test_denormalise_formula(poses, gen):
    """means: A @ (x / s); scales / s; rotations: R_A @ R(q)."""
    _, tf = normalize_poses(poses(1, 2, generator=gen, spread=4.0).double())
    g = random_gaussians(1, 50, gen)
    w = denormalize_gaussians(g, tf)
    A, s = tf.matrix[0], tf.scale[0]
    x = g.means[0] / s
    torch.testing.assert_close(w.means[0], x @ A[:3, :3].T + A[:3, 3])
    torch.testing.assert_close(w.scales, g.scales / s)
    torch.testing.assert_close(quat_to_rotmat(w.quats[0]), A[:3, :3] @ quat_to_rotmat(g.quats[0]))
    # Unbatched Gaussians with an unbatched transform.
    from ilrm_ros.model import PoseTransform

    w0 = denormalize_gaussians(g.batch(0), PoseTransform(tf.matrix[0], tf.scale[0]))
    torch.testing.assert_close(w0.means, w.means[0])


def transform_cameras(c2w: torch.Tensor, Q: torch.Tensor, u: torch.Tensor, sigma: float) -> torch.Tensor:
    out = c2w.clone()
    out[..., :3, :3] = Q @ c2w[..., :3, :3]
    out[..., :3, 3] = sigma * (c2w[..., :3, 3] @ Q.T) + u
    return out


def test_normalised_cameras_are_invariant_up_to_the_spec_scale(scene, gen):
    """Under any similarity transform the normalised rotations are unchanged and translations
    change only by the ratio of the spec's (frame-dependent) scales."""
    _, _, c2w = scene(2, 3, 8, 8, gen)
    c2w = c2w.double()
    skew = torch.tensor([[0.0, -0.7, 0.3], [0.7, 0.0, -1.1], [-0.3, 1.1, 0.0]], dtype=torch.float64)
    Q = torch.linalg.matrix_exp(skew)
    u, sigma = torch.tensor([3.0, -2.0, 5.0], dtype=torch.float64), 2.5
    n1, tf1 = normalize_poses(c2w)
    n2, tf2 = normalize_poses(transform_cameras(c2w, Q, u, sigma))
    torch.testing.assert_close(n2[..., :3, :3], n1[..., :3, :3])
    ratio = (sigma * tf2.scale / tf1.scale)[:, None, None]
    torch.testing.assert_close(n2[..., :3, 3], n1[..., :3, 3] * ratio)


def test_reconstruct_is_equivariant(scene, gen):
    """A similarity transform that keeps the spec's scale consistent (rotation by a signed
    permutation, uniform scale; the max |component| of the translations scales with it) moves
    the reconstruction with it."""
    model = load_model("tiny")
    images, K, c2w = scene(1, 2, 32, 32, gen)
    Q = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # det = +1
    sigma = 3.7
    g1 = reconstruct(model, images, K, c2w)
    g2 = reconstruct(model, images, K, transform_cameras(c2w, Q, torch.zeros(3), sigma))
    torch.testing.assert_close(g2.means, sigma * (g1.means @ Q.T), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g2.scales, sigma * g1.scales, rtol=1e-4, atol=1e-7)
    q_Q = torch.tensor([0.5, -0.5, -0.5, 0.5])  # quaternion of Q
    torch.testing.assert_close(quat_to_rotmat(q_Q), Q, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        quat_normalize(g2.quats), quat_normalize(quat_multiply(q_Q.expand_as(g1.quats), g1.quats)), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(g2.opacities, g1.opacities, atol=1e-5, rtol=0)
    torch.testing.assert_close(g2.sh, g1.sh, atol=1e-5, rtol=0)


def test_reconstruct_means_lie_on_world_rays(scene, gen):
    model = load_model("tiny")
    images, K, c2w = scene(1, 2, 32, 48, gen)
    c2w[..., :3, 3] = c2w[..., :3, 3] * 7 + torch.tensor([100.0, -50.0, 20.0])
    g = reconstruct(model, images[0], K[0], c2w[0])  # unbatched in, unbatched out
    assert g.means.shape == (2 * 32 * 48, 3)
    v, y, x = 1, 17, 40
    n = v * 32 * 48 + y * 48 + x
    fx, fy, cx, cy = K[0, v, 0, 0], K[0, v, 1, 1], K[0, v, 0, 2], K[0, v, 1, 2]
    d = c2w[0, v, :3, :3] @ torch.stack([(x + 0.5 - cx) / fx, (y + 0.5 - cy) / fy, torch.tensor(1.0)])
    d = d / d.norm()
    rel = g.means[n] - c2w[0, v, :3, 3]
    assert torch.linalg.cross(rel / rel.norm(), d, dim=-1).norm() < 1e-4
    assert rel @ d > 0
