"""Data sources, view sampling, losses and schedule of the trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from poses import backproject

from ilrm_ros.train.data import BagSource, SyntheticSource, view_counts
from ilrm_ros.train.losses import RGB_LOSSES, gaussian_depth_l1, gaussian_footprint_px, render_loss
from ilrm_ros.train.schedule import make_scheduler, retarget, warmup_cosine
from ilrm_ros.train.splits import EVAL_SEEDS, TRAIN_SEEDS
from ilrm_ros.train.views import keyframe_indices, sample_views


def test_seed_split_is_disjoint():
    assert TRAIN_SEEDS.stop <= EVAL_SEEDS.start and len(EVAL_SEEDS) >= 100


def test_keyframes_follow_motion_thresholds():
    T = np.tile(np.eye(4), (30, 1, 1))
    T[:, 0, 3] = np.arange(30) * 0.04  # 4 cm per frame along x
    kf = keyframe_indices(T, min_translation=0.15)
    assert kf.tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    assert keyframe_indices(np.tile(np.eye(4), (10, 1, 1))).tolist() == [0]  # no motion, one keyframe


def test_view_sampling_between_and_beyond():
    rng = np.random.default_rng(0)
    kf = np.arange(0, 100, 5)
    for _ in range(50):
        c = sample_views(rng, 100, kf, num_views=3, num_targets=4, max_gap=2)
        lo, hi = c.context[0], c.context[-1]
        assert np.all(np.diff(c.context) > 0) and set(c.context) <= set(kf)
        inside = (c.targets >= lo) & (c.targets <= hi)
        assert np.array_equal(~c.beyond, inside)
        assert c.beyond.sum() in (0, 2) and np.all((c.targets >= 0) & (c.targets < 100))
        margin = (hi - lo) / 2
        assert np.all(np.abs(c.targets[c.beyond] - np.clip(c.targets[c.beyond], lo, hi)) <= margin + 1)
    assert sample_views(rng, 10, np.array([0, 5]), num_views=3, num_targets=2) is None


def test_context_targets_are_context_frames_and_leave_the_default_stream_alone():
    kf = np.arange(0, 100, 5)
    plain, zero, some = (np.random.default_rng(3) for _ in range(3))
    for _ in range(30):
        a = sample_views(plain, 100, kf, num_views=3, num_targets=4, max_gap=2)
        b = sample_views(zero, 100, kf, num_views=3, num_targets=4, max_gap=2, context_targets=0)
        assert np.array_equal(a.context, b.context) and np.array_equal(a.targets, b.targets)
        c = sample_views(some, 100, kf, num_views=3, num_targets=4, max_gap=2, context_targets=1)
        between = c.targets[~c.beyond]
        assert np.isin(between, c.context).sum() >= 1  # one drawn from the context frames
        assert len(c.targets) == 4 and c.beyond.sum() in (0, 2)
    # all non-beyond targets at most; never a beyond one
    c = sample_views(np.random.default_rng(0), 100, kf, num_views=2, num_targets=4, context_targets=9)
    assert np.isin(c.targets[~c.beyond], c.context).all()
    with pytest.raises(ValueError, match="context_targets"):
        sample_views(np.random.default_rng(0), 100, kf, num_views=2, num_targets=4, context_targets=-1)


def test_view_groups_render_as_their_groups_do_alone():
    """A batch's groups of samples (each of its own scene) rendered in one call equal the groups
    rendered one by one and stacked: the batch a training step sees does not depend on the pass."""
    from ilrm_ros.train.data import ViewBatch, render_view_groups, render_views

    src = SyntheticSource(24, 32, num_views=2, num_targets=2, seed=4, pool_size=3, samples_per_scene=2, group=2)
    groups = [src._draw(2, 3) for _ in range(3)] + [src._draw(1, 3)]
    assert len({id(scene) for scene, _ in groups}) > 1
    together = render_view_groups(groups, 24, 32)
    alone = ViewBatch.stack([render_views(scene, choices, 24, 32) for scene, choices in groups])
    for name, value in vars(together).items():
        assert torch.equal(value, getattr(alone, name)), name
    assert together.context_images.shape == (7, 3, 3, 24, 32)


def test_synthetic_source_shapes_and_resumable_stream():
    src = SyntheticSource(32, 48, num_views=2, num_targets=3, seed=1, pool_size=2, samples_per_scene=1)
    b = src.sample(2)
    assert b.context_images.shape == (2, 2, 3, 32, 48) and b.target_images.shape == (2, 3, 3, 32, 48)
    assert b.context_cam_to_world.shape == (2, 2, 4, 4) and b.target_intrinsics.shape == (2, 3, 3, 3)
    assert b.target_depth.shape == (2, 3, 32, 48) and (b.target_depth > 0).all()
    assert b.context_depth.shape == (2, 2, 32, 48) and (b.context_depth > 0).all()
    assert 0 <= b.context_images.min() and b.context_images.max() <= 1 and b.context_images.std() > 0.02
    state = src.state_dict()
    torch.save(state, "/dev/null")  # plain containers only
    nxt = src.sample(1)
    other = SyntheticSource(32, 48, num_views=2, num_targets=3, seed=1, pool_size=2, samples_per_scene=1)
    other.load_state_dict(state)
    again = other.sample(1)
    assert torch.equal(nxt.target_images, again.target_images)
    assert torch.equal(nxt.context_cam_to_world, again.context_cam_to_world)
    assert all(TRAIN_SEEDS.start <= other.scene_seed(i) < TRAIN_SEEDS.stop for i in range(20))
    src.close()
    other.close()


def test_synthetic_source_mixes_view_counts_per_batch_and_resumes():
    kw = dict(num_targets=2, seed=4, pool_size=2, samples_per_scene=2)
    src = SyntheticSource(32, 32, num_views=2, max_views=4, **kw)
    seen = []
    for _ in range(8):
        b = src.sample(2)
        v = b.context_images.shape[1]
        assert b.context_cam_to_world.shape[:2] == (2, v) and b.context_intrinsics.shape[:2] == (2, v)
        seen.append(v)
    assert set(seen) <= {2, 3, 4} and len(set(seen)) >= 2, seen
    state = src.state_dict()
    nxt = src.sample(2)
    other = SyntheticSource(32, 32, num_views=2, max_views=4, **kw)
    other.load_state_dict(state)
    again = other.sample(2)
    assert torch.equal(nxt.context_images, again.context_images)  # the view count resumes too
    # One count (max_views unset or equal): no extra draw, the stream of earlier runs is unchanged.
    one, same = (SyntheticSource(32, 32, num_views=2, max_views=m, **kw) for m in (None, 2))
    assert torch.equal(one.sample(2).target_images, same.sample(2).target_images)
    for s in (src, other, one, same):
        s.close()
    assert view_counts(2, None) == (2,) and view_counts(2, 4) == (2, 3, 4)
    with pytest.raises(ValueError, match="max_views"):
        view_counts(3, 2)


def test_synthetic_source_mixes_image_sizes_per_batch():
    kw = dict(num_views=2, num_targets=2, seed=4, pool_size=2, samples_per_scene=2)
    src = SyntheticSource(24, 32, more_sizes=[(24, 40), (24, 32)], **kw)
    assert src.sizes == ((24, 32), (24, 40))  # the first size once
    seen = set()
    for _ in range(8):
        b = src.sample(2)
        h, w = b.image_size
        assert b.target_images.shape[-2:] == (h, w) and b.context_depth.shape[-2:] == (h, w)
        assert torch.allclose(b.context_intrinsics[..., 0, 2], torch.tensor(w / 2))  # intrinsics of that size
        seen.add((h, w))
    assert seen == {(24, 32), (24, 40)}
    one, same = (SyntheticSource(24, 32, more_sizes=m, **kw) for m in ((), [(24, 32)]))
    assert torch.equal(one.sample(2).target_images, same.sample(2).target_images)  # one size: no extra draw
    for s in (src, one, same):
        s.close()


def test_render_loss_terms():
    gt = torch.rand(2, 16, 16, 3)
    loss, terms = render_loss(gt.clone(), gt)
    assert float(loss) == 0.0 and float(terms["psnr"]) == pytest.approx(100.0)
    pred = (gt + 0.1).clamp(0, 1)
    depth = torch.full((2, 16, 16), 2.0)
    gt_depth = torch.full((2, 16, 16), 1.5)
    gt_depth[:, :8] = 0.0  # no ground truth there: ignored
    loss, terms = render_loss(pred, gt, depth, gt_depth, ssim_weight=0.5, depth_weight=2.0)
    mse = float(((pred - gt) ** 2).mean())
    assert float(terms["depth_l1"]) == pytest.approx(0.5)
    assert 0 < float(terms["ssim"]) < 1
    assert float(loss) == pytest.approx(mse + 0.5 * (1 - float(terms["ssim"])) + 2.0 * 0.5, rel=1e-5)


def test_psnr_colour_loss_weights_each_image_by_its_log_mse():
    """rgb_loss="psnr": the value is the batch MSE and the gradient that of the batch MSE times the mean
    per-image log MSE, so an image rendered well weighs more than under plain MSE; images above 40 dB
    count as at 40 dB (value and gradient)."""
    gt = torch.rand(3, 8, 8, 3)
    noise = torch.randn(3, 8, 8, 3) * torch.tensor([0.2, 0.05, 0.001])[:, None, None, None]  # 14, 26, 60 dB
    pred = (gt + noise).requires_grad_()
    loss, terms = render_loss(pred, gt, rgb_loss="psnr")
    per = ((pred - gt) ** 2).mean(dim=(1, 2, 3)).detach()
    mse = per.mean()
    capped = (2 + float(per[2]) / 1e-4) / 3  # images 0 and 1 count as the batch MSE, image 2 (60 dB) less
    assert float(loss.detach()) == pytest.approx(float(mse) * capped, rel=1e-5)
    assert float(terms["mse"]) == pytest.approx(float(mse), rel=1e-6)
    assert float(terms["psnr_images"]) == pytest.approx(float((-10 * per.log10()).mean()), rel=1e-5)
    assert float(terms["psnr_images"]) > float(terms["psnr"]) + 5  # the mean of PSNRs is not the PSNR of the mean
    (grad,) = torch.autograd.grad(loss, pred)
    (plain,) = torch.autograd.grad(render_loss(pred, gt)[0], pred)
    log_mse = ((pred - gt) ** 2).mean(dim=(1, 2, 3))[:2].log()
    expected = torch.autograd.grad(mse * log_mse.sum() / 3, pred)[0]  # log-MSE gradient of images 0 and 1
    assert torch.allclose(grad[:2], expected[:2], rtol=1e-4, atol=1e-9)
    assert torch.allclose(grad[2], plain[2] * float(mse / 1e-4), rtol=1e-4)  # capped: weight batch MSE / 1e-4
    share = [float(g[1].abs().sum() / g[0].abs().sum()) for g in (grad, plain)]
    assert share[0] > 10 * share[1]  # the 26-dB image's pull against the 14-dB one's grows
    with pytest.raises(ValueError, match="rgb_loss"):
        render_loss(pred, gt, rgb_loss="l1")


def test_rmse_colour_loss_goes_half_way_to_the_psnr_weighting():
    """rgb_loss="rmse": each image's MSE weighted by the square root of the batch MSE over its own, so the
    gradient is that of the mean per-image RMSE (scaled to the batch MSE's), between plain MSE and psnr."""
    gt = torch.rand(3, 8, 8, 3)
    noise = torch.randn(3, 8, 8, 3) * torch.tensor([0.2, 0.05, 0.02])[:, None, None, None]  # 14, 26, 34 dB
    pred = (gt + noise).requires_grad_()
    loss, _ = render_loss(pred, gt, rgb_loss="rmse")
    per = ((pred - gt) ** 2).mean(dim=(1, 2, 3))
    scale = per.mean().detach().sqrt()
    assert float(loss.detach()) == pytest.approx(float(scale * per.detach().sqrt().mean()), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, pred)
    (expected,) = torch.autograd.grad(2 * scale * per.sqrt().mean(), pred)
    assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-10)
    shares = [float(g[1].abs().sum() / g[0].abs().sum())
              for g in (torch.autograd.grad(render_loss(pred, gt, rgb_loss=k)[0], pred)[0] for k in RGB_LOSSES)]
    assert shares[0] < shares[1] < shares[2]  # mse, rmse, psnr: the 26-dB image pulls more and more


def test_gaussian_depth_term_measures_each_gaussian_on_its_own_pixel():
    src = SyntheticSource(16, 24, num_views=2, num_targets=1, seed=2, pool_size=1)
    b = src.sample(1)
    src.close()
    K, c2w, depth = b.context_intrinsics[0], b.context_cam_to_world[0], b.context_depth[0]

    def unproject(scale: float) -> torch.Tensor:  # Gaussians on their pixel rays at scale x the true depth
        return backproject(K, c2w, depth * scale).float().reshape(1, -1, 3)

    assert float(gaussian_depth_l1(unproject(1.0), c2w[None], depth[None])) == pytest.approx(0.0, abs=1e-4)
    expected = float(0.1 * depth.mean())
    assert float(gaussian_depth_l1(unproject(1.1), c2w[None], depth[None])) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="pixel-aligned"):
        gaussian_depth_l1(unproject(1.0)[:, :-1], c2w[None], depth[None])


def test_footprint_term_is_opacity_weighted_pixels_and_only_shrinks_splats():
    """Footprint = largest std-dev x focal / depth at the Gaussian's own camera, weighted by opacity;
    its gradient reaches the scales alone (never asks for fainter or farther Gaussians)."""
    src = SyntheticSource(8, 12, num_views=2, num_targets=1, seed=3, pool_size=1)
    b = src.sample(1)
    src.close()
    K, c2w, depth = b.context_intrinsics, b.context_cam_to_world, b.context_depth
    n = depth.numel()
    means = backproject(K[0], c2w[0], depth[0]).float().reshape(1, n, 3).requires_grad_()
    scales = torch.full((1, n, 3), 0.001)
    scales[..., 1] = 0.01  # the largest axis counts
    scales.requires_grad_()
    opacities = torch.zeros(1, n)
    opacities[0, :5] = torch.tensor([1.0, 0.5, 0.25, 0.25, 0.0])
    opacities.requires_grad_()
    size = gaussian_footprint_px(scales, opacities, means, K, c2w, 8, 12)
    focal, z = K[0, :, 0, 0].repeat_interleave(8 * 12), depth.reshape(-1)
    each = 0.01 * focal / z
    w = opacities.detach()[0]
    assert float(size) == pytest.approx(float((each * w).sum() / w.sum()), rel=1e-5)
    size.backward()
    assert means.grad is None or not means.grad.any()
    assert opacities.grad is None or not opacities.grad.any()
    assert (scales.grad[0, :4, 1] > 0).all() and not scales.grad[0, 4:].any() and not scales.grad[..., 0].any()


def test_footprint_floor_counts_only_the_part_above_it():
    """With ``floor_px``, splats at or below the floor add nothing and get no gradient; the rest
    count by their excess over it, weighted by opacity as before."""
    src = SyntheticSource(8, 12, num_views=2, num_targets=1, seed=3, pool_size=1)
    b = src.sample(1)
    src.close()
    K, c2w, depth = b.context_intrinsics, b.context_cam_to_world, b.context_depth
    n = depth.numel()
    means = backproject(K[0], c2w[0], depth[0]).float().reshape(1, n, 3)
    focal, z = K[0, :, 0, 0].repeat_interleave(8 * 12), depth.reshape(-1)
    px = torch.linspace(0.2, 4.0, n)  # footprints from 0.2 to 4 pixels
    scales = (px * z / focal)[None, :, None].repeat(1, 1, 3).requires_grad_()
    opacities = torch.rand(1, n, generator=torch.Generator().manual_seed(0))
    size = gaussian_footprint_px(scales, opacities, means, K, c2w, 8, 12, floor_px=1.5)
    w = opacities[0]
    expected = ((px - 1.5).clamp_min(0) * w).sum() / w.sum()
    assert float(size) == pytest.approx(float(expected), rel=1e-4)
    assert float(size) < float(gaussian_footprint_px(scales, opacities, means, K, c2w, 8, 12)) - 1.0
    size.backward()
    grad = scales.grad[0].abs().sum(-1)
    assert not grad[px < 1.49].any() and (grad[px > 1.51] > 0).all()
    none = gaussian_footprint_px(scales, opacities, means, K, c2w, 8, 12, floor_px=5.0)
    assert float(none) == 0.0


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 100, 10, 0.1) == pytest.approx(0.1)


def test_retarget_moves_the_end_of_the_schedule_from_the_current_step():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, total_steps=1000, warmup_steps=10)
    for _ in range(40):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(warmup_cosine(40, 1000, 10))
    retarget(scheduler, total_steps=100, warmup_steps=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(warmup_cosine(40, 100, 10))  # at once
    for _ in range(60):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # the floor at step 100
    assert scheduler.state_dict()["lr_lambdas"] == [None]  # the plan lives in the training config instead


def test_bag_source_from_a_recorded_bag(tmp_path):
    from ilrm_ros.bag import writer
    from ilrm_ros.train.bags import load_bag

    bag = tmp_path / "bag"
    seq = writer.write_synthetic_bag(
        bag, frames=40, rate_hz=10.0, width=80, height=60, seed=3, depth=False, pose_rate_hz=25.0
    )
    traj, dropped = load_bag(bag, writer.IMAGE_TOPIC, writer.INFO_TOPIC, writer.POSE_TOPIC, (32, 32))
    assert not dropped and traj.images.shape == (40, 3, 32, 32) and traj.images.dtype == torch.uint8
    # poses interpolated from the 25 Hz pose topic match the images' true poses
    assert torch.allclose(traj.cam_to_world, seq.cam_to_world, atol=2e-3)
    # 80x60 -> short side 60 scaled to 32 (width to round(80 * 32 / 60) = 43), centre crop of the width
    assert traj.intrinsics[0, 0, 0] == pytest.approx(float(seq.intrinsics[0, 0]) * 43 / 80, rel=1e-4)
    assert traj.intrinsics[0, 1, 1] == pytest.approx(float(seq.intrinsics[1, 1]) * 32 / 60, rel=1e-4)
    # principal point: 40 * 43 / 80 = 21.5, minus the crop offset (43 - 32) // 2 = 5
    assert traj.intrinsics[0, 0, 2] == pytest.approx(16.5, abs=1e-3) and traj.intrinsics[0, 1, 2] == pytest.approx(16.0)
    src = BagSource([traj], num_views=2, num_targets=2, seed=0)
    b = src.sample(3)
    assert b.context_images.shape == (3, 2, 3, 32, 32) and b.target_depth is None
    state = src.state_dict()
    nxt = src.sample(1)
    src.load_state_dict(state)
    assert torch.equal(src.sample(1).target_images, nxt.target_images)
    mixed = BagSource([traj], num_views=2, num_targets=2, seed=0, max_views=3)
    assert {mixed.sample(2).context_images.shape[1] for _ in range(8)} == {2, 3}
    with pytest.raises(ValueError, match="at least 41 keyframes"):
        BagSource([traj], num_views=2, num_targets=2, max_views=41)


def test_worker_processes_do_not_change_the_stream():
    kw = dict(height=16, width=16, num_views=2, num_targets=2, seed=5, pool_size=2, samples_per_scene=1, group=2)
    inline = SyntheticSource(**kw)
    pooled = SyntheticSource(**kw, workers=1)
    try:
        for _ in range(3):
            a, b = inline.sample(2), pooled.sample(2)
            assert torch.equal(a.context_images, b.context_images)
            assert torch.equal(a.target_cam_to_world, b.target_cam_to_world)
    finally:
        pooled.close()


def test_planned_room_is_reused_and_survives_pickling():
    import pickle

    from ilrm_ros.synthetic import SyntheticRoom
    from ilrm_ros.train.data import plan_synthetic_path

    path = plan_synthetic_path(12)
    assert path.room is not None and path.room.seed == path.seed
    sent = pickle.loads(pickle.dumps(path))  # as a planner process returns it
    assert np.array_equal(sent.cam_to_world, path.cam_to_world) and sent.room is not None
    room = sent.make_room("cpu")
    assert sent.room is None  # taken by the scene
    fresh = SyntheticRoom(path.seed)
    assert room.objects == fresh.objects and room.materials == fresh.materials
    pose = torch.from_numpy(path.cam_to_world[5]).float()
    from ilrm_ros.synthetic import default_intrinsics

    K = default_intrinsics(20, 16, path.hfov_deg)
    for a, b in zip(room.render(K, pose, 16, 20), fresh.render(K, pose, 16, 20)):
        assert torch.equal(a, b)
