"""Keyframe selection (enough motion, sharp enough) and the window of views fed to the model.

Window selection modes:

- ``latest``: the last ``num_views`` keyframes.
- ``spread``: the newest keyframe always, plus the ``num_views - 1`` keyframes from a bounded
  history of recent keyframes (``history``, the recency limit) chosen by greedy farthest-point
  sampling on camera positions: each pick maximises its distance to the positions already
  picked, ties going to the newer keyframe. On a path that doubles back or turns in place this
  keeps views covering the recent path instead of the last few near-duplicates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ilrm_ros.geometry import rotation_angle_deg

BLUR_SIDE = 160
"""Longest side of the grey image the blur score is computed on (keeps it cheap and resolution-independent)."""


def blur_score(rgb: np.ndarray) -> float:
    """Sharpness as the variance of the Laplacian of a grey, downscaled copy (higher is sharper)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    scale = BLUR_SIDE / max(grey.shape[:2])
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass(frozen=True)
class Frame:
    """A synced, undistorted view: uint8 ``HxWx3`` RGB, intrinsics (pixel centres at x + 0.5), cam_to_world."""

    stamp_ns: int
    image: np.ndarray
    K: np.ndarray
    cam_to_world: np.ndarray

    @property
    def position(self) -> np.ndarray:
        return self.cam_to_world[:3, 3]


@dataclass(frozen=True)
class KeyframeDecision:
    """Whether a frame is a keyframe and why: first, translation, rotation, no_motion or blurry."""

    keyframe: bool
    reason: str
    translation: float = 0.0
    rotation_deg: float = 0.0
    blur: float | None = None


class KeyframeSelector:
    """Accepts a frame when it moved ``min_translation`` metres or turned ``min_rotation_deg`` from the last keyframe.

    With ``blur_threshold > 0`` a moving frame must also have ``blur_score >= blur_threshold``;
    a blurry one is rejected and the next frames stay candidates. The first frame is a keyframe
    (subject to the blur gate).
    """

    def __init__(self, min_translation: float = 0.15, min_rotation_deg: float = 10.0, blur_threshold: float = 0.0):
        self.min_translation = min_translation
        self.min_rotation_deg = min_rotation_deg
        self.blur_threshold = blur_threshold
        self.last: np.ndarray | None = None

    def reset(self) -> None:
        self.last = None

    def consider(self, cam_to_world: np.ndarray, image: np.ndarray | None = None) -> KeyframeDecision:
        """Decide on one frame; an accepted frame becomes the new reference."""
        T = np.asarray(cam_to_world, dtype=np.float64)
        if self.last is None:
            reason, translation, rotation = "first", 0.0, 0.0
        else:
            translation = float(np.linalg.norm(T[:3, 3] - self.last[:3, 3]))
            rotation = float(rotation_angle_deg(torch.from_numpy(self.last[:3, :3]), torch.from_numpy(T[:3, :3])))
            if translation > self.min_translation:
                reason = "translation"
            elif rotation > self.min_rotation_deg:
                reason = "rotation"
            else:
                return KeyframeDecision(False, "no_motion", translation, rotation)
        blur = None
        if self.blur_threshold > 0 and image is not None:
            blur = blur_score(image)
            if blur < self.blur_threshold:
                return KeyframeDecision(False, "blurry", translation, rotation, blur)
        self.last = T.copy()
        return KeyframeDecision(True, reason, translation, rotation, blur)


class Window:
    """The ``num_views`` keyframes the model reconstructs from, oldest first; ``version`` bumps on every change."""

    def __init__(self, num_views: int, selection: str = "latest", history: int = 0) -> None:
        if num_views < 1:
            raise ValueError("num_views must be at least 1")
        if selection not in ("latest", "spread"):
            raise ValueError(f"selection must be 'latest' or 'spread', not {selection!r}")
        self.num_views = num_views
        self.selection = selection
        self.history = max(history or 4 * num_views, num_views)
        self._recent: deque[Frame] = deque(maxlen=num_views if selection == "latest" else self.history)
        self.frames: list[Frame] = []
        self.version = 0

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def full(self) -> bool:
        return len(self.frames) == self.num_views

    def clear(self) -> None:
        self._recent.clear()
        if self.frames:
            self.frames = []
            self.version += 1

    def add(self, frame: Frame) -> bool:
        """Add a keyframe; returns whether the window's frames changed."""
        self._recent.append(frame)
        chosen = list(self._recent) if self.selection == "latest" else self._spread()
        if [id(f) for f in chosen] == [id(f) for f in self.frames]:
            return False
        self.frames = chosen
        self.version += 1
        return True

    def _spread(self) -> list[Frame]:
        recent = list(self._recent)
        positions = np.stack([f.position for f in recent])
        picked = [len(recent) - 1]
        nearest = np.linalg.norm(positions - positions[-1], axis=1)
        while len(picked) < min(self.num_views, len(recent)):
            nearest[picked] = -1.0
            best = len(recent) - 1 - int(np.argmax(nearest[::-1]))  # the newest among equals
            picked.append(best)
            nearest = np.minimum(nearest, np.linalg.norm(positions - positions[best], axis=1))
        return [recent[i] for i in sorted(picked)]
