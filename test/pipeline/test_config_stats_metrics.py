"""PipelineConfig/PARAMS, Stats and the PSNR/SSIM metrics."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from ilrm_ros.pipeline.config import PARAMS, PipelineConfig, param_name
from ilrm_ros.pipeline.metrics import psnr, ssim
from ilrm_ros.pipeline.stats import Stats


def test_params_table_matches_the_dataclass():
    names = [p.name for p in PARAMS]
    assert len(names) == len(set(names))
    for required in ("num_views", "model_resolution", "device", "sync.max_pose_gap", "sync.max_pose_age",
                     "keyframe.min_translation", "keyframe.min_rotation_deg", "keyframe.blur_threshold",
                     "window.selection", "scene.mode", "scene.budget", "render.background", "points.min_opacity",
                     "points.max_points"):
        assert required in names
    default = PipelineConfig()
    for p in PARAMS:
        assert p.description and getattr(default, p.field) == p.default
        assert param_name(p.field) == p.name
        if p.choices:
            assert p.default in p.choices
    assert default.to_dict()["sync.max_pose_gap"] == 0.1
    assert PipelineConfig.from_dict(default.to_dict()) == default


def test_from_dict_accepts_dotted_names_and_coerces_ints():
    cfg = PipelineConfig.from_dict({"sync.max_pose_gap": 1, "window.selection": "spread", "num_views": 4,
                                    "render.background": [0, 0, 0]})
    assert cfg.sync_max_pose_gap == 1.0 and isinstance(cfg.sync_max_pose_gap, float)
    assert cfg.window_selection == "spread" and cfg.num_views == 4 and cfg.render_background == [0.0, 0.0, 0.0]
    assert PipelineConfig.from_dict({"keyframe_min_translation": 0.3}).keyframe_min_translation == 0.3


@pytest.mark.parametrize("bad", [
    {"no.such": 1},
    {"sync.max_pose_gap": -0.1},
    {"sync.max_pose_gap": math.nan},
    {"window.selection": "random"},
    {"num_views": 2.5},
    {"num_views": True},
    {"undistort": 1},
    {"render.background": [0, 0, 2]},
    {"device": "tpu"},
])
def test_from_dict_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        PipelineConfig.from_dict(bad)


def test_stats_counts_rates_and_percentiles():
    now = [0.0]
    stats = Stats(rate_window_s=2.0, latency_window=100, clock=lambda: now[0])
    for i in range(41):  # 20 Hz for 2 s
        now[0] = i * 0.05
        stats.tick("image")
    assert stats.rate("image") == pytest.approx(20.0)
    now[0] += 10.0
    assert stats.rate("image") == 0.0  # everything expired
    for v in range(1, 201):
        stats.latency("refresh", v / 1000)
    pct = stats.percentiles("refresh")
    assert pct["p50"] == pytest.approx(0.1505) and pct["p95"] == pytest.approx(0.19505)  # only the last 100 kept
    assert math.isnan(stats.percentiles("nothing")["p50"])
    stats.drop("pose_gap")
    stats.drop("pose_gap")
    snap = stats.snapshot()
    assert snap["drops"] == {"pose_gap": 2} and snap["counts"]["image"] == 41 and "refresh" in snap["latency"]


def test_stats_is_thread_safe():
    stats = Stats()

    def work():
        for _ in range(2000):
            stats.drop("x")
            stats.tick("t")
            stats.latency("l", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.drops["x"] == 8000 and stats.counts["t"] == 8000


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    a = rng.random((32, 40, 3), dtype=np.float32)
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    b = np.clip(a + 0.1, 0, 1)
    mse = float(((a - b) ** 2).mean())
    assert psnr(a, b) == pytest.approx(-10 * math.log10(mse), rel=1e-5)
    noisy = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1).astype(np.float32)
    assert 0.0 < ssim(a, noisy) < 0.9
    batch = torch.from_numpy(np.stack([a, noisy]))
    assert ssim(batch, batch) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        psnr(a, a[:-1])


def test_the_kept_ssim_window_is_pytorch_msssims_default():
    from pytorch_msssim import ssim

    from ilrm_ros.pipeline.metrics import ssim_window

    gen = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 3, 32, 40, generator=gen), torch.rand(2, 3, 32, 40, generator=gen)
    win = ssim_window(torch.device("cpu"), 3)
    assert win is ssim_window(torch.device("cpu"), 3)  # built once per device and channel count
    assert torch.equal(ssim(a, b, data_range=1.0, win=win), ssim(a, b, data_range=1.0))
