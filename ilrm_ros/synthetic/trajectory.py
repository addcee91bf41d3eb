"""Robot-like camera trajectories inside a :class:`SyntheticRoom`.

Poses are 4x4 camera-to-world matrices (float64) of the OpenCV optical frame (x right, y down,
z forward) in the z-up world. Stamps are int64 nanoseconds at a fixed rate.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..geometry import quat_slerp, quat_to_rotmat, rotmat_to_quat
from .room import SyntheticRoom

DEFAULT_START_NS = 1_700_000_000_000_000_000
"""Stamp of the first frame unless given: a plausible wall-clock time (2023-11-14)."""


def default_intrinsics(width: int, height: int, hfov_deg: float = 70.0) -> torch.Tensor:
    """Pinhole intrinsics ``[3, 3]`` (float64) with square pixels and a centred principal point.

    Pixel (x, y) has its centre at (x + 0.5, y + 0.5), so cx = width / 2, cy = height / 2 (the
    convention of the renderer and of iLRM's ray maps; ROS CameraInfo's K puts pixel centres
    at integers, i.e. cx_ros = cx - 0.5).
    """
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)


def camera_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Optical-frame rotations ``[..., 3, 3]`` (columns right, down, forward) in the z-up world.

    yaw: heading of the forward axis about world z (0 = +x); pitch: positive looks up;
    roll: positive rotates the image clockwise as seen by the camera (about forward).
    """
    yaw, pitch, roll = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (yaw, pitch, roll)))
    f = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)
    r0 = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)  # f x up, horizontal
    d0 = np.cross(f, r0)
    c, s = np.cos(roll)[..., None], np.sin(roll)[..., None]
    r = c * r0 + s * d0
    d = -s * r0 + c * d0
    return np.stack([r, d, f], -1)


def _poses(R: np.ndarray, t: np.ndarray) -> torch.Tensor:
    T = np.zeros((len(R), 4, 4))
    T[:, :3, :3] = R
    T[:, :3, 3] = t
    T[:, 3, 3] = 1.0
    return torch.from_numpy(T)


def _stamps(num_frames: int, rate_hz: float, start_ns: int) -> np.ndarray:
    return start_ns + np.round(np.arange(num_frames) * (1e9 / rate_hz)).astype(np.int64)


def _smooth_noise(
    rng: np.random.Generator, t: np.ndarray, amplitude: float, fmin: float, fmax: float, n: int = 3
) -> np.ndarray:
    """A smooth random signal (sum of sinusoids) with peak amplitude <= ``amplitude``."""
    out = np.zeros_like(t)
    for _ in range(n):
        out += np.sin(2 * math.pi * rng.uniform(fmin, fmax) * t + rng.uniform(0, 2 * math.pi))
    return out * (amplitude / n)


def _wrap(a: np.ndarray | float) -> np.ndarray | float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _clip(x: float, lo: float, hi: float) -> float:
    """``float(np.clip(x, lo, hi))`` for finite bounds (same ties and signed zeros) without numpy's
    per-call overhead on scalars, which dominated the planner's inner loop."""
    m = lo if lo > x else x
    return float(hi if hi < m else m)


_STEP_MARGIN = 1e-9
"""Metres of slack on the free-distance bound of :func:`_step_is_clear` (covers float64 rounding)."""


def _step_is_clear(room: SyntheticRoom, free_here: float, step: float, new: np.ndarray, clearance: float) -> bool:
    """``room.free_distance_2d(new) >= clearance`` for a point ``new`` at most ``step`` m from a
    point whose free distance is ``free_here``.

    The free distance is 1-Lipschitz (a minimum of exact or 1-Lipschitz distances), so a short
    step from a point well clear of obstacles stays clear without evaluating it: the same answer,
    minus one call per simulation step on most steps.
    """
    if free_here - step >= clearance + _STEP_MARGIN:
        return True
    return bool(room.free_distance_xy(new[0], new[1]) >= clearance)


def _drive(
    room: SyntheticRoom,
    num_steps: int,
    dt: float,
    rng: np.random.Generator,
    speed: float,
    turn_rate: float,
    clearance: float,
    lookahead: float = 1.2,
) -> tuple[np.ndarray, np.ndarray]:
    """A unicycle driving to random goals across the room, steering around walls and objects.

    Returns xy ``[num_steps, 2]`` and heading ``[num_steps]``. It never moves to a point closer
    than ``clearance`` to an obstacle (it stops and turns on the spot instead); speed and turn
    rate change with bounded accelerations, so the path is smooth.
    """
    pos = room.sample_free_position(rng, clearance=clearance + 0.3)
    offsets = np.linspace(-math.pi, math.pi, 36, endpoint=False)  # candidate headings, 0 = straight
    straight = len(offsets) // 2
    dists = np.linspace(0.1, lookahead, 12)
    reach = np.concatenate([[0.0], dists])  # probe distances, the robot's own position first
    turn_penalty = {s: 0.5 * ((np.sign(offsets) == -s) & (np.abs(offsets) > 0.2)) for s in (1.0, -1.0)}

    def free_length(heading: float) -> tuple[np.ndarray, float]:
        """How far the robot could drive along each candidate heading keeping its clearance, and
        the free distance at ``pos`` (probe row 0, for :func:`_step_is_clear`)."""
        ang = heading + offsets
        d = room.free_distance_xy(pos[0] + reach[:, None] * np.cos(ang), pos[1] + reach[:, None] * np.sin(ang))
        blocked = d[1:] < clearance + 0.03
        first = np.where(blocked.any(0), blocked.argmax(0), len(dists))
        return reach[first], float(d[0, 0])

    def new_goal() -> np.ndarray:
        best, best_d = None, -1.0
        for _ in range(20):  # far-away goals make room-crossing paths
            g = room.sample_free_position(rng, clearance=clearance + 0.2)
            d = float(np.linalg.norm(g - pos))
            if d > best_d:
                best, best_d = g, d
            if d > 2.0:
                break
        return best

    goal = new_goal()
    goal_time = 0.0
    heading = float(math.atan2(*(goal - pos)[::-1]))
    v = omega = wander = 0.0
    side = 1.0  # the side it last chose to pass an obstacle on (hysteresis against dithering)
    anchor, anchor_time = pos, 0.0
    xy = np.zeros((num_steps, 2))
    hd = np.zeros(num_steps)
    for k in range(num_steps):
        xy[k], hd[k] = pos, heading
        to_goal = goal - pos
        dist_goal = float(np.linalg.norm(to_goal))
        goal_time += dt
        anchor_time += dt
        stuck = False
        if anchor_time > 5.0:  # hardly moved for 5 s: give up on this goal
            stuck = float(np.linalg.norm(pos - anchor)) < 0.3
            anchor, anchor_time = pos, 0.0
        if dist_goal < 0.5 or goal_time > 30.0 or stuck:
            goal, goal_time = new_goal(), 0.0
            to_goal = goal - pos
            dist_goal = float(np.linalg.norm(to_goal))
        free, free_here = free_length(heading)
        need = min(lookahead, dist_goal)
        goal_off = _wrap(math.atan2(to_goal[1], to_goal[0]) - heading)
        # Closest heading to the goal among those free far enough; blocked ones pay for it.
        cost = np.abs(_wrap(offsets - goal_off)) + 3.0 * (need - np.minimum(free, need)) / need
        cost = cost + turn_penalty[side]
        best = offsets[int(cost.argmin())]
        if abs(best) > 0.2:
            side = 1.0 if best > 0 else -1.0
        wander += -wander / 1.5 * dt + 0.4 * turn_rate * math.sqrt(dt) * rng.normal()
        wander = _clip(wander, -0.3 * turn_rate, 0.3 * turn_rate)
        omega_des = turn_rate * _clip(best / (math.pi / 6), -1, 1) + wander
        ahead = free[straight]
        v_des = speed * _clip((ahead - 0.2) / 0.6, 0, 1) * max(0.0, math.cos(best)) ** 2
        omega += _clip(omega_des - omega, -2 * turn_rate * dt, 2 * turn_rate * dt)
        omega = _clip(omega, -turn_rate, turn_rate)
        v += _clip(v_des - v, -0.8 * dt, 0.8 * dt)
        v = _clip(v, 0.0, speed)
        heading = float(_wrap(heading + omega * dt))
        new = pos + v * dt * np.array([math.cos(heading), math.sin(heading)])
        if _step_is_clear(room, free_here, v * dt, new, clearance):
            pos = new
        else:
            v = 0.0
    return xy, np.unwrap(hd)


def _sim_grid(num_frames: int, rate_hz: float) -> tuple[int, float]:
    """Simulation substeps per frame and step length (<= 20 ms) so frames fall on steps."""
    sub = max(1, math.ceil(1.0 / (rate_hz * 0.02)))
    return sub, 1.0 / (rate_hz * sub)


def ground_robot_trajectory(
    room: SyntheticRoom,
    num_frames: int,
    rate_hz: float,
    seed: int,
    height: float = 1.0,
    speed: float = 0.4,
    turn_rate: float = 0.6,
    pitch_deg: float = -3.0,
    clearance: float = 0.35,
    start_ns: int = DEFAULT_START_NS,
) -> tuple[np.ndarray, torch.Tensor]:
    """A wheeled robot's forward camera: drives at up to ``speed`` m/s, turns smoothly at up
    to ``turn_rate`` rad/s, keeps ``clearance`` m from walls and objects, looks horizontally
    (fixed ``pitch_deg`` plus < 1 degree of vibration).

    Returns stamps ``[T]`` int64 ns and camera-to-world ``[T, 4, 4]`` float64.
    """
    rng = np.random.default_rng([int(seed), 0xB07])
    sub, dt = _sim_grid(num_frames, rate_hz)
    xy, hd = _drive(room, num_frames * sub, dt, rng, speed, turn_rate, clearance)
    xy, hd = xy[::sub], hd[::sub]
    t = np.arange(num_frames) / rate_hz
    pitch = math.radians(pitch_deg) + _smooth_noise(rng, t, math.radians(0.5), 0.5, 2.0)
    roll = _smooth_noise(rng, t, math.radians(0.4), 0.5, 2.0)
    z = height + _smooth_noise(rng, t, 0.003, 0.5, 2.0)
    R = camera_rotation(hd, pitch, roll)
    pos = np.concatenate([xy, z[:, None]], -1)
    return _stamps(num_frames, rate_hz, start_ns), _poses(R, pos)


def handheld_sweep(
    room: SyntheticRoom,
    num_frames: int,
    rate_hz: float,
    seed: int,
    height: float = 1.45,
    speed: float = 0.3,
    sweep_deg: float = 45.0,
    clearance: float = 0.45,
    start_ns: int = DEFAULT_START_NS,
) -> tuple[np.ndarray, torch.Tensor]:
    """A person walking slowly and sweeping a hand-held camera left and right (up to
    ``sweep_deg`` off the walking direction) with pitch and roll jitter and a few cm of shake.

    Returns stamps ``[T]`` int64 ns and camera-to-world ``[T, 4, 4]`` float64.
    """
    rng = np.random.default_rng([int(seed), 0x4A4D])
    sub, dt = _sim_grid(num_frames, rate_hz)
    xy, hd = _drive(room, num_frames * sub, dt, rng, speed, 0.5, clearance)
    xy, hd = xy[::sub], hd[::sub]
    t = np.arange(num_frames) / rate_hz
    sweep = math.radians(sweep_deg)
    yaw = hd + sweep * np.sin(2 * math.pi * rng.uniform(0.06, 0.12) * t + rng.uniform(0, 2 * math.pi))
    yaw = yaw + _smooth_noise(rng, t, math.radians(4.0), 0.2, 1.0)
    pitch = math.radians(rng.uniform(-14.0, 0.0)) + _smooth_noise(rng, t, math.radians(10.0), 0.05, 0.4)
    roll = _smooth_noise(rng, t, math.radians(5.0), 0.05, 0.5)
    shake = np.stack([_smooth_noise(rng, t, 0.02, 0.3, 1.5) for _ in range(3)], -1)
    bob = 0.015 * np.sin(2 * math.pi * 1.8 * t)
    z = np.clip(height + bob + shake[:, 2], 0.3, room.size[2] - 0.3)
    R = camera_rotation(yaw, pitch, roll)
    pos = np.concatenate([xy + shake[:, :2], z[:, None]], -1)
    return _stamps(num_frames, rate_hz, start_ns), _poses(R, pos)


def interpolate_poses(stamps_ns: np.ndarray, cam_to_world: torch.Tensor, query_ns: np.ndarray) -> torch.Tensor:
    """Poses ``[Q, 4, 4]`` at ``query_ns`` by linear (translation) / slerp (rotation)
    interpolation of a stamped trajectory; queries outside it are clamped to its ends."""
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    query = np.asarray(query_ns, dtype=np.int64)
    T = torch.as_tensor(cam_to_world, dtype=torch.float64)
    i1 = np.clip(np.searchsorted(stamps, query, side="right"), 1, len(stamps) - 1)
    i0 = i1 - 1
    span = (stamps[i1] - stamps[i0]).astype(np.float64)
    w = np.clip((query - stamps[i0]).astype(np.float64) / np.maximum(span, 1.0), 0.0, 1.0)
    if len(stamps) == 1:
        i0 = i1 = np.zeros_like(query)
    wt = torch.from_numpy(w)
    q = quat_slerp(rotmat_to_quat(T[i0, :3, :3]), rotmat_to_quat(T[i1, :3, :3]), wt)
    out = torch.zeros(len(query), 4, 4, dtype=torch.float64)
    out[:, :3, :3] = quat_to_rotmat(q)
    out[:, :3, 3] = torch.lerp(T[i0, :3, 3], T[i1, :3, 3], wt[:, None])
    out[:, 3, 3] = 1.0
    return out
