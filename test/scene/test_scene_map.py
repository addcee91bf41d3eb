"""Scene: window mode, map-mode replacement of what the new cameras see, the budget, and the
surface marks behind the point cloud."""

from __future__ import annotations

import math

import pytest
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import make_pose, pose_from_quat, quat_normalize
from ilrm_ros.scene import Scene
from ilrm_ros.scene.visibility import surface_mask

H = W = 8
K = torch.tensor([[8.0, 0.0, 4.0], [0.0, 8.0, 4.0], [0.0, 0.0, 1.0]])


def make_gaussians(means: torch.Tensor, opacity: float | torch.Tensor = 0.8) -> Gaussians:
    n = means.shape[0]
    op = opacity if torch.is_tensor(opacity) else torch.full((n,), float(opacity))
    return Gaussians(
        means=means.float(), quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1), scales=torch.full((n, 3), 0.01),
        opacities=op.float(), sh=torch.zeros(n, 1, 3),
    )


def window(c2w: torch.Tensor, depth: torch.Tensor, opacity: float | torch.Tensor = 0.8) -> Gaussians:
    """Model-like window: one Gaussian per pixel of each view, at ``depth [V,H,W]`` along the pixel ray."""
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    rays = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)  # z = 1
    means = [(rays * depth[i][..., None]) @ c2w[i, :3, :3].T + c2w[i, :3, 3] for i in range(c2w.shape[0])]
    return make_gaussians(torch.cat([m.reshape(-1, 3) for m in means]), opacity)


def contains(g: Gaussians, point) -> bool:
    return bool(((g.means - torch.tensor(point)).norm(dim=-1) < 1e-5).any())


def test_map_mode_replaces_seen_and_keeps_unseen():
    scene = Scene(mode="map", budget=10_000, depth_margin=0.05)
    old_points = {
        "in_front": [0.0, 0.0, 3.0],  # inside the frustum, before the new surface at z = 5: seen -> replaced
        "within_margin": [0.1, 0.1, 5.2],  # behind the surface but within 5 %: the same surface -> replaced
        "occluded": [0.0, 0.0, 8.0],  # behind the new surface: hidden -> kept
        "behind_camera": [0.0, 0.0, -3.0],  # kept
        "outside_frustum": [20.0, 0.0, 5.0],  # kept
    }
    first = make_gaussians(torch.tensor(list(old_points.values())))
    scene.update(first, torch.zeros(0, 3, 3), torch.zeros(0, 4, 4), H, W)  # no cameras: everything is new
    assert len(scene) == 5
    c2w = torch.eye(4)[None]
    stats = scene.update(window(c2w, torch.full((1, H, W), 5.0)), K[None], c2w, H, W)
    assert stats.replaced == 2 and stats.added == H * W and stats.total == 3 + H * W
    for name, p in old_points.items():
        assert contains(scene.gaussians, p) == (name in ("occluded", "behind_camera", "outside_frustum")), name


def test_map_mode_with_a_moved_camera_and_two_views():
    scene = Scene(mode="map", budget=10_000)
    c2w_a = torch.eye(4)[None]
    scene.update(window(c2w_a, torch.full((1, H, W), 4.0)), K[None], c2w_a, H, W)
    # Two new views turned 90 degrees about y (looking along +x and -x): they do not see the old wall at z = 4.
    turn = lambda a: pose_from_quat(torch.tensor([math.cos(a / 2), 0.0, math.sin(a / 2), 0.0]), torch.zeros(3))  # noqa: E731
    c2w_b = torch.stack([turn(math.pi / 2), turn(-math.pi / 2)])
    stats = scene.update(window(c2w_b, torch.full((2, H, W), 3.0)), K.expand(2, 3, 3), c2w_b, H, W)
    assert stats.replaced == 0 and len(scene) == 3 * H * W
    # Looking at the old wall again from closer: the wall (4 m) is behind the new surface (2 m) -> kept ...
    c2w_c = make_pose(torch.eye(3), torch.tensor([0.0, 0.0, 1.0]))[None]
    stats = scene.update(window(c2w_c, torch.full((1, H, W), 2.0)), K[None], c2w_c, H, W)
    assert stats.replaced == 0
    # ... and from the original viewpoint with a surface at 4 m, the old wall and the closer surface in
    # front of it are both replaced; the side views stay.
    stats = scene.update(window(c2w_a, torch.full((1, H, W), 4.0)), K[None], c2w_a, H, W)
    assert stats.replaced == 2 * H * W and len(scene) == 3 * H * W
    assert (scene.gaussians.means[:, 0].abs() > 2.9).sum() == 2 * H * W


def test_window_mode_keeps_only_latest_and_filters_transparent():
    scene = Scene(mode="window", min_opacity=0.05)
    c2w = torch.eye(4)[None]
    scene.update(window(c2w, torch.full((1, H, W), 2.0)), K[None], c2w, H, W)
    assert len(scene) == H * W
    op = torch.full((H * W,), 0.5)
    op[:10] = 0.01
    stats = scene.update(window(c2w, torch.full((1, H, W), 3.0), op), K[None], c2w, H, W)
    assert stats.filtered == 10 and len(scene) == H * W - 10
    assert torch.allclose(scene.gaussians.means[:, 2], torch.full((H * W - 10,), 3.0))


def test_budget_drops_faint_and_far_first_and_bookkeeping():
    scene = Scene(mode="map", budget=4, recent_cameras=2, distance_scale=1.0)
    v0 = scene.version
    pts = torch.tensor([[0.0, 0, 1], [0, 0, 1.1], [0, 0, 30], [0, 0, 1.2], [0, 0, 1.3], [0, 0, 1.4]])
    op = torch.tensor([0.9, 0.01, 0.9, 0.8, 0.7, 0.6])
    c2w = make_pose(torch.eye(3), torch.tensor([0.0, 0.0, 0.0]))[None]
    stats = scene.update(make_gaussians(pts, op), torch.zeros(0, 3, 3), torch.zeros(0, 4, 4), H, W)
    assert stats.dropped == 2 and len(scene) == 4  # no cameras yet: opacity alone -> 0.01 and 0.6 dropped
    assert not contains(scene.gaussians, [0, 0, 1.1]) and not contains(scene.gaussians, [0, 0, 1.4])
    scene.clear()
    assert len(scene) == 0 and scene.cameras.shape == (0, 4, 4)
    stats = scene.update(window(c2w, torch.full((1, H, W), 2.0)), K[None], c2w, H, W)
    assert len(scene) == 4 and scene.version > v0 + 1 and scene.cameras.shape == (1, 4, 4)
    with pytest.raises(ValueError):
        scene.update(make_gaussians(pts), K[None], c2w, H, W)  # map mode needs V*H*W Gaussians
    far = Scene(mode="map", budget=3, distance_scale=1.0)
    far.update(window(c2w, torch.full((1, H, W), 2.0)), K[None], c2w, H, W)
    far.update(make_gaussians(torch.tensor([[0.0, 0, -50]]), 1.0), torch.zeros(0, 3, 3), torch.zeros(0, 4, 4), H, W)
    assert not contains(far.gaussians, [0, 0, -50])  # 50 m from the cameras: dropped despite opacity 1


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread hand-off costs on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_budget_holds_over_1000_updates_circling_a_room(one_thread):
    budget = 2500  # below the ~4500 that replacement alone would settle at in this room
    scene = Scene(mode="map", budget=budget, recent_cameras=8)
    gen = torch.Generator().manual_seed(0)
    sizes = []
    for step in range(1000):
        poses = []
        for view in range(2):
            a = 2 * math.pi * (2 * step + view) / 300  # a full circle every 150 updates
            centre = torch.tensor([3.0 * math.cos(a), 3.0 * math.sin(a), 0.0])
            yaw = a + math.pi / 2 + 0.3 * math.sin(step / 7)  # looking roughly along the circle
            # OpenCV camera: z forward (horizontal, yaw), y down (-world z), x right.
            fwd = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
            down = torch.tensor([0.0, 0.0, -1.0])
            R = torch.stack([torch.linalg.cross(down, fwd), down, fwd], -1)
            poses.append(make_pose(R, centre))
        c2w = torch.stack(poses)
        depth = 0.5 + 2.5 * torch.rand(2, H, W, generator=gen)
        op = torch.rand(2 * H * W, generator=gen)
        g = window(c2w, depth, op)
        g.quats = quat_normalize(torch.randn(2 * H * W, 4, generator=gen))
        stats = scene.update(g, K.expand(2, 3, 3), c2w, H, W)
        assert len(scene) <= budget and stats.total == len(scene)
        sizes.append(len(scene))
    assert max(sizes) == budget  # the map fills up, ...
    assert min(sizes[-200:]) > budget // 2  # ... stays near the budget, and never exceeds it
    assert scene.version == 1000 and scene.cameras.shape == (8, 4, 4)
    g = scene.gaussians
    assert g.means.shape == (len(scene), 3) and g.sh.shape == (len(scene), 1, 3)


def _pixel_ray(row: int, col: int) -> torch.Tensor:
    """Camera-frame direction (z = 1) through the centre of pixel (row, col) of ``K``."""
    return torch.tensor([(col + 0.5 - K[0, 2]) / K[0, 0], (row + 0.5 - K[1, 2]) / K[1, 1], 1.0])


def test_surface_marks_leave_hidden_gaussians_out_of_the_cloud():
    c2w = torch.eye(4)[None]
    wall = window(c2w, torch.full((1, H, W), 5.0))  # a surface at z = 5 over the whole image
    a, b = _pixel_ray(2, 3), _pixel_ray(5, 5)
    extra = make_gaussians(torch.stack([
        a * 8.0,  # behind the wall: hidden
        a * 5.2,  # on the wall within 10 %: the same surface
        b * 3.0,  # in front of the wall: seen, and hides the wall's Gaussian of pixel (5, 5)
        torch.tensor([20.0, 0.0, 5.0]),  # outside the image
    ]))
    g = Gaussians.cat([wall, extra])
    mask = surface_mask(g, K[None], c2w, H, W)
    expected_wall = torch.ones(H * W, dtype=torch.bool)
    expected_wall[5 * W + 5] = False
    assert torch.equal(mask[: H * W], expected_wall)
    assert mask[H * W:].tolist() == [False, True, True, False]

    scene = Scene(track_surface=True)
    scene.update(g, K[None], c2w, H, W)
    assert len(scene.gaussians) == H * W + 4  # renders keep every Gaussian
    assert len(scene.cloud) == H * W + 1 and not contains(scene.cloud, (a * 8.0).tolist())
    plain = Scene()  # no marks: the cloud is the whole scene
    plain.update(g, K[None], c2w, H, W)
    assert len(plain.cloud) == H * W + 4


def test_surface_marks_stay_with_their_gaussians_in_map_mode():
    scene = Scene(mode="map", budget=10_000, track_surface=True)
    c2w = torch.eye(4)[None].repeat(2, 1, 1)  # two views from one pose: the second view's surface lies
    first = window(c2w, torch.stack([torch.full((H, W), 5.0), torch.full((H, W), 8.0)]))  # behind the first's
    scene.update(first, K[None].repeat(2, 1, 1), c2w, H, W)
    assert len(scene.gaussians) == 2 * H * W and len(scene.cloud) == H * W
    far = make_pose(torch.eye(3), torch.tensor([100.0, 0.0, 0.0]))[None]  # sees none of the first window
    scene.update(window(far, torch.full((1, H, W), 5.0)), K[None], far, H, W)
    assert len(scene.gaussians) == 3 * H * W and len(scene.cloud) == 2 * H * W
    assert not (scene.cloud.means[:, 2] > 6.0).any()  # the hidden surface stays out


@pytest.mark.parametrize("mode", ["map", "window"])
def test_revise_replaces_the_last_update_as_if_it_had_not_happened(mode):
    """The refined window replaces its unrefined self: the same scene as fusing the refined one directly."""
    c2w = torch.eye(4)[None]
    moved = make_pose(torch.eye(3), torch.tensor([0.3, 0.0, 0.0]))[None]
    first, second = window(c2w, torch.full((1, H, W), 5.0)), window(moved, torch.full((1, H, W), 4.0))
    refined = window(moved, torch.full((1, H, W), 4.5), opacity=0.6)
    kwargs = dict(mode=mode, budget=100, recent_cameras=2, track_surface=True)
    revised, direct = Scene(**kwargs), Scene(**kwargs)
    with pytest.raises(ValueError, match="earlier update"):
        revised.update(refined, K[None], moved, H, W, revise=True)
    for scene in (revised, direct):
        scene.update(first, K[None], c2w, H, W)
    revised.update(second, K[None], moved, H, W)
    stats = revised.update(refined, K[None], moved, H, W, revise=True)
    expected = direct.update(refined, K[None], moved, H, W)
    assert stats == expected and revised.version == 3 and len(revised) == len(direct)
    for name in ("means", "opacities", "scales"):
        assert torch.equal(getattr(revised.gaussians, name), getattr(direct.gaussians, name)), name
    assert torch.equal(revised.cloud.means, direct.cloud.means)
    assert torch.equal(revised.cameras, direct.cameras)  # the window's poses once, not twice
    # A revise that fails leaves the scene as it was, and revising again still starts from before `second`.
    with pytest.raises(ValueError):
        revised.update(refined, K[None], torch.eye(4)[None].repeat(2, 1, 1), H, W, revise=True)
    assert revised.version == 3 and torch.equal(revised.gaussians.means, direct.gaussians.means)
    revised.update(second, K[None], moved, H, W, revise=True)
    assert not torch.equal(revised.gaussians.means, direct.gaussians.means)
    revised.clear()
    with pytest.raises(ValueError, match="earlier update"):
        revised.update(refined, K[None], moved, H, W, revise=True)
