"""The held-out benchmark: fixed cases, baselines, and `ilrm eval --quick` on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from poses import backproject

from ilrm_ros.checkpoints import SHIPPED_CHECKPOINT
from ilrm_ros.cli import main as cli_main
from ilrm_ros.evaluation.benchmark import (
    NearestContext,
    Row,
    depth_absrel,
    evaluate,
    make_cases,
    points_in_room,
    pose_distance,
    write_report,
)
from ilrm_ros.evaluation.compare import model_rows, paired
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
    assert "| depth AbsRel | in room | seen in room | PSNR context | refresh ms |" in text
    assert 0 < model_row["psnr_context"] < 60 and rows[("nearest context", 2)]["psnr_context"] is None
    assert rows[("nearest context", 2)]["psnr_between"] > 10  # nearby real images beat an untrained model

    js = str(out.with_suffix(".json"))
    assert cli_main(["eval", "--compare", js, js, "--out", str(tmp_path / "same.md")]) == 0
    same = (tmp_path / "same.md").read_text()
    assert "| PSNR between (dB) | +0.00 ± 0.00 (0/2, 2 level) |" in same and "| in room |" in same
    assert "| PSNR context (dB) | +0.00 ± 0.00 (0/2, 2 level) |" in same


def test_eval_refine_rows_fit_the_context_views_better(tmp_path):
    out = tmp_path / "bench.md"
    args = ["eval", "--quick", "--checkpoint", "tiny", "--scenes", "1", "--resolution", "32", "--device", "cpu",
            "--refine-steps", "3", "--out", str(out)]
    assert cli_main(args) == 0
    rows = {(r["method"], r["num_views"]): r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    for v in (2, 4):
        plain, refined = rows[("iLRM (ilrm, tiny)", v)], rows[("iLRM (ilrm, tiny) + refine 3 steps", v)]
        assert refined["psnr_context"] > plain["psnr_context"]  # the steps fit the views they are given
        assert refined["refresh_ms"] > plain["refresh_ms"]  # and their time counts in the refresh
    assert "| iLRM (ilrm, tiny) + refine 3 steps | 2 |" in out.read_text()


def _run(path, seeds, psnr, absrel, method="iLRM (ilrm, x)"):
    per_scene = [
        {"seed": s, "refresh_s": 0.01, "psnr_between": p, "psnr_beyond": p - 1, "ssim_between": 0.5,
         "ssim_beyond": 0.4, "depth_absrel": a, "points_in_room": 0.5, "seen_in_room": 0.7}
        for s, p, a in zip(seeds, psnr, absrel)
    ]
    rows = [Row(method, 2, 0, 0, 0, 0, 10.0, len(seeds), per_scene), Row("nearest context", 2, 0, 0, 0, 0, 0, 3, [])]
    return write_report(path, rows, {}, {}, [])[1]


def test_compare_pairs_scenes_and_counts_wins(tmp_path):
    new = _run(tmp_path / "new.md", [7, 8, 9], [21.0, 23.0, 20.0], [0.2, 0.3, 0.1])
    old = _run(tmp_path / "old.md", [7, 8, 9], [20.0, 22.0, 21.0], [0.3, 0.3, 0.2], method="iLRM (ilrm, y)")
    got = {r.metric: r for r in paired(model_rows(new)[1], model_rows(old)[1])}
    p = got["psnr_between"]
    assert (p.num_views, p.scenes, p.wins, p.ties) == (2, 3, 2, 0)
    assert abs(p.mean - 1 / 3) < 1e-9 and abs(p.stderr - 2 / 3) < 1e-9  # diffs 1, 1, -1
    a = got["depth_absrel"]
    assert (a.wins, a.ties) == (2, 1) and abs(a.mean + 0.2 / 3) < 1e-9  # lower is better
    assert got["ssim_between"].ties == 3
    other = _run(tmp_path / "other.md", [7, 8, 10], [20.0] * 3, [0.2] * 3)
    with pytest.raises(ValueError, match="different scenes"):
        paired(model_rows(new)[1], model_rows(other)[1])
    assert cli_main(["eval", "--compare", str(new), str(tmp_path / "missing.json")]) == 2


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


class _TrueDepthSplats:
    """Small opaque Gaussians on the true context depth, coloured by the context pixels (or grey)."""

    def __init__(self, grey: bool = False) -> None:
        self.name, self.note, self.grey = "true-depth splats", "", grey

    def available(self, device):
        return None

    def predict(self, case):
        from ilrm_ros.evaluation.benchmark import Prediction, _with_geometry
        from ilrm_ros.gaussians import SH_C0
        from ilrm_ros.render import WHITE, render

        v = case.views
        ks, c2w, images = v.context_intrinsics[0], v.context_cam_to_world[0], v.context_images[0]
        h, w = v.image_size
        means = backproject(ks, c2w, v.context_depth[0]).float().reshape(-1, 3)
        rgb = torch.full_like(images, 0.5) if self.grey else images
        n = len(means)
        g = Gaussians(
            means,
            torch.tensor([1.0, 0, 0, 0]).expand(n, 4),
            (v.context_depth[0] / ks[:, None, None, 0, 0]).reshape(-1, 1).expand(n, 3) * 0.6,  # about a pixel
            torch.full((n,), 0.99),
            ((rgb.permute(0, 2, 3, 1).reshape(-1, 3) - 0.5) / SH_C0)[:, None],
        )
        out = render(g, v.target_intrinsics[0], v.target_cam_to_world[0], w, h, background=WHITE)
        return _with_geometry(Prediction(out.rgb, 0.0, out.depth), g, case)


def test_context_psnr_scores_how_well_a_method_reproduces_its_inputs():
    case = make_cases(1, 48, 64, view_counts=(2,))[0]
    (exact,), _ = evaluate([_TrueDepthSplats()], [case])
    (grey,), _ = evaluate([_TrueDepthSplats(grey=True)], [case])
    assert exact.psnr_context > 25, exact.psnr_context  # its own pixels, where the camera sees them
    assert grey.psnr_context < exact.psnr_context - 10
    (floor,), _ = evaluate([NearestContext()], [case])
    assert floor.psnr_context is None  # nothing built: nothing to render at the context cameras


def test_eval_views_picks_the_context_sizes_and_refuses_bad_ones(tmp_path, capsys):
    """``--views`` splits a run (one view count per GPU) without changing the cases it keeps."""
    out = tmp_path / "v4.md"
    args = ["eval", "--quick", "--checkpoint", "tiny", "--scenes", "1", "--gs-budgets", "--device", "cpu"]
    assert cli_main([*args, "--views", "4", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert {r["num_views"] for r in rows} == {4} and "context 4 keyframes" in out.read_text()
    both = tmp_path / "both.md"
    assert cli_main([*args, "--out", str(both)]) == 0
    both_rows = json.loads(both.with_suffix(".json").read_text())["rows"]
    same = {(r["method"], r["num_views"]): r["psnr_between"] for r in both_rows}
    assert all(same[(r["method"], 4)] == r["psnr_between"] for r in rows)  # the same 4-view cases
    assert cli_main([*args, "--views", "0", "--out", str(tmp_path / "bad.md")]) == 2
    assert "--views needs positive view counts" in capsys.readouterr().err


def test_eval_defaults_to_the_shipped_checkpoint(tmp_path):
    """As the node's ``checkpoint`` parameter: no ``--checkpoint`` scores the trained model, not a preset."""
    out = tmp_path / "shipped.md"
    assert cli_main(["eval", "--quick", "--scenes", "1", "--gs-budgets", "--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert f"| iLRM (ilrm, {SHIPPED_CHECKPOINT}) | 2 |" in text
    assert "is a preset" not in text
