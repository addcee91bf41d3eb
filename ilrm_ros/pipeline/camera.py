"""Camera intrinsics from CameraInfo and undistortion of incoming images with OpenCV.

Undistorted images keep the input size. Their intrinsics ``K_new`` map the largest axis-aligned
rectangle inside the undistorted image onto the output (``cv2.getOptimalNewCameraMatrix`` with
alpha=0 for plumb_bob and rational_polynomial; the same rule computed here from the undistorted
image edges for equidistant, where ``cv2.fisheye.estimateNewCameraMatrixForUndistortRectify``
with balance=0 still leaves rows outside the source): every output pixel sees real image
content. Keeping the original K instead would leave black borders (pincushion distortion,
fisheye corners) that the model would take for black surfaces.

K and K_new follow the ROS/OpenCV pixel convention (the centre of pixel (0, 0) is at (0, 0)).
The model and the renderers put pixel centres at (x + 0.5, y + 0.5); ``to_pixel_corner_convention``
converts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from ilrm_ros.io import InputError

PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_MODELS = ("equidistant",)
_OPENCV_COEFF_COUNTS = (4, 5, 8, 12, 14)


def to_pixel_corner_convention(K: np.ndarray) -> np.ndarray:
    """Intrinsics with pixel centres at (x + 0.5, y + 0.5), as the model and renderers use, from ROS/OpenCV ones."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A calibrated camera as CameraInfo describes it; equal (and hashed) by value.

    ``distortion_model`` is one of ``plumb_bob``, ``rational_polynomial``, ``equidistant``; any
    name is accepted when ``D`` is all zeros (a pinhole camera, undistortion is a no-op).
    """

    width: int
    height: int
    K: np.ndarray
    distortion_model: str = ""
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        width, height = int(self.width), int(self.height)
        if width <= 0 or height <= 0:
            raise InputError("bad_intrinsics", f"image size {width}x{height}")
        K = np.array(self.K, dtype=np.float64).reshape(3, 3)
        D = np.array(self.D, dtype=np.float64).ravel()
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        if not (np.isfinite(K).all() and fx > 0 and fy > 0):
            raise InputError("bad_intrinsics", f"fx={fx} fy={fy} cx={cx} cy={cy}")
        if K[1, 0] != 0 or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
            raise InputError("bad_intrinsics", f"K is not a camera matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]: "
                                               f"{K.tolist()}")
        if not np.isfinite(D).all():
            raise InputError("bad_intrinsics", f"non-finite distortion {D.tolist()}")
        model = str(self.distortion_model).strip().lower()
        if D.any():
            if model in PINHOLE_MODELS:
                if D.size not in _OPENCV_COEFF_COUNTS:
                    raise InputError("bad_distortion_model", f"{model} with {D.size} coefficients")
            elif model in FISHEYE_MODELS:
                if D.size < 4 or D[4:].any():
                    raise InputError("bad_distortion_model", f"{model} needs 4 coefficients, got {D.tolist()}")
                D = D[:4]
            else:
                raise InputError("bad_distortion_model", f"unsupported distortion model {model!r}")
        K.setflags(write=False)
        D.setflags(write=False)
        for name, value in (("width", width), ("height", height), ("K", K), ("D", D), ("distortion_model", model)):
            object.__setattr__(self, name, value)
        if D.any():  # coefficients so extreme that the undistorted view degenerates are not a calibration
            K_new = _new_K(self.key)
            zoom = np.array([K_new[0, 0] / fx, K_new[1, 1] / fy])
            if not (np.isfinite(K_new).all() and np.all((zoom > 1e-2) & (zoom < 1e2))):
                raise InputError("bad_distortion_model", f"{model} {D.tolist()}: undistorted intrinsics "
                                                         f"{K_new.tolist()} are degenerate")

    @property
    def key(self) -> tuple:
        """Hashable identity of the calibration (what the undistortion maps depend on)."""
        return (self.width, self.height, self.distortion_model, tuple(self.K.ravel()), tuple(self.D))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CameraModel) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def is_distorted(self) -> bool:
        return bool(self.D.any())

    @property
    def K_new(self) -> np.ndarray:
        """Intrinsics of the undistorted images (K itself when there is no distortion)."""
        return _new_K(self.key).copy() if self.is_distorted else self.K.copy()

    def undistort(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Undistorted copy of an ``HxW[xC]`` image and its intrinsics; the maps are built once per calibration."""
        if image.shape[:2] != (self.height, self.width):
            got = f"{image.shape[1]}x{image.shape[0]}"
            raise InputError("size_mismatch", f"image {got} vs camera {self.width}x{self.height}")
        if not self.is_distorted:
            return image, self.K.copy()
        K_new, map1, map2 = _undistortion(self.key)
        out = cv2.remap(image, map1, map2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out, K_new.copy()


@functools.lru_cache(maxsize=8)
def _new_K(key: tuple) -> np.ndarray:
    """K_new of a calibration key (cheap: a few hundred points, no maps)."""
    width, height, model, k, d = key
    K = np.array(k, dtype=np.float64).reshape(3, 3)
    D = np.array(d, dtype=np.float64)
    with np.errstate(all="ignore"):  # extreme coefficients: judged by the caller from the result
        if model in FISHEYE_MODELS:
            K_new = _inner_fisheye_K(K, D, (width, height))
        else:
            K_new, _ = cv2.getOptimalNewCameraMatrix(K, D, (width, height), alpha=0.0, newImgSize=(width, height))
    K_new = np.asarray(K_new, dtype=np.float64)
    K_new.setflags(write=False)
    return K_new


@functools.lru_cache(maxsize=8)
def _undistortion(key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K_new, map1, map2) for a calibration key; cached so that repeated CameraInfo messages cost nothing."""
    width, height, model, k, d = key
    K = np.array(k, dtype=np.float64).reshape(3, 3)
    D = np.array(d, dtype=np.float64)
    K_new = _new_K(key)
    if model in FISHEYE_MODELS:
        map1, map2 = cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K_new, (width, height), cv2.CV_16SC2)
    else:
        map1, map2 = cv2.initUndistortRectifyMap(K, D, None, K_new, (width, height), cv2.CV_16SC2)
    return K_new, map1, map2


def _inner_fisheye_K(K: np.ndarray, D: np.ndarray, size: tuple[int, int], samples: int = 256) -> np.ndarray:
    """Pinhole K whose image (pixel centres 0..w-1, 0..h-1) lies inside the undistorted fisheye image."""
    width, height = size
    xs, ys = np.linspace(0, width - 1, samples), np.linspace(0, height - 1, samples)
    edges = [np.stack([np.full(samples, x), ys], 1) for x in (0, width - 1)]
    edges += [np.stack([xs, np.full(samples, y)], 1) for y in (0, height - 1)]
    left, right, top, bottom = (cv2.fisheye.undistortPoints(e[:, None, :], K, D).reshape(-1, 2) for e in edges)
    x0, x1 = left[:, 0].max(), right[:, 0].min()
    y0, y1 = top[:, 1].max(), bottom[:, 1].min()
    fx, fy = (width - 1) / (x1 - x0), (height - 1) / (y1 - y0)
    return np.array([[fx, 0.0, -x0 * fx], [0.0, fy, -y0 * fy], [0.0, 0.0, 1.0]])
