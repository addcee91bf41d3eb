"""The held-out benchmark: fixed cases, baselines, and `ilrm eval --quick` on the CPU."""

from __future__ import annotations

import json

import torch

from ilrm_ros.cli import main as cli_main
from ilrm_ros.evaluation.benchmark import (
    NearestContext,
    depth_absrel,
    evaluate,
    make_cases,
    points_in_room,
    pose_distance,
)
from ilrm_ros.gaussians import Gaussians
from ilrm_ros.train.splits import EVAL_SEEDS


def test_cases_are_fixed_and_held_out():
    a = make_cases(1, 32, 32)
    b = make_cases(1, 32, 32)
    assert [c.num_views for c in a] == [2, 4] and all(c.seed == EVAL_SEEDS[0] for c in a)
    for x, y in zip(a, b):
        assert torch.equal(x.views.target_images, y.views.target_images)
        assert int(x.views.target_beyond.sum()) == 2 and x.views.target_images.shape[1] == 4


def test_nearest_context_is_the_floor_and_exact_on_a_context_view():
    case = make_cases(1, 32, 32, view_counts=(2,))[0]
    v = case.views
    # A target placed exactly at a context camera is predicted perfectly by the nearest context image.
    v.target_images[0, 0] = v.context_images[0, 1]
    v.target_cam_to_world[0, 0] = v.context_cam_to_world[0, 1]
    v.target_beyond[0, 0] = False
    assert pose_distance(v.target_cam_to_world[0], v.context_cam_to_world[0])[0].argmin() == 1
    rows, skipped = evaluate([NearestContext()], [case])
    assert not skipped and len(rows) == 1
    assert rows[0].per_scene[0]["psnr_between"] > rows[0].psnr_beyond
    assert rows[0].per_scene[0]["ssim_between"] > 0.5


def test_quick_eval_cli_writes_table_and_json(tmp_path):
    out = tmp_path / "bench.md"
    assert (
        cli_main(["eval", "--quick", "--checkpoint", "tiny", "--scenes", "2", "--device", "cpu", "--out", str(out)])
        == 0
    )
    text = out.read_text()
    assert "| iLRM (ilrm, tiny) | 2 |" in text and "| nearest context | 4 |" in text
    assert "skipped 3DGS optim 1s: needs CUDA" in text and "GS-LRM baseline skipped" in text
    data = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["method"], r["num_views"]): r for r in data["rows"]}
    assert len(rows) == 4 and all(r["scenes"] == 2 for r in rows.values())
    model_row = rows[("iLRM (ilrm, tiny)", 2)]
    assert model_row["refresh_ms"] > 0 and 0 < model_row["psnr_between"] < 60
    assert model_row["depth_absrel"] > 0 and 0 <= model_row["points_in_room"] <= 1
    assert 0 <= model_row["seen_in_room"] <= 1
    assert rows[("nearest context", 2)]["depth_absrel"] is None  # no geometry to score
    assert "| depth AbsRel | in room | seen in room |" in text
    assert rows[("nearest context", 2)]["psnr_between"] > 10  # nearby real images beat an untrained model


def test_geometry_scores():
    n = 4
    means = torch.tensor([[0.0, 0.0, 0.0], [1.4, 0.0, 0.0], [1.6, 0.0, 0.0], [0.0, -3.0, 0.0]])
    g = Gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4), torch.full((n, 3), 0.01),
                  torch.tensor([0.9, 0.9, 0.9, 0.05]), torch.zeros(n, 1, 3))
    bounds = (torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([1.0, 1.0, 1.0]))
    # (1.6, 0, 0) is 0.6 m outside; (0, -3, 0) is outside but too transparent to be published
    assert abs(points_in_room(g, bounds) - 2 / 3) < 1e-6
    assert points_in_room(g, bounds, torch.tensor([True, True, False, True])) == 1.0
    truth = torch.tensor([[[2.0, 4.0], [0.0, 1.0]]])
    assert abs(depth_absrel(torch.tensor([[[2.2, 4.0], [5.0, 0.5]]]), truth) - 0.1) < 1e-6  # median of 0.1, 0, 0.5
