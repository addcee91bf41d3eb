"""Pairing images with poses by timestamp: a bounded pose buffer with interpolation.

An image stamped between two pose messages gets the pose interpolated at its stamp (linear
position, slerp rotation), provided the two poses are at most ``max_gap_s`` apart. Everything
runs on message time (header stamps), never on the wall clock, so bag replay is deterministic.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np
import torch

from ilrm_ros.geometry import quat_slerp, quat_to_rotmat, rotmat_to_quat

NS = 1_000_000_000


class DropFrame(Exception):
    """An image that cannot be paired with a pose. Reasons:

    - ``pose_too_old``: the image is older than the oldest buffered pose;
    - ``pose_gap``: the poses around the image are more than ``max_gap_s`` apart (or none came in time);
    - ``pose_not_yet``: the image is newer than the latest pose (hold it and retry);
    - ``no_pose``: no pose has been received at all.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PoseBuffer:
    """Time-ordered poses of the last ``max_age_s`` seconds (at most ``capacity``), looked up by stamp.

    ``add`` keeps the buffer strictly increasing in time:

    - a repeated stamp is ignored (returns ``"repeated"``);
    - a stamp slightly older than the newest (a reordered message) is ignored (``"out_of_order"``);
    - a jump back of more than ``reset_jump_s`` (a bag restarted or looping, a simulator reset)
      clears the buffer and starts again from that pose (``"reset"``, counted in ``resets``).

    Each of these calls ``on_warning(message)`` when given.
    """

    def __init__(
        self,
        max_age_s: float = 2.0,
        max_gap_s: float = 0.1,
        capacity: int = 1024,
        reset_jump_s: float = 1.0,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        if max_age_s <= 0 or max_gap_s <= 0 or capacity < 2:
            raise ValueError("max_age_s and max_gap_s must be positive and capacity at least 2")
        self.max_age_ns = int(max_age_s * NS)
        self.max_gap_ns = int(max_gap_s * NS)
        self.reset_jump_ns = int(reset_jump_s * NS)
        self.capacity = capacity
        self.on_warning = on_warning
        self.resets = 0
        self.ignored = 0
        self._stamps: list[int] = []
        self._positions: list[np.ndarray] = []
        self._quats: list[torch.Tensor] = []  # (w, x, y, z), float64

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    @property
    def oldest_ns(self) -> int | None:
        return self._stamps[0] if self._stamps else None

    def clear(self) -> None:
        self._stamps.clear()
        self._positions.clear()
        self._quats.clear()

    def _warn(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    def add(self, stamp_ns: int, cam_to_world: np.ndarray) -> str:
        """Buffer a pose; returns ``"added"``, ``"repeated"``, ``"out_of_order"`` or ``"reset"``."""
        stamp_ns = int(stamp_ns)
        status = "added"
        newest = self.newest_ns
        if newest is not None and stamp_ns <= newest:
            if newest - stamp_ns > self.reset_jump_ns:
                self.resets += 1
                self.clear()
                status = "reset"
                self._warn(f"pose time jumped back {(newest - stamp_ns) / NS:.3f} s: pose buffer reset")
            else:
                self.ignored += 1
                status = "repeated" if stamp_ns == newest else "out_of_order"
                self._warn(f"pose stamp {stamp_ns} {status.replace('_', ' ')} (newest {newest}): ignored")
                return status
        T = np.asarray(cam_to_world, dtype=np.float64)
        self._stamps.append(stamp_ns)
        self._positions.append(T[:3, 3].copy())
        self._quats.append(rotmat_to_quat(torch.from_numpy(T[:3, :3].copy())))
        cut = max(bisect.bisect_left(self._stamps, stamp_ns - self.max_age_ns), len(self._stamps) - self.capacity)
        if cut > 0:
            del self._stamps[:cut], self._positions[:cut], self._quats[:cut]
        return status

    def lookup(self, stamp_ns: int) -> np.ndarray:
        """The cam_to_world 4x4 (float64) at ``stamp_ns``, interpolated; raises ``DropFrame``."""
        stamps = self._stamps
        if not stamps:
            raise DropFrame("no_pose", "no pose received yet")
        if stamp_ns > stamps[-1]:
            raise DropFrame("pose_not_yet", f"image {(stamp_ns - stamps[-1]) / NS:.3f} s newer than the latest pose")
        if stamp_ns < stamps[0]:
            raise DropFrame("pose_too_old", f"image {(stamps[0] - stamp_ns) / NS:.3f} s older than the pose buffer")
        i = bisect.bisect_left(stamps, stamp_ns)
        if stamps[i] == stamp_ns:
            return self._matrix(self._positions[i], self._quats[i])
        t0, t1 = stamps[i - 1], stamps[i]
        if t1 - t0 > self.max_gap_ns:
            raise DropFrame("pose_gap", f"poses around the image are {(t1 - t0) / NS:.3f} s apart")
        t = (stamp_ns - t0) / (t1 - t0)
        position = (1 - t) * self._positions[i - 1] + t * self._positions[i]
        return self._matrix(position, quat_slerp(self._quats[i - 1], self._quats[i], t))

    @staticmethod
    def _matrix(position: np.ndarray, quat: torch.Tensor) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = quat_to_rotmat(quat).numpy()
        T[:3, 3] = position
        return T
