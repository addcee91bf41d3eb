"""fit_to_model: cover-resize + centre crop with exactly adjusted intrinsics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ilrm_ros.model import fit_to_model


def K_of(fx, fy, cx, cy):
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def project(K, X):
    x = K @ X
    return x[:2] / x[2]


def test_re10k_like_source_to_256():
    image = torch.rand(3, 360, 640)
    K = K_of(500.0, 500.0, 320.0, 180.0)
    out, K2 = fit_to_model(image, K, 256)
    assert out.shape == (3, 256, 256)
    sx, sy = 455 / 640, 256 / 360  # resized to 256 x 455 (short side 256), then cropped
    left = (455 - 256) // 2
    torch.testing.assert_close(K2, K_of(500 * sx, 500 * sy, 320 * sx - left, 180 * sy))


@pytest.mark.parametrize("src, size", [((360, 640), (256, 256)), ((480, 640), (128, 256)), ((300, 200), (64, 96)),
                                       ((256, 256), (256, 256)), ((100, 120), (200, 160))])
def test_projection_of_a_point_is_consistent(src, size):
    """A 3D point projects with the new intrinsics where its old pixel lands after resize + crop."""
    h, w = src
    K = K_of(0.9 * w, 0.85 * w, 0.52 * w, 0.47 * h)
    out, K2 = fit_to_model(torch.rand(3, h, w), K, size)
    assert out.shape[-2:] == size
    nh = max(size[0], round(h * max(size[0] / h, size[1] / w)))
    nw = max(size[1], round(w * max(size[0] / h, size[1] / w)))
    top, left = (nh - size[0]) // 2, (nw - size[1]) // 2
    for X in (torch.tensor([0.3, -0.2, 2.0], dtype=torch.float64), torch.tensor([-1.0, 0.5, 4.0], dtype=torch.float64)):
        u, v = project(K, X)
        expected = torch.stack([u * nw / w - left, v * nh / h - top])
        torch.testing.assert_close(project(K2, X), expected)


def test_content_is_the_centre_crop():
    """A horizontal ramp keeps its values at the crop's pixel centres (bilinear is exact on ramps)."""
    h, w = 90, 160
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    image = xs.expand(3, h, w).contiguous()
    out, _ = fit_to_model(image, K_of(100.0, 100.0, 80.0, 45.0), (45, 45))  # 45 x 80, crop 17 .. 62
    centre = ((torch.arange(45) + 17 + 0.5) / 80)
    torch.testing.assert_close(out[0, 20], centre, atol=2e-2, rtol=0)
    torch.testing.assert_close(out[:, 10:30, 20:25].mean(), centre[20:25].mean(), atol=1e-3, rtol=0)


def test_uint8_and_batched_inputs():
    img = torch.randint(0, 256, (2, 4, 3, 60, 80), dtype=torch.uint8)
    K = K_of(60.0, 60.0, 40.0, 30.0).float().expand(2, 4, 3, 3)
    out, K2 = fit_to_model(img, K, (32, 32))
    assert out.shape == (2, 4, 3, 32, 32) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert K2.shape == (2, 4, 3, 3)
    solid = torch.full((3, 60, 80), 200, dtype=torch.uint8)
    torch.testing.assert_close(fit_to_model(solid, K[0, 0], 32)[0], torch.full((3, 32, 32), 200 / 255))


def test_numpy_hwc_input():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    K = np.array([[100.0, 0, 80.0], [0, 100.0, 45.0], [0, 0, 1]])
    out, K2 = fit_to_model(img, K, (64, 64))
    ref, K_ref = fit_to_model(torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(K), (64, 64))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and isinstance(K2, torch.Tensor)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(K2, K_ref)
    with pytest.raises(ValueError):
        fit_to_model(img[..., :2], K, 64)
