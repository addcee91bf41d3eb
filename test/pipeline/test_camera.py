"""CameraModel validation and undistortion: distorted points land on their pinhole positions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from ilrm_ros.io import InputError
from ilrm_ros.io.convert import camera_from_info
from ilrm_ros.pipeline import camera as camera_module
from ilrm_ros.pipeline.camera import CameraModel, to_pixel_corner_convention

W, H = 320, 240
K = np.array([[260.0, 0, 161.3], [0, 255.0, 118.7], [0, 0, 1]])
CASES = {
    "plumb_bob": [-0.28, 0.09, 0.001, -0.0015, 0.0],  # barrel
    "plumb_bob_pincushion": [0.12, 0.02, 0.0, 0.0, 0.0],
    "rational_polynomial": [0.3, -0.1, 0.001, 0.001, 0.01, 0.6, -0.15, 0.02],
    "equidistant": [0.05, -0.01, 0.004, -0.001],
}


def _model(case: str) -> CameraModel:
    """The camera as a driver gets it: from a real CameraInfo message."""
    name = "plumb_bob" if case.startswith("plumb_bob") else case
    return camera_from_info(CameraInfo(width=W, height=H, k=K.reshape(-1), d=CASES[case], distortion_model=name))


def _distorted_pixels(cam: CameraModel, normalised: np.ndarray) -> np.ndarray:
    pts = np.concatenate([normalised, np.ones((len(normalised), 1))], 1)[:, None, :]
    zero = np.zeros(3)
    if cam.distortion_model == "equidistant":
        out, _ = cv2.fisheye.projectPoints(pts, zero, zero, cam.K, cam.D)
    else:
        out, _ = cv2.projectPoints(pts, zero, zero, cam.K, cam.D)
    return out.reshape(-1, 2)


def _blob_image(centres: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.zeros((H, W))
    for cx, cy in centres:
        img += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, 2)


def _centroid(img: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    x0, y0 = int(round(near[0])), int(round(near[1]))
    patch = img[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1, 0].astype(np.float64)
    ys, xs = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    return np.array([(xs * patch).sum(), (ys * patch).sum()]) / patch.sum()


@pytest.mark.parametrize("case", list(CASES))
def test_distorted_points_map_back_to_pinhole_positions(case):
    cam = _model(case)
    assert cam.is_distorted
    K_new = cam.K_new
    # Points spread over the undistorted view (kept away from its border so blobs are whole).
    grid = np.array([[u, v] for u in (0.15, 0.5, 0.85) for v in (0.15, 0.5, 0.85)]) * [W, H]
    normalised = (grid - K_new[:2, 2]) / [K_new[0, 0], K_new[1, 1]]
    distorted = _distorted_pixels(cam, normalised)
    assert np.abs(distorted - grid).max() > 2.0  # the distortion really moves them
    out, K_out = cam.undistort(_blob_image(distorted))
    np.testing.assert_array_equal(K_out, K_new)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    for expected in grid:
        assert np.linalg.norm(_centroid(out, expected) - expected) < 0.5


@pytest.mark.parametrize("case", list(CASES))
def test_new_intrinsics_leave_no_invalid_pixels(case):
    cam = _model(case)
    _, map1, map2 = camera_module._undistortion(cam.key)
    xy, _ = cv2.convertMaps(map1, map2, cv2.CV_32FC2)
    # Every output pixel samples inside the source image (pixel centres 0..W-1; half a pixel of slack).
    assert xy[..., 0].min() >= -0.5 and xy[..., 0].max() <= W - 0.5
    assert xy[..., 1].min() >= -0.5 and xy[..., 1].max() <= H - 0.5


def test_no_distortion_is_an_identity_fast_path():
    img = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    for model, d in (("plumb_bob", [0, 0, 0, 0, 0]), ("", []), ("whatever", [0.0] * 4)):
        cam = CameraModel(W, H, K, model, d)
        out, K_out = cam.undistort(img)
        assert out is img and not cam.is_distorted
        np.testing.assert_array_equal(K_out, K)


def test_maps_are_built_once_per_calibration_and_models_compare_by_value():
    camera_module._undistortion.cache_clear()
    img = np.zeros((H, W, 3), np.uint8)
    a, b = _model("plumb_bob"), _model("plumb_bob")
    assert a == b and hash(a) == hash(b) and a is not b
    a.undistort(img)
    b.undistort(img)
    a.undistort(img)
    info = camera_module._undistortion.cache_info()
    assert info.misses == 1 and info.hits >= 2
    c = CameraModel(W, H, K, "plumb_bob", [-0.2, 0.0, 0.0, 0.0, 0.0])
    assert c != a
    c.undistort(img)
    assert camera_module._undistortion.cache_info().misses == 2


@pytest.mark.parametrize(("fx", "fy"), [(0.0, 250.0), (250.0, -1.0), (np.nan, 250.0), (250.0, np.inf)])
def test_bad_focal_lengths(fx, fy):
    with pytest.raises(InputError) as err:
        CameraModel(W, H, [[fx, 0, 160], [0, fy, 120], [0, 0, 1]])
    assert err.value.reason == "bad_intrinsics"


def test_bad_sizes_and_mismatched_images():
    with pytest.raises(InputError) as err:
        CameraModel(0, H, K)
    assert err.value.reason == "bad_intrinsics"
    with pytest.raises(InputError) as err:
        _model("plumb_bob").undistort(np.zeros((H, W + 2, 3), np.uint8))
    assert err.value.reason == "size_mismatch"
    with pytest.raises(InputError) as err:
        CameraModel(W, H, K, "equidistant", [0.1, 0.0, 0.0, 0.0, 0.3])
    assert err.value.reason == "bad_distortion_model"


def test_pixel_corner_convention_shifts_the_principal_point_by_half_a_pixel():
    Kc = to_pixel_corner_convention(K)
    np.testing.assert_array_equal(Kc[:2, 2], K[:2, 2] + 0.5)
    np.testing.assert_array_equal(Kc[[0, 1], [0, 1]], K[[0, 1], [0, 1]])
